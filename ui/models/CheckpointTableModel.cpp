// CheckpointTableModel: small (tens to hundreds of rows), so a change reloads it whole.
#include "ui/models/CheckpointTableModel.h"

#include <QDir>
#include <QLocale>

#include <cmath>

#include "cluster/workspace/Workspace.h"
#include "ui/Format.h"
#include "ui/Theme.h"

namespace fathom::ui {

CheckpointTableModel::CheckpointTableModel(cluster::Workspace* workspace, QObject* parent)
    : QAbstractTableModel(parent), m_ws(workspace) {
  if (m_ws) {
    connect(m_ws, &cluster::Workspace::checkpointsChanged, this, [this] { reload(); });
    connect(m_ws, &cluster::Workspace::runsChanged, this, [this] { reload(); });
    connect(m_ws, &cluster::Workspace::reloaded, this, [this] { reload(); });
  }
  reload();
}

void CheckpointTableModel::reload() {
  beginResetModel();
  m_rows = m_ws ? m_ws->checkpoints().listAll() : QList<cluster::CheckpointRecord>{};
  m_runNames.clear();
  if (m_ws)
    for (const cluster::RunRecord& r : m_ws->runs().list()) m_runNames.insert(r.id, r.name);
  endResetModel();
}

int CheckpointTableModel::countForRun(const QString& runId) const {
  int n = 0;
  for (const auto& c : m_rows) n += c.runId == runId;
  return n;
}

int CheckpointTableModel::rowCount(const QModelIndex& parent) const { return parent.isValid() ? 0 : static_cast<int>(m_rows.size()); }

int CheckpointTableModel::columnCount(const QModelIndex& parent) const { return parent.isValid() ? 0 : ColumnCount; }

QVariant CheckpointTableModel::data(const QModelIndex& index, int role) const {
  if (!index.isValid() || index.row() >= m_rows.size() || index.column() >= ColumnCount) return {};
  const cluster::CheckpointRecord& c = m_rows[index.row()];
  if (role == RunIdRole) return c.runId;
  if (role == PathRole) return c.path;
  if (role == Qt::DisplayRole) {
    switch (index.column()) {
      case Run: {
        const QString name = m_runNames.value(c.runId);
        return name.isEmpty() ? c.runId : QStringLiteral("%1 (%2)").arg(name, c.runId);
      }
      case Step: return QLocale().toString(c.step);
      case ValLoss: return std::isnan(c.valLoss) ? QString() : formatValue(c.valLoss);
      case Size: return formatBytes(double(c.bytes));
      case Verified: return c.verified ? tr("✓ verified") : tr("not verified");
      case Created: return c.createdAt.isValid() ? QLocale().toString(c.createdAt.toLocalTime(), QLocale::ShortFormat) : QString();
      case Path: return QDir::toNativeSeparators(c.path);
    }
  }
  if (role == SortRole) {
    switch (index.column()) {
      case Step: return c.step;
      case ValLoss: return std::isnan(c.valLoss) ? 1e300 : c.valLoss;
      case Size: return c.bytes;
      case Verified: return c.verified;
      case Created: return c.createdAt.isValid() ? c.createdAt.toMSecsSinceEpoch() : 0;
      default: return data(index, Qt::DisplayRole);
    }
  }
  if (role == Qt::ForegroundRole && index.column() == Verified)
    return Theme::instance()->statusColor(c.verified ? QStringLiteral("completed") : QStringLiteral("failed"));
  if (role == Qt::ToolTipRole)
    return c.verified ? tr("MANIFEST.json lists every file with its size; all are present") :
                        tr("MANIFEST.json missing or a listed file is missing or has another size");
  if (role == Qt::TextAlignmentRole && (index.column() == Step || index.column() == ValLoss || index.column() == Size))
    return QVariant(Qt::AlignRight | Qt::AlignVCenter);
  return {};
}

QVariant CheckpointTableModel::headerData(int section, Qt::Orientation orientation, int role) const {
  if (orientation != Qt::Horizontal || role != Qt::DisplayRole) return QAbstractTableModel::headerData(section, orientation, role);
  switch (section) {
    case Run: return tr("Run");
    case Step: return tr("Step");
    case ValLoss: return tr("Val loss");
    case Size: return tr("Size");
    case Verified: return tr("Verified");
    case Created: return tr("Created");
    case Path: return tr("Path");
  }
  return {};
}

}  // namespace fathom::ui
