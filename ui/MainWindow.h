// The workbench window: Qt Creator-style mode bar on the left, one page per mode in a stacked
// widget (Designer, Runs, Monitor, Checkpoints, Fine-tune, Playground; Hosts arrives with a later
// issue), a status bar with running jobs and devices, menus, themes, and its state (geometry,
// splitters, last page, open run) saved with QSettings. Holds no run logic: pages call
// fathom_cluster (Workspace, JobQueue) that app/main.cpp hands in.
#pragma once

#include <QMainWindow>
#include <QPointer>

#include "ui/pages/launch/LaunchDialog.h"

namespace fathom::cluster {
class Workspace;
class JobQueue;
}  // namespace fathom::cluster

class QLabel;
class QStackedWidget;

namespace fathom::ui {

class ModeBar;
class DesignerPage;
class RunsPage;
class MonitorPage;
class CheckpointsPage;
class FinetunePage;
class PlaygroundPage;
class DeviceProbe;

class MainWindow : public QMainWindow {
  Q_OBJECT
 public:
  enum Page { DesignerMode, RunsMode, MonitorMode, CheckpointsMode, FinetuneMode, PlaygroundMode, HostsMode, PageCount };

  // `workspace` and `queue` must outlive the window; either may be null (a window that only
  // designs configs, e.g. when the workspace could not be opened).
  MainWindow(cluster::Workspace* workspace, cluster::JobQueue* queue, QWidget* parent = nullptr);
  ~MainWindow() override;

  void setCurrentPage(int page);
  int currentPage() const;
  static QString pageName(int page);  // "designer", "runs", ... (screenshots, settings)

  DesignerPage* designer() const { return m_designer; }
  RunsPage* runsPage() const { return m_runs; }
  MonitorPage* monitor() const { return m_monitor; }
  CheckpointsPage* checkpoints() const { return m_checkpoints; }
  FinetunePage* finetune() const { return m_finetune; }
  PlaygroundPage* playground() const { return m_playground; }
  ModeBar* modeBar() const { return m_modeBar; }
  DeviceProbe* deviceProbe() const { return m_devices; }
  QLabel* jobsLabel() const { return m_jobsLabel; }
  QLabel* devicesLabel() const { return m_devicesLabel; }

  // Opens the (window-modal, non-blocking) Launch dialog for a saved config; on Launch the run is
  // enqueued and the Monitor shows it. The dialog stays reachable for tests until it closes.
  LaunchDialog* openLaunchDialog(const QString& configPath);
  LaunchDialog* launchDialog() const { return m_launchDialog; }
  void openRunInMonitor(const QString& runId);

  void saveSettings() const;
  void restoreSettings();

 protected:
  void closeEvent(QCloseEvent* event) override;

 private:
  void buildMenus();
  void updateJobsLabel();
  void updateDevicesLabel();

  cluster::Workspace* m_ws;
  cluster::JobQueue* m_queue;
  DeviceProbe* m_devices;
  ModeBar* m_modeBar;
  QStackedWidget* m_stack;
  DesignerPage* m_designer;
  RunsPage* m_runs;
  MonitorPage* m_monitor;
  CheckpointsPage* m_checkpoints;
  FinetunePage* m_finetune;
  PlaygroundPage* m_playground;
  QLabel* m_jobsLabel;
  QLabel* m_devicesLabel;
  QPointer<LaunchDialog> m_launchDialog;
};

}  // namespace fathom::ui
