// The Runs table: a QAbstractTableModel over the workspace registry (RunRepository), kept
// current by Workspace::runsChanged (rows inserted/updated/removed individually, so selections
// survive) and, for running runs, live values from their RunSession (step, loss, tokens/s) with
// a 1 s tick for durations.
#pragma once

#include <QAbstractTableModel>
#include <QList>
#include <QTimer>

#include "cluster/workspace/Records.h"

namespace fathom::cluster {
class Workspace;
class JobQueue;
}  // namespace fathom::cluster

namespace fathom::ui {

class RunTableModel : public QAbstractTableModel {
  Q_OBJECT
 public:
  enum Column { Name, Status, Step, Loss, TokensPerSecond, Started, Duration, Devices, ColumnCount };
  enum Role { RunIdRole = Qt::UserRole + 1, StatusRole, SortRole };

  // `queue` may be null (no live values).
  explicit RunTableModel(cluster::Workspace* workspace, cluster::JobQueue* queue = nullptr, QObject* parent = nullptr);

  int rowCount(const QModelIndex& parent = QModelIndex()) const override;
  int columnCount(const QModelIndex& parent = QModelIndex()) const override;
  QVariant data(const QModelIndex& index, int role = Qt::DisplayRole) const override;
  QVariant headerData(int section, Qt::Orientation orientation, int role = Qt::DisplayRole) const override;

  // Re-reads the whole registry (after a rescan).
  void reload();
  // Re-reads the given runs: updates, inserts or removes their rows.
  void refresh(const QStringList& ids);
  QString runId(int row) const;
  int rowOf(const QString& id) const;
  const cluster::RunRecord& record(int row) const { return m_runs[row]; }

 private:
  void tick();
  double liveTokensPerSecond(const QString& id) const;

  cluster::Workspace* m_ws;
  cluster::JobQueue* m_queue;
  QList<cluster::RunRecord> m_runs;  // newest first
  QTimer m_tick;
};

}  // namespace fathom::ui
