// The checkpoints table: whole checkpoints of each run (step-N directories with a MANIFEST.json),
// filled from checkpoint_saved events and by rescan, plus what the checkpoint browser adds: results
// of full verifications, recorded exports, and the file operations behind Delete and Keep rules
// (which follow the engine's own rules: rename before removing, `latest` replaced atomically).
// Every change emits Workspace::checkpointsChanged(runId).
#pragma once

#include <QDateTime>
#include <QList>
#include <QString>
#include <QStringList>

#include <optional>

#include "cluster/workspace/Records.h"

namespace fathom::cluster {

class Workspace;

class CheckpointRepository {
 public:
  explicit CheckpointRepository(Workspace& workspace) : m_ws(workspace) {}

  // Writes the columns that come from the files (rescan rebuilds them); the verification result
  // and the exports of the same (run, path) are kept.
  bool upsert(const CheckpointRecord& checkpoint);
  // Ordered by step.
  QList<CheckpointRecord> listForRun(const QString& runId) const;
  // Every run's, newest first.
  QList<CheckpointRecord> listAll() const;
  std::optional<CheckpointRecord> get(const QString& runId, const QString& path) const;
  // Removes the row, its verification result and its exports.
  bool remove(const QString& runId, const QString& path);
  // Removes the rows of a run (rescan, before re-reading the files); verification results and
  // exports stay, keyed by path, for the rows that come back.
  bool removeForRun(const QString& runId);

  // Records the result of a full verification (checkpoint_integrity::verified or ::damaged).
  bool setIntegrity(const QString& runId, const QString& path, const QString& status, const QString& detail,
                    const QDateTime& checkedAt = QDateTime::currentDateTime());
  // Records that `path` was exported to `outDir` (format "hf").
  bool addExport(const QString& runId, const QString& path, const QString& outDir, const QString& format = QStringLiteral("hf"),
                 const QDateTime& at = QDateTime::currentDateTime());

  // Reads a checkpoint directory as the engine writes it (ARCHITECTURE.md §4): step from
  // state.json (else the "step-N" name), bytes = sum of its files, valLoss = state.json's
  // best_val_loss (MANIFEST.json's val_loss wins), tokens and parent_checkpoint from state.json,
  // initFrom = model.init_from of the run's config.yaml (two levels up), verified = MANIFEST.json
  // lists files that all exist with the listed sizes. std::nullopt when `dir` is not a checkpoint
  // (no MANIFEST.json and no state.json).
  // Also fills the adapter fields (lora, loraR, loraBase, ..., mergedFrom) from adapter_config.json
  // and state.json, as every read of a row does.
  static std::optional<CheckpointRecord> inspect(const QString& runId, const QString& dir);

  // Indexes a run directory that no engine run wrote events for (`lora merge` writes config.yaml
  // and checkpoints/step-0 only): the run row as given (a later rescan keeps its final status and
  // name), and every checkpoint under <run.runDir>/checkpoints.
  bool registerRun(const RunRecord& run);

  // ---- Delete and keep rules -------------------------------------------------------------------

  // Why these checkpoints may not all be deleted now, "" when they may: deleting them would leave
  // a running (or queued) run without a whole checkpoint to resume from, or a queued run is to
  // resume from one of them (RunRecord::resume). Checks each run involved.
  QString deletionRefusal(const QList<CheckpointRecord>& doomed) const;

  // Deletes one checkpoint: refuses as deletionRefusal() says; renames the directory to
  // "<dir>.deleting.tmp" (instant, and a leftover is cleaned by the engine at its next start, as
  // its own retention does); if the save directory's `latest` named it, rewrites `latest` to the
  // newest whole checkpoint left (or removes it when none is); removes the registry row.
  // `trash` gets the renamed directory, which the caller removes off the GUI thread
  // (removeTree()). False with lastError() on refusal or failure; nothing changed then.
  bool deleteCheckpoint(const CheckpointRecord& checkpoint, QString* trash);
  // Removes a directory tree; safe to call from any thread (no registry access).
  static bool removeTree(const QString& dir, QString* error = nullptr);
  // "step-<N>" read from <saveDir>/latest ("" when absent or unreadable).
  static QString latestName(const QString& saveDir);
  // Points <saveDir>/latest at the whole checkpoint with the highest step (written to a temporary
  // file, fsynced and renamed over), or removes it when there is none. `latestNow` gets the name.
  static bool rewriteLatest(const QString& saveDir, QString* latestNow = nullptr, QString* error = nullptr);

  struct KeepPlan {
    QList<CheckpointRecord> keep, remove;
    QStringList why;  // one line per kept checkpoint: "step 40: one of the 2 latest"
    QString refusal;  // deletionRefusal(remove); non-empty means the plan cannot be applied
    qint64 freedBytes = 0;
  };
  // What "keep the `keepLatest` newest (by step) and the `keepBest` best by validation loss" means
  // for a run: the union is kept, the rest removed. A rule <= 0 is off; with both off, nothing is
  // removed. Damaged checkpoints are never "kept" by a rule (they cannot be resumed from).
  KeepPlan planKeepRules(const QString& runId, int keepLatest, int keepBest) const;

  QString lastError() const { return m_error; }

 private:
  Workspace& m_ws;
  mutable QString m_error;
};

}  // namespace fathom::cluster
