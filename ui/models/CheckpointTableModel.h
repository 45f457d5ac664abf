// The Checkpoints table: every checkpoint in the registry (run, step, val loss, size, verified,
// created, path), reloaded when Workspace::checkpointsChanged or runsChanged says so.
#pragma once

#include <QAbstractTableModel>
#include <QHash>
#include <QList>

#include "cluster/workspace/Records.h"

namespace fathom::cluster {
class Workspace;
}

namespace fathom::ui {

class CheckpointTableModel : public QAbstractTableModel {
  Q_OBJECT
 public:
  enum Column { Run, Step, ValLoss, Size, Verified, Created, Path, ColumnCount };
  enum Role { RunIdRole = Qt::UserRole + 1, PathRole, SortRole };

  explicit CheckpointTableModel(cluster::Workspace* workspace, QObject* parent = nullptr);

  int rowCount(const QModelIndex& parent = QModelIndex()) const override;
  int columnCount(const QModelIndex& parent = QModelIndex()) const override;
  QVariant data(const QModelIndex& index, int role = Qt::DisplayRole) const override;
  QVariant headerData(int section, Qt::Orientation orientation, int role = Qt::DisplayRole) const override;

  void reload();
  const cluster::CheckpointRecord& record(int row) const { return m_rows[row]; }
  // Rows of one run (tests).
  int countForRun(const QString& runId) const;

 private:
  cluster::Workspace* m_ws;
  QList<cluster::CheckpointRecord> m_rows;
  QHash<QString, QString> m_runNames;
};

}  // namespace fathom::ui
