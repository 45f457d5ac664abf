// Export to Hugging Face format: `fathom-engine convert <checkpoint dir> --to hf --out <dir>` in a
// background process, its progress lines shown as they come, a busy bar and Cancel; on success the
// export is recorded in the registry (lineage "exported to"). A LoRA adapter checkpoint is
// exported merged into its base (`fathom-engine lora merge --to hf`), and the dialog says so. An
// engine that does not know the command yet, or fails, is shown with its own error text; nothing
// is recorded then.
#pragma once

#include <QDialog>

#include "cluster/workspace/Records.h"

class QLabel;
class QLineEdit;
class QPlainTextEdit;
class QProgressBar;
class QPushButton;

namespace fathom::cluster {
class EngineTool;
class Workspace;
}  // namespace fathom::cluster

namespace fathom::ui {

class ExportDialog : public QDialog {
  Q_OBJECT
 public:
  ExportDialog(const cluster::CheckpointRecord& checkpoint, cluster::Workspace* workspace, const QString& engineBinary,
               QWidget* parent = nullptr);

  QLineEdit* outputEdit() const { return m_out; }
  QPlainTextEdit* log() const { return m_log; }
  QLabel* resultLabel() const { return m_result; }
  bool isRunning() const;
  // Starts the conversion into outputEdit()'s directory; false (reason shown) when it cannot.
  bool start();
  void cancel();
  cluster::EngineTool* tool() const { return m_tool; }
  // While convert runs: cancels it and closes once it has ended.
  void reject() override;

 signals:
  // ok: convert exited 0 and the export was recorded. `unknownCommand`: the engine has no convert.
  void exportFinished(bool ok, bool unknownCommand);

 private:
  void onFinished(bool ok);
  void setBusy(bool busy);

  cluster::CheckpointRecord m_checkpoint;
  cluster::Workspace* m_ws;
  cluster::EngineTool* m_tool;
  QLineEdit* m_out;
  QPushButton* m_browse;
  QPushButton* m_start;
  QPushButton* m_cancel;
  QProgressBar* m_busy;
  QPlainTextEdit* m_log;
  QLabel* m_result;
  bool m_closeWhenDone = false;
};

}  // namespace fathom::ui
