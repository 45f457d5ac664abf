// Screenshot tour. Timing is driven by the runs' progress (points in the loss series), not by
// fixed sleeps, so slow machines get the same pictures, just later (bounded by a timeout).
#include "ui/ScreenshotTour.h"

#include <QCoreApplication>
#include <QDir>
#include <QFile>
#include <QTabWidget>
#include <QTextStream>

#include "cluster/jobs/JobQueue.h"
#include "cluster/jobs/RunSession.h"
#include "cluster/workspace/Workspace.h"
#include "ui/MainWindow.h"
#include "ui/Theme.h"
#include "ui/pages/designer/DesignerPage.h"
#include "ui/pages/launch/LaunchDialog.h"
#include "ui/pages/monitor/ComparePanel.h"
#include "ui/pages/monitor/MonitorPage.h"
#include "ui/pages/runs/RunsPage.h"

namespace fathom::ui {

namespace {
constexpr int kTimeoutS = 600;
constexpr int kWantPoints = 40;  // loss points of the live run before the pictures

void settle(int ms) {
  QElapsedTimer t;
  t.start();
  while (t.elapsed() < ms) QCoreApplication::processEvents(QEventLoop::AllEvents, 20);
}
}  // namespace

ScreenshotTour::ScreenshotTour(MainWindow* window, cluster::Workspace* workspace, cluster::JobQueue* queue,
                               const QString& dir, QObject* parent)
    : QObject(parent), m_window(window), m_ws(workspace), m_queue(queue), m_dir(dir) {
  m_timer.setInterval(500);
  connect(&m_timer, &QTimer::timeout, this, &ScreenshotTour::poll);
}

void ScreenshotTour::start() {
  if (!m_queue || !m_ws) return finish(2, QStringLiteral("no workspace"));
  QDir().mkpath(m_dir);
  // Run directories copied into the workspace (e.g. a GPU run from another machine) are indexed.
  m_ws->rescan();
  // Two small runs to compare: the first finishes quickly, the second keeps running.
  const QString projects = m_ws->projectsDir();
  QDir().mkpath(projects);
  const QString cfg = QDir(projects).filePath(QStringLiteral("tiny-shots.yaml"));
  QFile f(cfg);
  if (f.open(QIODevice::WriteOnly | QIODevice::Truncate)) {
    QTextStream(&f) << "# Screenshot runs: debug-tiny with samples and evals often enough to show them.\n"
                       "extends: debug-tiny\nrun:\n  name: tiny\ntrain:\n  max_steps: 600\n  log_interval: 2\n"
                       "  eval_interval: 40\n  sample_interval: 40\n  sample_prompt: \"The state of the Union\"\n"
                       "checkpoint:\n  save_every_steps: 100\n";
  }
  cluster::LaunchSpec a;
  a.name = QStringLiteral("tiny-lr3e-3");
  a.configPath = cfg;
  a.devices = {QStringLiteral("cpu")};
  a.overrides = {QStringLiteral("train.max_steps=120")};
  m_firstRun = m_queue->enqueue(a);
  cluster::LaunchSpec b = a;
  b.name = QStringLiteral("tiny-lr1e-3");
  b.overrides = {QStringLiteral("optimizer.lr=1e-3")};
  m_liveRun = m_queue->enqueue(b);
  if (m_firstRun.isEmpty() || m_liveRun.isEmpty()) return finish(2, QStringLiteral("cannot launch: ") + m_queue->lastError());
  m_window->designer()->openFile(cfg);
  m_elapsed.start();
  m_timer.start();
}

void ScreenshotTour::poll() {
  if (m_captured) return;
  cluster::RunSession* live = m_queue->session(m_liveRun);
  const int points = live ? static_cast<int>(live->series(QStringLiteral("loss"), 0).size()) : 0;
  const auto first = m_ws->runs().get(m_firstRun);
  const bool firstDone = first && cluster::isFinalStatus(first->status);
  if (live && live->hasExitRecord()) return finish(1, QStringLiteral("the live run ended early: ") + live->status());
  if ((firstDone && points >= kWantPoints) || m_elapsed.elapsed() > kTimeoutS * 1000) {
    m_captured = true;
    m_timer.stop();
    capture();
  }
}

bool ScreenshotTour::grab(const QString& name) {
  settle(400);
  const QString path = QDir(m_dir).filePath(name + QStringLiteral(".png"));
  const bool ok = m_window->grab().save(path);
  QTextStream(stderr) << (ok ? "wrote " : "FAILED to write ") << path << "\n";
  return ok;
}

void ScreenshotTour::capture() {
  Theme::instance()->setMode(Theme::Mode::Light);
  m_window->resize(1600, 1000);
  bool ok = true;
  m_window->setCurrentPage(MainWindow::DesignerMode);
  ok &= grab(QStringLiteral("designer"));
  m_window->runsPage()->selectRun(m_firstRun);
  m_window->setCurrentPage(MainWindow::RunsMode);
  ok &= grab(QStringLiteral("runs"));
  m_window->openRunInMonitor(m_liveRun);
  m_window->monitor()->tabs()->setCurrentIndex(0);
  settle(1500);
  ok &= grab(QStringLiteral("monitor"));
  m_window->monitor()->tabs()->setCurrentIndex(1);
  ok &= grab(QStringLiteral("monitor-samples"));
  m_window->monitor()->tabs()->setCurrentIndex(2);
  ok &= grab(QStringLiteral("monitor-logs"));
  // A run with GPU telemetry, if the workspace holds one (a run directory copied from a GPU box).
  QString gpuRun;
  for (const cluster::RunRecord& r : m_ws->runs().list()) {
    if (r.id == m_liveRun || r.id == m_firstRun) continue;
    cluster::RunSession* s = m_queue->session(r.id);
    if (!s) continue;
    s->poll();
    s->flush();
    if (s->keys().contains(QStringLiteral("gpu0.util_pct"))) {
      gpuRun = r.id;
      break;
    }
  }
  m_window->monitor()->comparePanel()->reloadRuns();
  QStringList compared{m_firstRun, m_liveRun};
  if (!gpuRun.isEmpty()) compared << gpuRun;
  m_window->monitor()->comparePanel()->setChecked(compared);
  m_window->monitor()->comparePanel()->setMetric(QStringLiteral("loss"));
  m_window->monitor()->tabs()->setCurrentIndex(3);
  ok &= grab(QStringLiteral("monitor-compare"));
  m_window->monitor()->tabs()->setCurrentIndex(0);
  m_window->setCurrentPage(MainWindow::CheckpointsMode);
  ok &= grab(QStringLiteral("checkpoints"));
  m_window->setCurrentPage(MainWindow::FinetuneMode);
  ok &= grab(QStringLiteral("finetune"));
  m_window->setCurrentPage(MainWindow::PlaygroundMode);
  ok &= grab(QStringLiteral("playground"));
  m_window->setCurrentPage(MainWindow::HostsMode);
  ok &= grab(QStringLiteral("hosts"));
  // The Launch dialog over the Designer.
  m_window->setCurrentPage(MainWindow::DesignerMode);
  if (LaunchDialog* d = m_window->openLaunchDialog(m_window->designer()->currentPath())) {
    settle(600);
    const QString path = QDir(m_dir).filePath(QStringLiteral("launch-dialog.png"));
    ok &= d->grab().save(path);
    QTextStream(stderr) << "wrote " << path << "\n";
    d->close();
  }
  if (!gpuRun.isEmpty()) {
    m_window->openRunInMonitor(gpuRun);
    settle(1500);
    ok &= grab(QStringLiteral("monitor-gpu"));
  }
  // Dark theme, Monitor.
  Theme::instance()->setMode(Theme::Mode::Dark);
  m_window->openRunInMonitor(m_liveRun);
  settle(800);
  ok &= grab(QStringLiteral("monitor-dark"));
  Theme::instance()->setMode(Theme::Mode::System);
  m_queue->stop(m_liveRun);
  finish(ok ? 0 : 1, ok ? QStringLiteral("screenshots written to ") + m_dir : QStringLiteral("some screenshots failed"));
}

void ScreenshotTour::finish(int code, const QString& message) {
  QTextStream(stderr) << "fathom --screenshot-dir: " << message << "\n";
  QTimer::singleShot(0, qApp, [code] { QCoreApplication::exit(code); });
}

}  // namespace fathom::ui
