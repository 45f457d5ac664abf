// The runs table (and run_ranks): one row per run, written by the job queue and by rescan.
// Every change emits Workspace::runsChanged with the ids touched.
#pragma once

#include <QList>
#include <QString>

#include <optional>

#include "cluster/workspace/Records.h"

namespace fathom::cluster {

class Workspace;

class RunRepository {
 public:
  explicit RunRepository(Workspace& workspace) : m_ws(workspace) {}

  // Inserts or replaces the whole row. False (and lastError()) when the database refused it.
  bool upsert(const RunRecord& run);
  std::optional<RunRecord> get(const QString& id) const;
  // Newest first (created_at, then id).
  QList<RunRecord> list() const;
  QList<RunRecord> listByStatus(const QString& status) const;
  // Removes the run and, through ON DELETE CASCADE, its ranks, checkpoints, metrics and events.
  bool remove(const QString& id);

  // Processes of a run (replaces the previous set).
  bool setRanks(const QString& runId, const QList<RankRecord>& ranks);
  QList<RankRecord> ranks(const QString& runId) const;

  QString lastError() const { return m_error; }

 private:
  Workspace& m_ws;
  mutable QString m_error;
};

}  // namespace fathom::cluster
