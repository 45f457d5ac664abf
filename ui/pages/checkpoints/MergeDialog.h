// Merge into base: folds a LoRA adapter checkpoint into the base it was trained on with
// `fathom-engine lora merge` in a background process (progress lines, busy bar, Cancel). The
// output is either a Fathom run in the workspace (default <workspace>/runs/<run>-merged-step<N>;
// registered at once, so the browser lists it with lineage "merged from <adapter>") or a Hugging
// Face folder (recorded as an export of the adapter). A cancelled or failed merge leaves nothing
// behind that it created.
#pragma once

#include <QDialog>

#include "cluster/workspace/Records.h"

class QComboBox;
class QLabel;
class QLineEdit;
class QPlainTextEdit;
class QProgressBar;
class QPushButton;
class QRadioButton;

namespace fathom::cluster {
class EngineTool;
class Workspace;
}  // namespace fathom::cluster

namespace fathom::ui {

class MergeDialog : public QDialog {
  Q_OBJECT
 public:
  MergeDialog(const cluster::CheckpointRecord& adapter, cluster::Workspace* workspace, const QString& engineBinary,
              QWidget* parent = nullptr);

  QRadioButton* fathomButton() const { return m_toFathom; }
  QRadioButton* huggingFaceButton() const { return m_toHf; }
  QLineEdit* nameEdit() const { return m_name; }
  QLineEdit* hfOutputEdit() const { return m_hfOut; }
  QComboBox* dtypeBox() const { return m_dtype; }
  QPlainTextEdit* log() const { return m_log; }
  QLabel* resultLabel() const { return m_result; }
  QPushButton* mergeButton() const { return m_start; }
  cluster::EngineTool* tool() const { return m_tool; }
  bool isRunning() const;

  // The directory the merge writes: <workspace>/runs/<name> or the Hugging Face folder.
  QString outputDir() const;
  // After a merge into a Fathom run: its id (the directory name); "" otherwise.
  QString mergedRunId() const { return m_runId; }
  // The run name the dialog proposes for `adapter`: "<run>-merged-step<N>", made unique in the
  // workspace's runs directory.
  static QString defaultRunName(const cluster::CheckpointRecord& adapter, const QString& runsDir);

  // Starts the merge; false (reason shown in resultLabel()) when it cannot.
  bool start();
  void cancel();
  // While the merge runs: cancels it and closes once it has ended.
  void reject() override;

 signals:
  // ok: the merge exited 0 and its result is registered. `output`: the merged run's id (Fathom)
  // or the Hugging Face folder.
  void mergeFinished(bool ok, const QString& output);

 private:
  void onFinished(bool ok);
  void setBusy(bool busy);
  void updateForm();
  bool fail(const QString& why);
  bool registerMergedRun(const QString& runDir, QString* error);

  cluster::CheckpointRecord m_adapter;
  cluster::Workspace* m_ws;
  cluster::EngineTool* m_tool;
  QRadioButton* m_toFathom;
  QRadioButton* m_toHf;
  QLineEdit* m_name;
  QLabel* m_runPath;
  QLineEdit* m_hfOut;
  QPushButton* m_browse;
  QComboBox* m_dtype;
  QPushButton* m_start;
  QPushButton* m_cancel;
  QProgressBar* m_busy;
  QPlainTextEdit* m_log;
  QLabel* m_result;
  QString m_out;         // what the running merge writes
  bool m_outToHf = false;
  QString m_runId;
  bool m_closeWhenDone = false;
};

}  // namespace fathom::ui
