// The Launch dialog: where a config runs (CPU, or this computer's GPUs as the engine reports
// them), how many processes, --set overrides (checked with the config loader as you type), the
// run name, and the exact command lines the launcher will run. Launch enqueues the run.
#pragma once

#include <QDialog>

#include "cluster/launch/LocalLauncher.h"
#include "ui/DeviceProbe.h"

class QLineEdit;
class QListWidget;
class QSpinBox;
class QPlainTextEdit;
class QLabel;
class QDialogButtonBox;
class QTimer;
class QComboBox;

namespace fathom::cluster {
class JobQueue;
}

namespace fathom::ui {

class ClusterTargetWidget;

class LaunchDialog : public QDialog {
  Q_OBJECT
 public:
  LaunchDialog(const QString& configPath, cluster::JobQueue* queue, DeviceProbe* devices, QWidget* parent = nullptr);

  // The spec as the widgets describe it now.
  cluster::LaunchSpec spec() const;
  // The run id after a successful Launch.
  QString launchedRunId() const { return m_runId; }

  // Widgets (tests drive them).
  QLineEdit* nameEdit() const { return m_name; }
  QListWidget* deviceList() const { return m_devices; }
  QSpinBox* processCount() const { return m_procs; }
  QPlainTextEdit* overridesEdit() const { return m_overrides; }
  QPlainTextEdit* preview() const { return m_preview; }
  QLabel* problemLabel() const { return m_problem; }
  // Validates and enqueues; false (with the reason shown) when it could not.
  bool launch();

  // Cluster section (issue 9): target "This computer" (0) or "Cluster (SSH hosts)" (1).
  QComboBox* targetCombo() const { return m_target; }
  ClusterTargetWidget* clusterTarget() const { return m_cluster; }
  bool isClusterTarget() const;

 private:
  void fillDevices();
  void updatePreview();
  QStringList overrideList() const;

  QString m_configPath;
  cluster::JobQueue* m_queue;
  DeviceProbe* m_probe;
  cluster::LocalLauncher m_launcher;
  QString m_runId;
  bool m_fillingDevices = false;
  QLineEdit* m_name;
  QListWidget* m_devices;
  QSpinBox* m_procs;
  QPlainTextEdit* m_overrides;
  QPlainTextEdit* m_preview;
  QLabel* m_problem;
  QDialogButtonBox* m_buttons;
  QTimer* m_debounce;
  QComboBox* m_target = nullptr;
  ClusterTargetWidget* m_cluster = nullptr;
};

}  // namespace fathom::ui
