// Compare view: rebuilds the overlay when the selection, metric or alignment changes, then
// appends live points of the selected runs (rank 0) as their sessions report them.
#include "ui/pages/monitor/ComparePanel.h"

#include <QComboBox>
#include <QHBoxLayout>
#include <QLabel>
#include <QListWidget>
#include <QPainter>
#include <QSplitter>
#include <QVBoxLayout>

#include "cluster/jobs/JobQueue.h"
#include "cluster/workspace/Workspace.h"
#include "ui/Theme.h"
#include "ui/charts/ChartPanel.h"
#include "ui/charts/RunColors.h"

namespace fathom::ui {

namespace {
QIcon swatch(const QColor& c) {
  QPixmap pm(12, 12);
  pm.fill(Qt::transparent);
  QPainter p(&pm);
  p.setRenderHint(QPainter::Antialiasing);
  p.setBrush(c);
  p.setPen(Qt::NoPen);
  p.drawRoundedRect(QRectF(1, 1, 10, 10), 2, 2);
  return QIcon(pm);
}
}  // namespace

ComparePanel::ComparePanel(cluster::Workspace* workspace, cluster::JobQueue* queue, QWidget* parent)
    : QWidget(parent), m_ws(workspace), m_queue(queue) {
  auto* layout = new QHBoxLayout(this);
  layout->setContentsMargins(6, 6, 6, 6);
  auto* split = new QSplitter(Qt::Horizontal, this);
  auto* left = new QWidget(split);
  auto* ll = new QVBoxLayout(left);
  ll->setContentsMargins(0, 0, 0, 0);
  ll->addWidget(new QLabel(tr("Runs to compare"), left));
  m_runs = new QListWidget(left);
  ll->addWidget(m_runs, 1);
  auto* right = new QWidget(split);
  auto* rl = new QVBoxLayout(right);
  rl->setContentsMargins(0, 0, 0, 0);
  auto* bar = new QHBoxLayout;
  bar->addWidget(new QLabel(tr("Metric"), right));
  m_metric = new QComboBox(right);
  m_metric->setMinimumContentsLength(16);
  bar->addWidget(m_metric);
  bar->addWidget(new QLabel(tr("Align by"), right));
  m_align = new QComboBox(right);
  m_align->addItem(tr("step"));
  m_align->addItem(tr("tokens"));
  bar->addWidget(m_align);
  bar->addStretch(1);
  rl->addLayout(bar);
  m_chartHost = new QWidget(right);
  auto* hl = new QVBoxLayout(m_chartHost);
  hl->setContentsMargins(0, 0, 0, 0);
  rl->addWidget(m_chartHost, 1);
  split->addWidget(left);
  split->addWidget(right);
  split->setStretchFactor(1, 4);
  split->setSizes({260, 900});
  layout->addWidget(split);
  m_chart = nullptr;
  rebuild();

  connect(m_runs, &QListWidget::itemChanged, this, [this] {
    if (m_updating) return;
    refreshMetrics();
    rebuild();
  });
  connect(m_metric, &QComboBox::currentIndexChanged, this, [this] {
    if (!m_updating) rebuild();
  });
  connect(m_align, &QComboBox::currentIndexChanged, this, [this] { rebuild(); });
  if (m_ws) connect(m_ws, &cluster::Workspace::runsChanged, this, [this] { reloadRuns(); });
  reloadRuns();
}

void ComparePanel::reloadRuns() {
  if (!m_ws) return;
  const QStringList checked = checkedRuns();
  m_updating = true;
  m_runs->clear();
  for (const cluster::RunRecord& r : m_ws->runs().list()) {
    auto* item = new QListWidgetItem(QStringLiteral("%1  (%2)").arg(r.name, r.status), m_runs);
    item->setData(Qt::UserRole, r.id);
    item->setToolTip(r.id);
    item->setFlags(item->flags() | Qt::ItemIsUserCheckable);
    item->setCheckState(checked.contains(r.id) ? Qt::Checked : Qt::Unchecked);
    item->setIcon(swatch(RunColors::instance().color(r.id)));
  }
  m_updating = false;
}

QStringList ComparePanel::checkedRuns() const {
  QStringList ids;
  for (int i = 0; i < m_runs->count(); ++i)
    if (m_runs->item(i)->checkState() == Qt::Checked) ids << m_runs->item(i)->data(Qt::UserRole).toString();
  return ids;
}

void ComparePanel::setChecked(const QStringList& runIds) {
  m_updating = true;
  for (int i = 0; i < m_runs->count(); ++i)
    m_runs->item(i)->setCheckState(runIds.contains(m_runs->item(i)->data(Qt::UserRole).toString()) ? Qt::Checked : Qt::Unchecked);
  m_updating = false;
  refreshMetrics();
  rebuild();
}

void ComparePanel::refreshMetrics() {
  const QString current = metric();
  QStringList keys;
  if (m_queue)
    for (const QString& id : checkedRuns())
      if (cluster::RunSession* s = m_queue->session(id))
        for (const QString& k : s->keys())
          if (!keys.contains(k)) keys << k;
  std::sort(keys.begin(), keys.end());
  // The usual first choice on top.
  if (keys.removeOne(QStringLiteral("loss"))) keys.prepend(QStringLiteral("loss"));
  m_updating = true;
  m_metric->clear();
  m_metric->addItems(keys);
  const int i = m_metric->findText(current.isEmpty() ? QStringLiteral("loss") : current);
  m_metric->setCurrentIndex(i >= 0 ? i : 0);
  m_updating = false;
}

void ComparePanel::setMetric(const QString& key) {
  const int i = m_metric->findText(key);
  if (i >= 0) m_metric->setCurrentIndex(i);
}

QString ComparePanel::metric() const { return m_metric->currentText(); }

void ComparePanel::setAlignByTokens(bool tokens) { m_align->setCurrentIndex(tokens ? 1 : 0); }

void ComparePanel::rebuild() {
  for (const auto& c : m_connections) disconnect(c);
  m_connections.clear();
  m_seriesOf.clear();
  delete m_chart;
  const QString key = metric();
  const bool tokens = m_align->currentIndex() == 1;
  m_chart = new ChartPanel(QStringLiteral("compare"), key.isEmpty() ? tr("Compare") : key, QString(), 1.0, m_chartHost);
  m_chartHost->layout()->addWidget(m_chart);
  m_chart->setXAxisKind(tokens ? XAxisKind::Tokens : XAxisKind::Step);
  m_chart->setEmptyText(tr("Tick runs on the left to overlay their %1").arg(key.isEmpty() ? tr("metrics") : key));
  if (!m_queue || key.isEmpty()) return;
  for (const QString& id : checkedRuns()) {
    cluster::RunSession* s = m_queue->session(id);
    if (!s) continue;
    QString name = id;
    if (m_ws)
      if (auto r = m_ws->runs().get(id)) name = r->name + QStringLiteral(" · ") + id.right(4);
    const int series = m_chart->addSeries(name, RunColors::instance().color(id));
    m_seriesOf.insert(id, series);
    for (const cluster::MetricPoint& p : s->series(key, 0)) m_chart->append(series, tokens ? double(p.tokens) : double(p.step), p.value);
    m_connections << connect(s, &cluster::RunSession::metricsAppended, this, &ComparePanel::onMetrics);
  }
}

void ComparePanel::onMetrics(const QString& runId, const QVector<cluster::MetricPoint>& points) {
  const auto it = m_seriesOf.find(runId);
  if (it == m_seriesOf.end() || !m_chart) return;
  const QString key = metric();
  const bool tokens = m_align->currentIndex() == 1;
  for (const cluster::MetricPoint& p : points)
    if (p.rank == 0 && p.key == key) m_chart->append(it.value(), tokens ? double(p.tokens) : double(p.step), p.value);
}

}  // namespace fathom::ui
