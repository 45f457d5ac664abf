// "Resume from here": a new run that continues training from one checkpoint (`fathom-engine train
// --resume <checkpoint dir>`), with the source run's resolved config, devices and process count,
// plus --set overrides typed here (checked with the config loader as you type). The source run
// is left as it is; the new run's checkpoints name the source in their lineage. Launch enqueues
// through the JobQueue like the Launch dialog does.
#pragma once

#include <QDialog>

#include "cluster/launch/LocalLauncher.h"
#include "cluster/workspace/Records.h"

class QLabel;
class QLineEdit;
class QPlainTextEdit;
class QTimer;

namespace fathom::cluster {
class JobQueue;
}

namespace fathom::ui {

class ResumeDialog : public QDialog {
  Q_OBJECT
 public:
  ResumeDialog(const cluster::CheckpointRecord& checkpoint, const cluster::RunRecord& run, cluster::JobQueue* queue,
               QWidget* parent = nullptr);

  QLineEdit* nameEdit() const { return m_name; }
  QPlainTextEdit* overridesEdit() const { return m_overrides; }
  QLabel* problemLabel() const { return m_problem; }
  QPlainTextEdit* preview() const { return m_preview; }
  // The spec a launch would enqueue now (run id and directory assigned at launch).
  cluster::LaunchSpec spec() const;
  // Validates and enqueues; false (reason shown) when it could not. launchedRunId() after.
  bool launch();
  QString launchedRunId() const { return m_runId; }
  // The config the new run starts from: the source run's resolved config.yaml when present.
  QString sourceConfig() const { return m_config; }

 private:
  void update();
  QStringList overrideList() const;

  cluster::CheckpointRecord m_checkpoint;
  cluster::RunRecord m_run;
  cluster::JobQueue* m_queue;
  QString m_config;
  QString m_runId;
  QLineEdit* m_name;
  QPlainTextEdit* m_overrides;
  QLabel* m_problem;
  QPlainTextEdit* m_preview;
  QTimer* m_debounce;
};

}  // namespace fathom::ui
