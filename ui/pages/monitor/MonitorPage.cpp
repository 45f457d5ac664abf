// Monitor page wiring: run picker, status line (step / max, loss, tok/s, ETA), x-axis switch,
// Stop / Checkpoint buttons, and the four tabs.
#include "ui/pages/monitor/MonitorPage.h"

#include <QButtonGroup>
#include <QComboBox>
#include <QDir>
#include <QFileInfo>
#include <QHBoxLayout>
#include <QJsonDocument>
#include <QJsonObject>
#include <QLabel>
#include <QMessageBox>
#include <QPushButton>
#include <QSettings>
#include <QTabWidget>
#include <QTextBrowser>
#include <QToolButton>
#include <QVBoxLayout>

#include <cmath>

#include "cluster/jobs/JobQueue.h"
#include "cluster/jobs/RunSession.h"
#include "cluster/workspace/Workspace.h"
#include "engine/config/config.h"
#include "ui/Format.h"
#include "ui/Theme.h"
#include "ui/pages/monitor/ComparePanel.h"
#include "ui/pages/monitor/LogView.h"
#include "ui/pages/monitor/RunDashboard.h"

namespace fathom::ui {

MonitorPage::MonitorPage(cluster::Workspace* workspace, cluster::JobQueue* queue, QWidget* parent)
    : QWidget(parent), m_ws(workspace), m_queue(queue) {
  auto* layout = new QVBoxLayout(this);
  layout->setContentsMargins(0, 0, 0, 0);
  layout->setSpacing(0);

  auto* bar = new QWidget(this);
  auto* bl = new QHBoxLayout(bar);
  bl->setContentsMargins(8, 6, 8, 6);
  bl->addWidget(new QLabel(tr("Run"), bar));
  m_run = new QComboBox(bar);
  m_run->setMinimumContentsLength(28);
  m_run->setSizeAdjustPolicy(QComboBox::AdjustToMinimumContentsLengthWithIcon);
  bl->addWidget(m_run);
  m_status = new QLabel(bar);
  m_status->setTextInteractionFlags(Qt::TextSelectableByMouse);
  bl->addWidget(m_status, 1);
  bl->addWidget(new QLabel(tr("x-axis"), bar));
  m_xGroup = new QButtonGroup(this);
  m_xGroup->setExclusive(true);
  const QString names[] = {tr("Step"), tr("Tokens"), tr("Time")};
  for (int i = 0; i < 3; ++i) {
    auto* b = new QToolButton(bar);
    b->setText(names[i]);
    b->setCheckable(true);
    b->setChecked(i == 0);
    b->setToolTip(tr("Shared x-axis of every chart"));
    m_xGroup->addButton(b, i);
    bl->addWidget(b);
  }
  auto* reset = new QToolButton(bar);
  reset->setText(tr("Reset zoom"));
  reset->setToolTip(tr("Show all data and follow new points (or double-click a chart)"));
  bl->addWidget(reset);
  m_checkpoint = new QPushButton(tr("Checkpoint now"), bar);
  m_checkpoint->setToolTip(tr("Ask the engine to save a checkpoint and keep training"));
  bl->addWidget(m_checkpoint);
  m_stop = new QPushButton(tr("Stop"), bar);
  m_stop->setToolTip(tr("Save a checkpoint, then end the run (it can be resumed)"));
  bl->addWidget(m_stop);
  layout->addWidget(bar);

  m_tabs = new QTabWidget(this);
  m_tabs->setDocumentMode(true);
  m_dashboard = new RunDashboard(m_tabs);
  m_tabs->addTab(m_dashboard, tr("Charts"));
  m_samples = new QTextBrowser(m_tabs);
  m_samples->setOpenLinks(false);
  m_samples->document()->setDocumentMargin(12);
  m_samples->setPlaceholderText(tr("Samples appear here when the run generates them (train.sample_interval)."));
  m_tabs->addTab(m_samples, tr("Samples"));
  m_logs = new LogView(m_tabs);
  m_tabs->addTab(m_logs, tr("Logs"));
  m_compare = new ComparePanel(workspace, queue, m_tabs);
  m_tabs->addTab(m_compare, tr("Compare"));
  layout->addWidget(m_tabs, 1);

  connect(m_run, &QComboBox::activated, this, [this](int i) { setRun(m_run->itemData(i).toString()); });
  connect(m_xGroup, &QButtonGroup::idClicked, this, [this](int id) { setXAxisKind(static_cast<XAxisKind>(id)); });
  connect(reset, &QToolButton::clicked, this, [this] { m_dashboard->grid()->resetAllViews(); });
  connect(m_stop, &QPushButton::clicked, this, [this] {
    if (!m_queue || m_runId.isEmpty()) return;
    if (!m_queue->stop(m_runId))
      QMessageBox::warning(this, tr("Stop"), tr("Could not stop %1: %2").arg(m_runId, m_queue->lastError()));
    else emit statusMessage(tr("Stopping %1: it saves a checkpoint, then exits").arg(m_runId));
  });
  connect(m_checkpoint, &QPushButton::clicked, this, [this] {
    QString error;
    if (!m_session || !m_session->requestCheckpoint(&error))
      QMessageBox::warning(this, tr("Checkpoint"), tr("Could not ask %1 for a checkpoint: %2").arg(m_runId, error));
    else emit statusMessage(tr("Checkpoint requested for %1").arg(m_runId));
  });
  if (m_ws) {
    connect(m_ws, &cluster::Workspace::runsChanged, this, [this] { reloadRunList(); updateStatus(); });
    connect(m_ws, &cluster::Workspace::reloaded, this, [this] { reloadRunList(); });
  }
  if (m_queue) {
    connect(m_queue, &cluster::JobQueue::runStarted, this, [this](const QString& id) {
      // A relaunch of the shown run (resume) has a new live session: follow it.
      if (id == m_runId) attachSession();
    });
  }
  reloadRunList();
  updateStatus();
}

void MonitorPage::reloadRunList() {
  if (!m_ws) return;
  QSignalBlocker block(m_run);
  m_run->clear();
  m_run->addItem(tr("(choose a run)"), QString());
  for (const cluster::RunRecord& r : m_ws->runs().list()) {
    QPixmap dot(10, 10);
    dot.fill(Theme::instance()->statusColor(r.status));
    m_run->addItem(QIcon(dot), QStringLiteral("%1 — %2 (%3)").arg(r.name, r.id, r.status), r.id);
  }
  const int i = m_run->findData(m_runId);
  m_run->setCurrentIndex(i >= 0 ? i : 0);
}

void MonitorPage::setRun(const QString& id) {
  if (id == m_runId && m_session) return;
  m_runId = id;
  const int i = m_run->findData(id);
  if (i >= 0) {
    QSignalBlocker block(m_run);
    m_run->setCurrentIndex(i);
  }
  m_maxSteps = 0;
  if (m_ws && !id.isEmpty())
    if (auto r = m_ws->runs().get(id)) {
      config::LoadOptions o;
      o.check_paths = false;
      const QString cfgPath = QDir(r->runDir).filePath(QStringLiteral("config.yaml"));
      const config::LoadResult lr = config::load_config_file(
          (QFileInfo::exists(cfgPath) ? cfgPath : r->configPath).toStdString(), o);
      m_maxSteps = lr.config.train.max_steps;
      for (const QString& ov : r->overrides)
        if (ov.startsWith(QLatin1String("train.max_steps="))) m_maxSteps = ov.mid(16).toLongLong();
    }
  attachSession();
}

void MonitorPage::attachSession() {
  for (const auto& c : m_connections) disconnect(c);
  m_connections.clear();
  m_session = (m_queue && !m_runId.isEmpty()) ? m_queue->session(m_runId) : nullptr;
  m_progress.clear();
  m_lastTokPerS = 0;
  m_lastLoss = NAN;
  m_lastStep = 0;
  m_samples->clear();
  m_logs->clear();
  m_dashboard->setSession(m_session);
  if (m_session) {
    cluster::RunSession* s = m_session;
    m_connections << connect(s, &cluster::RunSession::metricsAppended, this,
                             [this](const QString&, const QVector<cluster::MetricPoint>& p) { onMetrics(p); });
    m_connections << connect(s, &cluster::RunSession::samplesAppended, this,
                             [this](const QString&, const QVector<cluster::SampleItem>& v) { onSamples(v); });
    m_connections << connect(s, &cluster::RunSession::eventsAppended, this,
                             [this](const QString&, const QVector<cluster::EventItem>& v) { onEvents(v); });
    m_connections << connect(s, &cluster::RunSession::logsAppended, this,
                             [this](const QString&, const QStringList& lines) { m_logs->appendLines(lines); });
    m_connections << connect(s, &cluster::RunSession::statusChanged, this, [this] { updateStatus(); });
    m_connections << connect(s, &cluster::RunSession::finished, this, [this] { updateStatus(); });
    m_connections << connect(s, &cluster::RunSession::sessionReset, this, [this] { attachSession(); });
    // Catch up with what the session already holds.
    m_logs->appendLines(s->logs());
    QStringList eventLines;
    for (const cluster::EventItem& e : s->events()) eventLines << eventLine(e);
    m_logs->appendLines(eventLines);
    onSamples(s->samples());
    for (const QString& key : {QStringLiteral("loss"), QStringLiteral("tokens_per_s")}) onMetrics(s->series(key, 0));
  }
  updateStatus();
}

QString MonitorPage::eventLine(const cluster::EventItem& e) {
  return QStringLiteral("[rank %1] event %2%3 %4")
      .arg(e.rank)
      .arg(e.name, e.step >= 0 ? QStringLiteral(" (step %1)").arg(e.step) : QString(), e.json);
}

void MonitorPage::onMetrics(const QVector<cluster::MetricPoint>& points) {
  for (const cluster::MetricPoint& p : points) {
    if (p.rank != 0) continue;
    if (p.key == QLatin1String("loss")) {
      m_lastLoss = p.value;
      m_lastStep = p.step;
      m_progress.push_back({p.tSec, p.step});
    } else if (p.key == QLatin1String("tokens_per_s")) {
      m_lastTokPerS = p.value;
    }
  }
  // Keep ~the last minute for the rate.
  while (m_progress.size() > 2 && m_progress.back().first - m_progress.front().first > 60) m_progress.removeFirst();
  updateStatus();
}

void MonitorPage::onSamples(const QVector<cluster::SampleItem>& samples) {
  for (const cluster::SampleItem& s : samples) {
    m_samples->append(QStringLiteral("<p><b>step %1</b> <span style='color:gray'>· rank %2 · temperature %3</span><br>"
                                     "<span style='font-family:monospace'><b>%4</b>%5</span></p>")
                          .arg(s.step)
                          .arg(s.rank)
                          .arg(s.temperature)
                          .arg(s.prompt.toHtmlEscaped(), s.text.toHtmlEscaped().replace(QLatin1Char('\n'), QStringLiteral("<br>"))));
  }
}

void MonitorPage::onEvents(const QVector<cluster::EventItem>& events) {
  QStringList lines;
  for (const cluster::EventItem& e : events) lines << eventLine(e);
  m_logs->appendLines(lines);
}

QString MonitorPage::statusText() const { return m_status->text(); }

void MonitorPage::updateStatus() {
  QString status;
  if (m_runId.isEmpty()) {
    m_status->setText(tr("Pick a run, or launch one from the Designer."));
    m_stop->setEnabled(false);
    m_checkpoint->setEnabled(false);
    return;
  }
  if (m_ws)
    if (auto r = m_ws->runs().get(m_runId)) status = r->status;
  if (m_session && !m_session->status().isEmpty() && cluster::isFinalStatus(m_session->status())) status = m_session->status();
  const bool running = status == cluster::run_status::running;
  m_stop->setEnabled(running || status == cluster::run_status::queued);
  m_checkpoint->setEnabled(running);
  QStringList parts;
  parts << QStringLiteral("<span style='color:%1'>●</span> %2").arg(Theme::instance()->statusColor(status).name(), status.toHtmlEscaped());
  if (m_lastStep > 0 || !std::isnan(m_lastLoss))
    parts << (m_maxSteps > 0 ? tr("step %1 / %2").arg(m_lastStep).arg(m_maxSteps) : tr("step %1").arg(m_lastStep));
  if (!std::isnan(m_lastLoss)) parts << tr("loss %1").arg(formatValue(m_lastLoss));
  if (running && m_lastTokPerS > 0) parts << formatTokensPerSecond(m_lastTokPerS);
  if (running && m_maxSteps > m_lastStep && m_progress.size() >= 2) {
    const double dt = m_progress.back().first - m_progress.front().first;
    const double ds = double(m_progress.back().second - m_progress.front().second);
    if (dt > 0 && ds > 0) parts << tr("ETA %1").arg(formatDuration(double(m_maxSteps - m_lastStep) * dt / ds));
  }
  m_status->setText(parts.join(QStringLiteral(" · ")));
}

void MonitorPage::setXAxisKind(XAxisKind kind) {
  if (QAbstractButton* b = m_xGroup->button(static_cast<int>(kind))) b->setChecked(true);
  m_dashboard->setXAxisKind(kind);
}

void MonitorPage::saveState(QSettings& s) const {
  s.setValue(QStringLiteral("monitor/run"), m_runId);
  s.setValue(QStringLiteral("monitor/xAxis"), static_cast<int>(m_dashboard->xAxisKind()));
  s.setValue(QStringLiteral("monitor/tab"), m_tabs->currentIndex());
  s.setValue(QStringLiteral("monitor/panelOrder"), m_dashboard->grid()->orderState());
  s.setValue(QStringLiteral("monitor/pinned"), m_dashboard->grid()->pinnedState());
  s.setValue(QStringLiteral("monitor/compareRuns"), m_compare->checkedRuns());
  s.setValue(QStringLiteral("monitor/compareMetric"), m_compare->metric());
}

void MonitorPage::restoreState(const QSettings& s) {
  setXAxisKind(static_cast<XAxisKind>(std::clamp(s.value(QStringLiteral("monitor/xAxis"), 0).toInt(), 0, 2)));
  m_dashboard->grid()->restoreState(s.value(QStringLiteral("monitor/panelOrder")).toStringList(),
                                    s.value(QStringLiteral("monitor/pinned")).toStringList());
  m_tabs->setCurrentIndex(s.value(QStringLiteral("monitor/tab"), 0).toInt());
  m_compare->setChecked(s.value(QStringLiteral("monitor/compareRuns")).toStringList());
  m_compare->setMetric(s.value(QStringLiteral("monitor/compareMetric")).toString());
  const QString run = s.value(QStringLiteral("monitor/run")).toString();
  if (!run.isEmpty() && m_ws && m_ws->runs().get(run)) setRun(run);
}

}  // namespace fathom::ui
