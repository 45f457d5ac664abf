// Main window wiring: pages, shortcuts, menus, status bar, settings.
#include "ui/MainWindow.h"

#include <QAction>
#include <QActionGroup>
#include <QApplication>
#include <QCloseEvent>
#include <QDir>
#include <QFileDialog>
#include <QFileInfo>
#include <QHBoxLayout>
#include <QLabel>
#include <QMenuBar>
#include <QMessageBox>
#include <QSettings>
#include <QStackedWidget>
#include <QStatusBar>
#include <QToolButton>

#include "cluster/jobs/JobQueue.h"
#include "cluster/workspace/Workspace.h"
#include "ui/DeviceProbe.h"
#include "ui/Format.h"
#include "ui/ModeBar.h"
#include "ui/Theme.h"
#include "ui/pages/EmptyStatePage.h"
#include "ui/pages/checkpoints/CheckpointsPage.h"
#include "ui/pages/designer/DesignerPage.h"
#include "ui/pages/finetune/FinetunePage.h"
#include "ui/pages/launch/LaunchDialog.h"
#include "ui/pages/monitor/MonitorPage.h"
#include "ui/pages/playground/PlaygroundPage.h"
#include "ui/pages/hosts/HostsPage.h"
#include "ui/pages/runs/RunsPage.h"

namespace fathom::ui {

MainWindow::MainWindow(cluster::Workspace* workspace, cluster::JobQueue* queue, QWidget* parent)
    : QMainWindow(parent), m_ws(workspace), m_queue(queue) {
  Theme::instance();  // palette before the first widget paints
  setWindowTitle(QStringLiteral("Fathom"));
  setWindowIcon(QIcon(QStringLiteral(":/icons/fathom.svg")));
  resize(1480, 920);
  m_devices = new DeviceProbe(this);
  if (m_queue && !m_queue->engineBinary().isEmpty()) m_devices->setProgram(m_queue->engineBinary());

  auto* central = new QWidget(this);
  auto* row = new QHBoxLayout(central);
  row->setContentsMargins(0, 0, 0, 0);
  row->setSpacing(0);
  m_modeBar = new ModeBar(central);
  m_stack = new QStackedWidget(central);
  row->addWidget(m_modeBar);
  row->addWidget(m_stack, 1);
  setCentralWidget(central);

  m_designer = new DesignerPage(workspace, m_stack);
  m_runs = new RunsPage(workspace, queue, m_stack);
  m_monitor = new MonitorPage(workspace, queue, m_stack);
  m_checkpoints = new CheckpointsPage(workspace, queue, m_stack);
  m_finetune = new FinetunePage(workspace, queue, m_devices, m_stack);
  m_playground = new PlaygroundPage(workspace, m_stack);
  if (m_queue && !m_queue->engineBinary().isEmpty()) m_playground->setEngineBinary(m_queue->engineBinary());
  m_playground->setJobQueue(m_queue);
  struct Mode {
    const char* icon;
    QString label, tip;
    QWidget* page;
  };
  const Mode modes[] = {
      {"designer", tr("Designer"), tr("Design a run config: form, YAML, estimate (Ctrl+1)"), m_designer},
      {"runs", tr("Runs"), tr("Every run of the workspace and the job queue (Ctrl+2)"), m_runs},
      {"monitor", tr("Monitor"), tr("Live charts, samples and logs of a run; compare runs (Ctrl+3)"), m_monitor},
      {"checkpoints", tr("Checkpoints"), tr("Saved checkpoints of every run (Ctrl+4)"), m_checkpoints},
      {"finetune", tr("Fine-tune"), tr("LoRA fine-tuning: base, data, adapters, launch (Ctrl+5)"), m_finetune},
      {"playground", tr("Playground"), tr("Chat with a checkpoint, adapter or Hugging Face model; compare two (Ctrl+6)"),
       m_playground},
      {"hosts", tr("Hosts"), tr("SSH hosts for multi-node runs (Ctrl+7)"),
       new HostsPage(workspace, queue, m_stack)},
  };
  for (int i = 0; i < PageCount; ++i) {
    m_modeBar->addMode(QString::fromLatin1(modes[i].icon), modes[i].label, modes[i].tip);
    m_stack->addWidget(modes[i].page);
    auto* shortcut = new QAction(this);
    shortcut->setShortcut(QKeySequence(Qt::CTRL | static_cast<Qt::Key>(Qt::Key_1 + i)));
    shortcut->setShortcutContext(Qt::ApplicationShortcut);
    connect(shortcut, &QAction::triggered, this, [this, i] { setCurrentPage(i); });
    addAction(shortcut);
  }
  connect(m_modeBar, &ModeBar::currentChanged, m_stack, &QStackedWidget::setCurrentIndex);
  m_modeBar->setCurrentIndex(DesignerMode);

  connect(m_designer, &DesignerPage::launchRequested, this, [this](const QString& path) { openLaunchDialog(path); });
  connect(m_designer, &DesignerPage::statusMessage, this, [this](const QString& t) { statusBar()->showMessage(t, 6000); });
  connect(m_designer, &DesignerPage::titleChanged, this, [this](const QString& t) {
    setWindowTitle(QStringLiteral("%1 — Fathom").arg(t));
  });
  connect(m_runs, &RunsPage::openInMonitor, this, &MainWindow::openRunInMonitor);
  connect(m_runs, &RunsPage::statusMessage, this, [this](const QString& t) { statusBar()->showMessage(t, 6000); });
  connect(m_monitor, &MonitorPage::statusMessage, this, [this](const QString& t) { statusBar()->showMessage(t, 6000); });
  connect(m_checkpoints, &CheckpointsPage::openRun, this, &MainWindow::openRunInMonitor);
  connect(m_checkpoints, &CheckpointsPage::runLaunched, this, &MainWindow::openRunInMonitor);
  connect(m_checkpoints, &CheckpointsPage::statusMessage, this, [this](const QString& t) { statusBar()->showMessage(t, 8000); });
  // Fine-tune from here: the Fine-tune page with that checkpoint as its base; a LoRA adapter
  // continues on its own base (lora.adapter).
  connect(m_checkpoints, &CheckpointsPage::fineTuneRequested, this, [this](const QString&, const QString& title) {
    const QList<cluster::CheckpointRecord> sel = m_checkpoints->selectedCheckpoints();
    if (sel.isEmpty()) return;
    const cluster::CheckpointRecord& c = sel.first();
    if (c.lora && !c.loraBase.isEmpty()) {
      m_finetune->setBase(c.loraBase);
      m_finetune->setAdapter(c.path);
    } else {
      m_finetune->setBase(c.path);
    }
    setCurrentPage(FinetuneMode);
    statusBar()->showMessage(title, 8000);
  });
  connect(m_checkpoints, &CheckpointsPage::openInPlayground, this, [this](const QString& dir) {
    m_playground->openModel(dir);
    setCurrentPage(PlaygroundMode);
  });
  connect(m_playground, &PlaygroundPage::statusMessage, this, [this](const QString& t) { statusBar()->showMessage(t, 8000); });
  connect(m_finetune, &FinetunePage::runLaunched, this, &MainWindow::openRunInMonitor);
  connect(m_finetune, &FinetunePage::statusMessage, this, [this](const QString& t) { statusBar()->showMessage(t, 8000); });

  m_jobsLabel = new QLabel(this);
  m_jobsLabel->setContentsMargins(8, 0, 8, 0);
  m_devicesLabel = new QLabel(this);
  m_devicesLabel->setContentsMargins(8, 0, 8, 0);
  statusBar()->addPermanentWidget(m_jobsLabel);
  statusBar()->addPermanentWidget(m_devicesLabel);
  if (m_ws) {
    connect(m_ws, &cluster::Workspace::runsChanged, this, &MainWindow::updateJobsLabel);
    connect(m_ws, &cluster::Workspace::reloaded, this, &MainWindow::updateJobsLabel);
  }
  if (m_queue) {
    connect(m_queue, &cluster::JobQueue::jobsChanged, this, &MainWindow::updateJobsLabel);
    connect(m_queue, &cluster::JobQueue::runFinished, this, [this](const QString& id, const QString& status) {
      statusBar()->showMessage(tr("Run %1 ended: %2").arg(id, status), 10000);
    });
  }
  connect(m_devices, &DeviceProbe::devicesChanged, this, [this] {
    updateDevicesLabel();
    m_designer->setLocalDevices(m_devices->devices());
  });
  connect(Theme::instance(), &Theme::changed, this, &MainWindow::updateJobsLabel);
  updateJobsLabel();
  updateDevicesLabel();
  m_devices->refresh();

  buildMenus();
  restoreSettings();
  if (m_ws && m_designer->currentPath().isEmpty()) {
    // First start: the default project is open and one click from a launch.
    const QString demo = m_ws->defaultProjectPath();
    if (QFileInfo::exists(demo)) m_designer->openFile(demo);
  }
  if (!m_ws) statusBar()->showMessage(tr("No workspace: runs cannot be launched. Start Fathom with --workspace DIR."));
}

MainWindow::~MainWindow() = default;

QString MainWindow::pageName(int page) {
  static const char* names[] = {"designer", "runs", "monitor", "checkpoints", "finetune", "playground", "hosts"};
  return page >= 0 && page < PageCount ? QString::fromLatin1(names[page]) : QString();
}

void MainWindow::setCurrentPage(int page) { m_modeBar->setCurrentIndex(page); }

int MainWindow::currentPage() const { return m_stack->currentIndex(); }

void MainWindow::buildMenus() {
  QMenu* file = menuBar()->addMenu(tr("&File"));
  file->addAction(tr("&New config"), QKeySequence::New, this, [this] {
    setCurrentPage(DesignerMode);
    if (m_designer->maybeSave()) m_designer->newDocument();
  });
  file->addAction(tr("&Open config…"), QKeySequence::Open, this, [this] {
    setCurrentPage(DesignerMode);
    if (!m_designer->maybeSave()) return;
    const QString path = QFileDialog::getOpenFileName(this, tr("Open run config"), m_ws ? m_ws->projectsDir() : QDir::homePath(),
                                                      tr("YAML configs (*.yaml *.yml);;All files (*)"));
    if (!path.isEmpty()) m_designer->openFile(path);
  });
  file->addAction(tr("&Save config"), QKeySequence::Save, this, [this] { m_designer->save(); });
  file->addAction(tr("Save config &as…"), QKeySequence::SaveAs, this, [this] { m_designer->saveAs(); });
  file->addSeparator();
  file->addAction(tr("&Quit"), QKeySequence::Quit, this, &QWidget::close);

  QMenu* view = menuBar()->addMenu(tr("&View"));
  for (int i = 0; i < PageCount; ++i) {
    QAction* a = view->addAction(m_modeBar->button(i)->text(), this, [this, i] { setCurrentPage(i); });
    a->setShortcut(QKeySequence(Qt::CTRL | static_cast<Qt::Key>(Qt::Key_1 + i)));
    a->setShortcutContext(Qt::WidgetShortcut);  // the window-level actions own the shortcut
  }
  view->addSeparator();
  QMenu* theme = view->addMenu(tr("&Theme"));
  auto* group = new QActionGroup(theme);
  const std::pair<QString, Theme::Mode> modes[] = {{tr("Follow the system"), Theme::Mode::System},
                                                   {tr("Light"), Theme::Mode::Light},
                                                   {tr("Dark"), Theme::Mode::Dark}};
  for (const auto& [label, mode] : modes) {
    QAction* a = theme->addAction(label, this, [mode] { Theme::instance()->setMode(mode); });
    a->setCheckable(true);
    a->setChecked(Theme::instance()->mode() == mode);
    group->addAction(a);
  }
  view->addAction(tr("Toggle light/dark"), QKeySequence(Qt::CTRL | Qt::SHIFT | Qt::Key_T), this, [] {
    Theme::instance()->setMode(Theme::instance()->isDark() ? Theme::Mode::Light : Theme::Mode::Dark);
  });

  QMenu* run = menuBar()->addMenu(tr("&Run"));
  run->addAction(tr("&Launch current config…"), this, [this] {
    setCurrentPage(DesignerMode);
    m_designer->requestLaunch();
  });
  run->addAction(tr("&Stop selected run"), this, [this] { m_runs->stopSelected(); });
  run->addAction(tr("&Rescan workspace"), this, [this] { m_runs->rescan(); });
  run->addAction(tr("Refresh &devices"), this, [this] { m_devices->refresh(); });

  QMenu* help = menuBar()->addMenu(tr("&Help"));
  help->addAction(tr("&About Fathom"), this, [this] {
    QMessageBox::about(this, tr("About Fathom"),
                       tr("<h3>Fathom %1</h3><p>A native workbench for training, fine-tuning and serving language models.</p>"
                          "<p>Workspace: %2<br>Engine: %3<br>Qt %4</p>")
                           .arg(QStringLiteral(FATHOM_VERSION), m_ws ? QDir::toNativeSeparators(m_ws->dir()) : tr("(none)"),
                                QDir::toNativeSeparators(DeviceProbe::engineBinary()), QString::fromLatin1(qVersion())));
  });
}

LaunchDialog* MainWindow::openLaunchDialog(const QString& configPath) {
  if (m_launchDialog) m_launchDialog->close();
  auto* dialog = new LaunchDialog(configPath, m_queue, m_devices, this);
  dialog->setAttribute(Qt::WA_DeleteOnClose);
  m_launchDialog = dialog;
  connect(dialog, &QDialog::accepted, this, [this, dialog] {
    const QString id = dialog->launchedRunId();
    statusBar()->showMessage(tr("Launched %1").arg(id), 8000);
    openRunInMonitor(id);
  });
  dialog->open();
  return dialog;
}

void MainWindow::openRunInMonitor(const QString& runId) {
  m_monitor->setRun(runId);
  setCurrentPage(MonitorMode);
}

void MainWindow::updateJobsLabel() {
  int running = 0, queued = 0;
  if (m_ws) {
    running = static_cast<int>(m_ws->runs().listByStatus(QStringLiteral("running")).size());
    queued = static_cast<int>(m_ws->runs().listByStatus(QStringLiteral("queued")).size());
  }
  const QColor c = Theme::instance()->statusColor(running ? QStringLiteral("running") : QStringLiteral("queued"));
  m_jobsLabel->setText(QStringLiteral("<span style='color:%1'>●</span> ").arg(c.name()) +
                       tr("%n running", nullptr, running) + (queued ? tr(" · %n queued", nullptr, queued) : QString()));
  m_jobsLabel->setToolTip(tr("Runs of this workspace that are running or waiting for a device"));
}

void MainWindow::updateDevicesLabel() {
  if (!m_devices->isReady()) {
    m_devicesLabel->setText(tr("Devices: asking the engine…"));
    return;
  }
  if (!m_devices->error().isEmpty()) {
    m_devicesLabel->setText(tr("Devices: unknown"));
    m_devicesLabel->setToolTip(m_devices->error());
    return;
  }
  QStringList parts;
  for (const EngineDevice& d : m_devices->devices()) {
    if (d.kind == QLatin1String("cpu"))
      parts << tr("CPU %1 threads · %2").arg(d.threads).arg(formatBytes(double(d.memoryTotal), 0));
    else
      parts << QStringLiteral("%1 %2 · %3").arg(d.id(), d.name, formatBytes(double(d.memoryTotal), 0));
  }
  m_devicesLabel->setText(parts.join(QStringLiteral("  |  ")));
  m_devicesLabel->setToolTip(tr("Reported by %1 devices --json").arg(m_devices->program()));
}

void MainWindow::saveSettings() const {
  QSettings s;
  s.setValue(QStringLiteral("window/geometry"), saveGeometry());
  s.setValue(QStringLiteral("window/state"), saveState());
  s.setValue(QStringLiteral("window/page"), currentPage());
  m_designer->saveState(s);
  m_runs->saveState(s);
  m_monitor->saveState(s);
  m_checkpoints->saveState(s);
  m_finetune->saveState(s);
  m_playground->saveState(s);
}

void MainWindow::restoreSettings() {
  QSettings s;
  restoreGeometry(s.value(QStringLiteral("window/geometry")).toByteArray());
  restoreState(s.value(QStringLiteral("window/state")).toByteArray());
  m_designer->restoreState(s);
  m_runs->restoreState(s);
  m_monitor->restoreState(s);
  m_checkpoints->restoreState(s);
  m_finetune->restoreState(s);
  m_playground->restoreState(s);
  setCurrentPage(std::clamp(s.value(QStringLiteral("window/page"), 0).toInt(), 0, PageCount - 1));
}

void MainWindow::closeEvent(QCloseEvent* event) {
  if (!m_designer->maybeSave()) {
    event->ignore();
    return;
  }
  saveSettings();
  if (m_launchDialog) m_launchDialog->close();
  event->accept();
}

}  // namespace fathom::ui
