// The checkpoints table: whole checkpoints of each run (step-N directories with a MANIFEST.json),
// filled from checkpoint_saved events and by rescan. Emits Workspace::checkpointsChanged(runId).
#pragma once

#include <QList>
#include <QString>

#include <optional>

#include "cluster/workspace/Records.h"

namespace fathom::cluster {

class Workspace;

class CheckpointRepository {
 public:
  explicit CheckpointRepository(Workspace& workspace) : m_ws(workspace) {}

  bool upsert(const CheckpointRecord& checkpoint);
  // Ordered by step.
  QList<CheckpointRecord> listForRun(const QString& runId) const;
  // Every run's, newest first.
  QList<CheckpointRecord> listAll() const;
  bool remove(const QString& runId, const QString& path);
  bool removeForRun(const QString& runId);

  // Reads a checkpoint directory as the engine writes it (ARCHITECTURE.md §4): step from
  // state.json (else the "step-N" name), bytes = sum of its files, valLoss = state.json's
  // best_val_loss, verified = MANIFEST.json lists files that all exist with the listed sizes.
  // std::nullopt when `dir` is not a checkpoint (no MANIFEST.json and no state.json).
  static std::optional<CheckpointRecord> inspect(const QString& runId, const QString& dir);

  QString lastError() const { return m_error; }

 private:
  Workspace& m_ws;
  mutable QString m_error;
};

}  // namespace fathom::cluster
