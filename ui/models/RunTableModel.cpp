// RunTableModel. Live columns of running runs come from the session (the registry is written
// at most every few seconds); everything else from the registry row.
#include "ui/models/RunTableModel.h"

#include <QDateTime>
#include <QHash>
#include <QIcon>
#include <QPainter>
#include <QPixmap>
#include <QLocale>

#include <cmath>

#include "cluster/jobs/JobQueue.h"
#include "cluster/jobs/RunSession.h"
#include "cluster/workspace/Workspace.h"
#include "ui/Format.h"
#include "ui/Theme.h"

namespace fathom::ui {

namespace {
// A small round status mark (a QColor decoration would be a large square).
QIcon statusDot(const QColor& color) {
  static QHash<QRgb, QIcon> cache;
  auto it = cache.find(color.rgba());
  if (it != cache.end()) return it.value();
  QPixmap pm(20, 20);
  pm.setDevicePixelRatio(2.0);
  pm.fill(Qt::transparent);
  QPainter p(&pm);
  p.setRenderHint(QPainter::Antialiasing);
  p.setPen(Qt::NoPen);
  p.setBrush(color);
  p.drawEllipse(QRectF(2, 2, 6, 6));
  return cache.insert(color.rgba(), QIcon(pm)).value();
}
}  // namespace

RunTableModel::RunTableModel(cluster::Workspace* workspace, cluster::JobQueue* queue, QObject* parent)
    : QAbstractTableModel(parent), m_ws(workspace), m_queue(queue) {
  if (m_ws) {
    connect(m_ws, &cluster::Workspace::runsChanged, this, &RunTableModel::refresh);
    connect(m_ws, &cluster::Workspace::reloaded, this, &RunTableModel::reload);
  }
  if (m_queue) connect(m_queue, &cluster::JobQueue::jobsChanged, this, &RunTableModel::tick);
  m_tick.setInterval(1000);
  connect(&m_tick, &QTimer::timeout, this, &RunTableModel::tick);
  m_tick.start();
  reload();
}

int RunTableModel::rowCount(const QModelIndex& parent) const { return parent.isValid() ? 0 : static_cast<int>(m_runs.size()); }

int RunTableModel::columnCount(const QModelIndex& parent) const { return parent.isValid() ? 0 : ColumnCount; }

QString RunTableModel::runId(int row) const { return row >= 0 && row < m_runs.size() ? m_runs[row].id : QString(); }

int RunTableModel::rowOf(const QString& id) const {
  for (int i = 0; i < m_runs.size(); ++i)
    if (m_runs[i].id == id) return i;
  return -1;
}

void RunTableModel::reload() {
  beginResetModel();
  m_runs = m_ws ? m_ws->runs().list() : QList<cluster::RunRecord>{};
  endResetModel();
}

void RunTableModel::refresh(const QStringList& ids) {
  if (!m_ws) return;
  for (const QString& id : ids) {
    const std::optional<cluster::RunRecord> rec = m_ws->runs().get(id);
    const int row = rowOf(id);
    if (!rec) {
      if (row >= 0) {
        beginRemoveRows(QModelIndex(), row, row);
        m_runs.removeAt(row);
        endRemoveRows();
      }
      continue;
    }
    if (row >= 0) {
      m_runs[row] = *rec;
      emit dataChanged(index(row, 0), index(row, ColumnCount - 1));
      continue;
    }
    // New run: newest first, as RunRepository::list orders them.
    int at = 0;
    while (at < m_runs.size() && m_runs[at].createdAt > rec->createdAt) ++at;
    beginInsertRows(QModelIndex(), at, at);
    m_runs.insert(at, *rec);
    endInsertRows();
  }
}

void RunTableModel::tick() {
  for (int row = 0; row < m_runs.size(); ++row)
    if (m_runs[row].status == cluster::run_status::running)
      emit dataChanged(index(row, Step), index(row, Duration), {Qt::DisplayRole, SortRole});
}

double RunTableModel::liveTokensPerSecond(const QString& id) const {
  if (!m_queue) return NAN;
  if (!m_queue->runningIds().contains(id)) return NAN;
  cluster::RunSession* s = m_queue->session(id);
  if (!s) return NAN;
  const QVector<cluster::MetricPoint> v = s->series(QStringLiteral("tokens_per_s"), 0);
  return v.isEmpty() ? NAN : v.back().value;
}

QVariant RunTableModel::data(const QModelIndex& index, int role) const {
  if (!index.isValid() || index.row() >= m_runs.size() || index.column() >= ColumnCount) return {};
  const cluster::RunRecord& r = m_runs[index.row()];
  if (role == RunIdRole) return r.id;
  if (role == StatusRole) return r.status;
  const bool running = r.status == cluster::run_status::running;
  cluster::RunSession* live = (running && m_queue && m_queue->runningIds().contains(r.id)) ? m_queue->session(r.id) : nullptr;
  const qint64 step = live && live->lastStep() > r.lastStep ? live->lastStep() : r.lastStep;
  const double loss = live && !std::isnan(live->lastLoss()) ? live->lastLoss() : r.lastLoss;
  const QDateTime end = r.endedAt.isValid() ? r.endedAt : (running ? QDateTime::currentDateTime() : QDateTime());
  const double duration = r.startedAt.isValid() && end.isValid() ? r.startedAt.msecsTo(end) / 1000.0 : NAN;

  if (role == Qt::DisplayRole) {
    switch (index.column()) {
      case Name: return r.name;
      case Status: return r.status;
      case Step: return step > 0 ? QLocale().toString(step) : QString();
      case Loss: return std::isnan(loss) ? QString() : formatValue(loss);
      case TokensPerSecond: {
        const double t = liveTokensPerSecond(r.id);
        return std::isnan(t) ? QString() : formatTokensPerSecond(t);
      }
      case Started: return r.startedAt.isValid() ? QLocale().toString(r.startedAt.toLocalTime(), QLocale::ShortFormat) : QString();
      case Duration: return std::isnan(duration) ? QString() : formatDuration(duration);
      case Devices: {
        QString d = r.devices.isEmpty() ? QStringLiteral("cpu") : r.devices.join(QStringLiteral(", "));
        if (r.nprocs > 1) d += QStringLiteral(" × %1 procs").arg(r.nprocs);
        return d;
      }
    }
  }
  if (role == SortRole) {
    switch (index.column()) {
      case Step: return step;
      case Loss: return std::isnan(loss) ? 1e300 : loss;
      case TokensPerSecond: {
        const double t = liveTokensPerSecond(r.id);
        return std::isnan(t) ? -1.0 : t;
      }
      case Started: return r.startedAt.isValid() ? r.startedAt.toMSecsSinceEpoch() : 0;
      case Duration: return std::isnan(duration) ? -1.0 : duration;
      default: return data(index, Qt::DisplayRole);
    }
  }
  if (role == Qt::ForegroundRole && index.column() == Status) return Theme::instance()->statusColor(r.status);
  if (role == Qt::DecorationRole && index.column() == Status) return statusDot(Theme::instance()->statusColor(r.status));
  if (role == Qt::ToolTipRole) {
    QString tip = QStringLiteral("%1\n%2").arg(r.id, r.runDir);
    if (!r.overrides.isEmpty()) tip += tr("\nOverrides: %1").arg(r.overrides.join(QStringLiteral(" ")));
    if (!r.error.isEmpty()) tip += QStringLiteral("\n\n") + r.error.right(800);
    return tip;
  }
  if (role == Qt::TextAlignmentRole) {
    switch (index.column()) {
      case Step: case Loss: case TokensPerSecond: case Duration:
        return QVariant(Qt::AlignRight | Qt::AlignVCenter);
      default: return QVariant(Qt::AlignLeft | Qt::AlignVCenter);
    }
  }
  return {};
}

QVariant RunTableModel::headerData(int section, Qt::Orientation orientation, int role) const {
  if (orientation != Qt::Horizontal || role != Qt::DisplayRole) return QAbstractTableModel::headerData(section, orientation, role);
  switch (section) {
    case Name: return tr("Name");
    case Status: return tr("Status");
    case Step: return tr("Step");
    case Loss: return tr("Loss");
    case TokensPerSecond: return tr("Tokens/s");
    case Started: return tr("Started");
    case Duration: return tr("Duration");
    case Devices: return tr("Devices");
  }
  return {};
}

}  // namespace fathom::ui
