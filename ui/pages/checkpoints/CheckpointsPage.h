// The checkpoint browser (issue 5): every checkpoint of every run with its step, tokens, time,
// validation loss, size, integrity and lineage; sort, filter (run text, one run, verified only);
// per-run and total disk use and the free space of the workspace volume, with a banner when the
// next checkpoint may not fit. Actions (toolbar and context menu): Verify (sha256 of every file
// by `fathom-engine inspect --json`, queued, in the background), Inspect (tensors from the
// safetensors header), Resume from here (a new run with overrides, through the JobQueue),
// Fine-tune from here (the Fine-tune page; on a LoRA adapter, its base with lora.adapter set),
// Merge into base (a LoRA adapter folded into its base by `fathom-engine lora merge`, as a new run
// here or a Hugging Face folder), Export to Hugging Face format (`fathom-engine convert`; an
// adapter is exported merged, by `lora merge --to hf`), Delete (confirmed; never the last whole checkpoint of a
// running run) and Keep rules. Every engine call runs in a QProcess; file deletion finishes on
// a pool thread. Dialogs are opened non-modally and stay reachable for tests.
#pragma once

#include <QHash>
#include <QList>
#include <QMessageBox>
#include <QPointer>
#include <QWidget>

#include <optional>

#include "cluster/workspace/Records.h"
#include "ui/pages/checkpoints/ExportDialog.h"
#include "ui/pages/checkpoints/InspectDialog.h"
#include "ui/pages/checkpoints/KeepRulesDialog.h"
#include "ui/pages/checkpoints/MergeDialog.h"
#include "ui/pages/checkpoints/ResumeDialog.h"

class QAction;
class QCheckBox;
class QComboBox;
class QLabel;
class QLineEdit;
class QProgressBar;
class QPushButton;
class QSettings;
class QSplitter;
class QTableView;
class QTextBrowser;
class QTimer;

namespace fathom::cluster {
class EngineTool;
class JobQueue;
class Workspace;
}  // namespace fathom::cluster

namespace fathom::ui {

class CheckpointFilterModel;
class CheckpointTableModel;

class CheckpointsPage : public QWidget {
  Q_OBJECT
 public:
  // `queue` may be null (no Resume then); the engine binary for tools is the queue's, else the
  // launcher's lookup (setEngineBinary overrides both).
  explicit CheckpointsPage(cluster::Workspace* workspace, cluster::JobQueue* queue = nullptr, QWidget* parent = nullptr);
  ~CheckpointsPage() override;

  CheckpointTableModel* model() const { return m_model; }
  CheckpointFilterModel* proxy() const { return m_proxy; }
  QTableView* view() const { return m_view; }
  QLineEdit* filterEdit() const { return m_filter; }
  QComboBox* runPicker() const { return m_runPicker; }
  QCheckBox* verifiedOnlyBox() const { return m_verifiedOnly; }
  QLabel* summaryLabel() const { return m_summary; }
  QLabel* diskBanner() const { return m_banner; }
  QTextBrowser* details() const { return m_details; }
  // "verify", "inspect", "resume", "finetune", "merge", "playground", "export", "delete", "keep", "folder", "monitor".
  QAction* action(const QString& name) const;

  void setEngineBinary(const QString& path) { m_engineBinary = path; }
  QString engineBinary() const;

  // Selection (tests and other pages): selects the row of `path`; false when it is not listed.
  bool selectCheckpoint(const QString& path);
  QList<cluster::CheckpointRecord> selectedCheckpoints() const;

  // The actions, on the selection. Each returns the dialog it opened (nullptr when none).
  void verifySelected();
  void verify(const QList<cluster::CheckpointRecord>& checkpoints);
  bool isVerifying() const;
  InspectDialog* inspectSelected();
  ResumeDialog* resumeSelected();
  void fineTuneSelected();
  ExportDialog* exportSelected();
  // On one whole LoRA adapter checkpoint; nullptr otherwise.
  MergeDialog* mergeSelected();
  // A confirmation (or, when the safety rule refuses, a warning) message box, opened non-modally.
  QMessageBox* deleteSelected();
  // Deletes without asking (after confirmation); false with `error` when refused or failed.
  bool deleteCheckpoints(const QList<cluster::CheckpointRecord>& checkpoints, QString* error = nullptr);
  KeepRulesDialog* openKeepRules();
  QMessageBox* messageBox() const { return m_message; }

  // The config a fine-tune from `checkpoint` starts with: the run's own config (its project file
  // with the run's --set overrides written in, else its resolved config.yaml) with model.init_from
  // set to the checkpoint and a new run name. For a LoRA adapter checkpoint: the fine-tune's config
  // with lora.adapter set to it instead (training continues from that adapter on the same base).
  static QString fineTuneYaml(const cluster::CheckpointRecord& checkpoint, const cluster::RunRecord& run);
  // The disk guard's warning ("" = none): free space below twice `latestBytes` (the newest
  // checkpoint of `runLabel`, the size its next one will have) or below 5 % of the volume.
  static QString diskWarning(qint64 freeBytes, qint64 totalBytes, qint64 latestBytes, const QString& runLabel,
                             const QString& volume);
  // Replaces QStorageInfo's numbers (tests); a negative `freeBytes` goes back to the real ones.
  void setDiskSpaceForTesting(qint64 freeBytes, qint64 totalBytes);
  void refreshDiskSpace();

  void saveState(QSettings& settings) const;
  void restoreState(const QSettings& settings);

 signals:
  void openRun(const QString& runId);
  // Resume from here enqueued a run.
  void runLaunched(const QString& runId);
  // Fine-tune from here: a config text (model.init_from set, or lora.adapter for an adapter).
  void fineTuneRequested(const QString& yaml, const QString& title);
  // Open in Playground: the checkpoint (or adapter) directory to serve.
  void openInPlayground(const QString& dir);
  void statusMessage(const QString& text);
  // One verification ended: integrity is checkpoint_integrity::verified or ::damaged, or "" when
  // the engine could not check it (`error` says why).
  void verificationFinished(const QString& path, const QString& integrity, const QString& error);
  void deleted(const QStringList& paths);

 private:
  void buildActions();
  void updateActions();
  void updateSummary();
  void updateDetails();
  void fillRunPicker();
  void startNextVerification();
  void onVerificationFinished(bool ok);
  void removeTrashLater(const QStringList& dirs);
  QMessageBox* showMessage(int icon, const QString& title, const QString& text);
  std::optional<cluster::CheckpointRecord> current() const;

  cluster::Workspace* m_ws;
  cluster::JobQueue* m_queue;
  QString m_engineBinary;
  CheckpointTableModel* m_model;
  CheckpointFilterModel* m_proxy;
  QSplitter* m_split = nullptr;
  QTableView* m_view = nullptr;
  QTextBrowser* m_details = nullptr;
  QLineEdit* m_filter = nullptr;
  QComboBox* m_runPicker = nullptr;
  QCheckBox* m_verifiedOnly = nullptr;
  QLabel* m_summary = nullptr;
  QLabel* m_banner = nullptr;
  QWidget* m_busyRow = nullptr;
  QProgressBar* m_busyBar = nullptr;
  QLabel* m_busyLabel = nullptr;
  QPushButton* m_busyCancel = nullptr;
  QHash<QString, QAction*> m_actions;
  QStringList m_keepSelection;  // paths selected before a model reset

  cluster::EngineTool* m_verifyTool = nullptr;
  QList<cluster::CheckpointRecord> m_verifyQueue;
  cluster::CheckpointRecord m_verifying;
  int m_verifyTotal = 0;

  QPointer<InspectDialog> m_inspect;
  QPointer<ResumeDialog> m_resume;
  QPointer<ExportDialog> m_export;
  QPointer<MergeDialog> m_merge;
  QPointer<KeepRulesDialog> m_keep;
  QPointer<QMessageBox> m_message;

  QTimer* m_diskTimer = nullptr;
  qint64 m_freeOverride = -1, m_totalOverride = -1;
  qint64 m_free = -1, m_total = -1;
  QString m_volume;
};

}  // namespace fathom::ui
