// The workspace: a directory holding runs/, projects/ and workspace.db, the SQLite registry
// (ARCHITECTURE.md §5). The run directories are the truth; the database is an index of them that
// rescan() rebuilds. One Workspace per thread (the connection is not shared across threads).
#pragma once

#include <QObject>
#include <QString>
#include <QStringList>

#include <memory>

#include "cluster/workspace/CheckpointRepository.h"
#include "cluster/workspace/MetricRepository.h"
#include "cluster/workspace/Records.h"
#include "cluster/workspace/RunRepository.h"

namespace fathom::cluster {

namespace sql {
class Database;
}

class Workspace : public QObject {
  Q_OBJECT

 public:
  explicit Workspace(QObject* parent = nullptr);
  ~Workspace() override;

  // $FATHOM_WORKSPACE, else $XDG_DATA_HOME/fathom (~/.local/share/fathom): the engine's default
  // workspace too, so runs started from a terminal land in the same runs/.
  static QString defaultDir();
  // The database file name inside a workspace directory.
  static QString databaseFileName() { return QStringLiteral("workspace.db"); }

  // Creates the directory layout if needed, opens <dir>/workspace.db in WAL mode and runs the
  // pending migrations. On failure `error` says what and where, and the workspace stays closed.
  bool open(const QString& dir, QString* error);
  void close();
  bool isOpen() const;

  QString dir() const { return m_dir; }
  QString runsDir() const;      // <dir>/runs
  QString projectsDir() const;  // <dir>/projects
  QString databasePath() const; // <dir>/workspace.db
  int schemaVersion() const;

  RunRepository& runs() { return m_runs; }
  CheckpointRepository& checkpoints() { return m_checkpoints; }
  MetricRepository& metrics() { return m_metrics; }
  EventRepository& events() { return m_events; }

  // Rebuilds the index from the run directories under runsDir(): every directory holding a
  // config.yaml or events.jsonl becomes (or refreshes) a run; its metrics, events and checkpoints
  // are re-ingested from the files. A run whose events.jsonl has no exit record counts as running
  // only while its process (hello's pid) is alive, else failed. Index rows whose run directory is
  // gone are removed (queued runs excepted). Returns the number of runs indexed; `report` gets one
  // line per run and per problem.
  int rescan(QString* report = nullptr);

  // Writes projectsDir()/demo.yaml (`extends: demo`) unless it exists, so that a new user can
  // launch at once. Returns its path ("" when it could not be written; see lastError()).
  QString ensureDefaultProject();
  QString defaultProjectPath() const;

  // PRAGMA integrity_check: true when SQLite reports "ok"; `report` gets its text otherwise.
  bool integrityCheck(QString* report = nullptr);

  sql::Database& database() { return *m_db; }
  QString lastError() const { return m_error; }
  void setLastError(const QString& error) { m_error = error; }

 Q_SIGNALS:
  void runsChanged(const QStringList& ids);
  void checkpointsChanged(const QString& runId);
  // After open() and after rescan(): every view should reload.
  void reloaded();

 private:
  bool rescanRun(const QString& runDir, QStringList* lines);

  QString m_dir;
  std::unique_ptr<sql::Database> m_db;
  RunRepository m_runs;
  CheckpointRepository m_checkpoints;
  MetricRepository m_metrics;
  EventRepository m_events;
  QString m_error;
};

}  // namespace fathom::cluster
