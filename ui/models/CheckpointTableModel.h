// The Checkpoints table: every checkpoint in the registry (run, step, tokens, created, validation
// loss, size, integrity, lineage, path), reloaded when Workspace::checkpointsChanged or
// runsChanged says so; and CheckpointFilterModel, the page's sort + filter (run text, one run,
// verified only) over it.
#pragma once

#include <QAbstractTableModel>
#include <QHash>
#include <QList>
#include <QSortFilterProxyModel>

#include "cluster/workspace/Records.h"

namespace fathom::cluster {
class Workspace;
}

namespace fathom::ui {

class CheckpointTableModel : public QAbstractTableModel {
  Q_OBJECT
 public:
  enum Column { Run, Step, Tokens, Created, ValLoss, Size, Integrity, Lineage, Path, ColumnCount, Verified = Integrity };
  enum Role { RunIdRole = Qt::UserRole + 1, PathRole, SortRole, IntegrityRole };

  explicit CheckpointTableModel(cluster::Workspace* workspace, QObject* parent = nullptr);

  int rowCount(const QModelIndex& parent = QModelIndex()) const override;
  int columnCount(const QModelIndex& parent = QModelIndex()) const override;
  QVariant data(const QModelIndex& index, int role = Qt::DisplayRole) const override;
  QVariant headerData(int section, Qt::Orientation orientation, int role = Qt::DisplayRole) const override;

  void reload();
  const cluster::CheckpointRecord& record(int row) const { return m_rows[row]; }
  const QList<cluster::CheckpointRecord>& records() const { return m_rows; }
  int rowOf(const QString& path) const;
  // Rows of one run (tests).
  int countForRun(const QString& runId) const;
  // What the registry knows of a run (empty record when unknown).
  cluster::RunRecord run(const QString& runId) const { return m_runs.value(runId); }
  QStringList runIds() const;  // runs that have checkpoints, by name
  QString runLabel(const QString& runId) const;  // "name (id)" or the id

  // Texts of the Integrity and Lineage cells, and "run-id step N" for a checkpoint path (the
  // table's short form of lineage references).
  static QString integrityText(const cluster::CheckpointRecord& c);
  static QString integrityTip(const cluster::CheckpointRecord& c);
  static QString lineageText(const cluster::CheckpointRecord& c);
  // "LoRA adapter (r 8) on base step 10" for an adapter checkpoint, "" otherwise.
  static QString adapterText(const cluster::CheckpointRecord& c);
  static QString lineageTip(const cluster::CheckpointRecord& c);
  static QString shortCheckpointName(const QString& path, const QString& ownRunId = QString());

 private:
  cluster::Workspace* m_ws;
  QList<cluster::CheckpointRecord> m_rows;
  QHash<QString, cluster::RunRecord> m_runs;
};

class CheckpointFilterModel : public QSortFilterProxyModel {
  Q_OBJECT
 public:
  explicit CheckpointFilterModel(QObject* parent = nullptr);
  void setSourceTable(CheckpointTableModel* model);
  // Case-insensitive substring of the run's name or id.
  void setText(const QString& text);
  // "" = every run.
  void setRunId(const QString& runId);
  // Only checkpoints whose sha256 verification passed.
  void setVerifiedOnly(bool on);
  QString runId() const { return m_runId; }

 protected:
  bool filterAcceptsRow(int sourceRow, const QModelIndex& sourceParent) const override;

 private:
  CheckpointTableModel* m_table = nullptr;
  QString m_text, m_runId;
  bool m_verifiedOnly = false;
};

}  // namespace fathom::ui
