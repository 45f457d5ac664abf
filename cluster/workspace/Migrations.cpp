// The schema of workspace.db, as numbered migrations. Times are ms since the epoch (INTEGER), lists
// are JSON arrays (TEXT), NaN is NULL.
#include "cluster/workspace/Migrations.h"

#include "cluster/workspace/Sqlite.h"

namespace fathom::cluster {

namespace {

// 1: the tables of ARCHITECTURE.md §5.
constexpr const char* kMigration1 = R"sql(
CREATE TABLE hosts (
  id            TEXT PRIMARY KEY,
  name          TEXT NOT NULL,
  address       TEXT NOT NULL,
  port          INTEGER NOT NULL DEFAULT 22,
  user          TEXT,
  identity_file TEXT,
  engine_path   TEXT,
  created_at    INTEGER,
  options       TEXT
);
CREATE TABLE runs (
  id            TEXT PRIMARY KEY,
  name          TEXT,
  config_path   TEXT,
  run_dir       TEXT NOT NULL,
  status        TEXT NOT NULL,
  host          TEXT NOT NULL DEFAULT 'local',
  error         TEXT,
  pid           INTEGER NOT NULL DEFAULT 0,
  pgid          INTEGER NOT NULL DEFAULT 0,
  nprocs        INTEGER NOT NULL DEFAULT 1,
  devices       TEXT,
  overrides     TEXT,
  created_at    INTEGER,
  started_at    INTEGER,
  ended_at      INTEGER,
  last_step     INTEGER NOT NULL DEFAULT 0,
  last_loss     REAL,
  exit_code     INTEGER NOT NULL DEFAULT 0,
  parent_run_id TEXT
);
CREATE INDEX runs_by_status ON runs(status);
CREATE TABLE run_ranks (
  run_id TEXT NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
  rank   INTEGER NOT NULL,
  pid    INTEGER NOT NULL DEFAULT 0,
  pgid   INTEGER NOT NULL DEFAULT 0,
  host   TEXT NOT NULL DEFAULT 'local',
  PRIMARY KEY (run_id, rank)
);
CREATE TABLE checkpoints (
  run_id     TEXT NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
  path       TEXT NOT NULL,
  step       INTEGER NOT NULL DEFAULT 0,
  bytes      INTEGER NOT NULL DEFAULT 0,
  val_loss   REAL,
  verified   INTEGER NOT NULL DEFAULT 0,
  created_at INTEGER,
  PRIMARY KEY (run_id, path)
);
-- idx: arrival index of the point within its series; the downsampler keeps idx % stride == 0.
CREATE TABLE metrics (
  run_id TEXT NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
  key    TEXT NOT NULL,
  rank   INTEGER NOT NULL,
  idx    INTEGER NOT NULL,
  step   INTEGER NOT NULL,
  tokens INTEGER NOT NULL DEFAULT 0,
  t_sec  REAL NOT NULL DEFAULT 0,
  value  REAL,
  PRIMARY KEY (run_id, key, rank, idx)
) WITHOUT ROWID;
CREATE TABLE events (
  run_id TEXT NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
  rank   INTEGER NOT NULL,
  seq    INTEGER NOT NULL,
  step   INTEGER NOT NULL DEFAULT -1,
  name   TEXT NOT NULL,
  t_sec  REAL NOT NULL DEFAULT 0,
  json   TEXT NOT NULL,
  PRIMARY KEY (run_id, rank, seq)
);
CREATE INDEX events_by_name ON events(run_id, name);
)sql";

// 2: what the job queue needs to survive restarts: a queued resume, the downsampler's state per
// series, and how far each (run, rank) of events.jsonl has been ingested (by protocol seq), so a
// re-attached session that catches up from the start does not insert points twice.
constexpr const char* kMigration2 = R"sql(
ALTER TABLE runs ADD COLUMN resume TEXT;
CREATE TABLE metric_series (
  run_id   TEXT NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
  key      TEXT NOT NULL,
  rank     INTEGER NOT NULL,
  received INTEGER NOT NULL DEFAULT 0,
  stride   INTEGER NOT NULL DEFAULT 1,
  PRIMARY KEY (run_id, key, rank)
);
CREATE TABLE ingest_state (
  run_id   TEXT NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
  rank     INTEGER NOT NULL,
  last_seq INTEGER NOT NULL DEFAULT 0,
  PRIMARY KEY (run_id, rank)
);
)sql";

// 3: the checkpoint browser (issue 5). Lineage read from state.json and the run config; results of
// full (sha256) verifications and the record of exports live in tables of their own, keyed by the
// checkpoint's path, because rescan rebuilds the checkpoints rows from the files and would lose them.
constexpr const char* kMigration3 = R"sql(
ALTER TABLE checkpoints ADD COLUMN tokens INTEGER NOT NULL DEFAULT 0;
ALTER TABLE checkpoints ADD COLUMN parent_checkpoint TEXT;
ALTER TABLE checkpoints ADD COLUMN init_from TEXT;
CREATE TABLE checkpoint_checks (
  run_id     TEXT NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
  path       TEXT NOT NULL,
  status     TEXT NOT NULL,
  detail     TEXT,
  checked_at INTEGER,
  PRIMARY KEY (run_id, path)
);
CREATE TABLE checkpoint_exports (
  run_id     TEXT NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
  path       TEXT NOT NULL,
  out_dir    TEXT NOT NULL,
  format     TEXT NOT NULL,
  created_at INTEGER,
  PRIMARY KEY (run_id, path, out_dir)
);
)sql";

// 4: SSH hosts (issue 9): how to log in and where to work on each host, what the last probe found
// (JSON), and host groups ("clusters"). Secrets are never stored here.
constexpr const char* kMigration4 = R"sql(
ALTER TABLE hosts ADD COLUMN auth TEXT NOT NULL DEFAULT 'auto';
ALTER TABLE hosts ADD COLUMN jump_host TEXT;
ALTER TABLE hosts ADD COLUMN work_dir TEXT;
ALTER TABLE hosts ADD COLUMN rendezvous_address TEXT;
ALTER TABLE hosts ADD COLUMN probe TEXT;
ALTER TABLE hosts ADD COLUMN probed_at INTEGER;
CREATE TABLE host_groups (
  name       TEXT PRIMARY KEY,
  created_at INTEGER
);
CREATE TABLE host_group_members (
  group_name TEXT NOT NULL REFERENCES host_groups(name) ON DELETE CASCADE,
  host_id    TEXT NOT NULL REFERENCES hosts(id) ON DELETE CASCADE,
  PRIMARY KEY (group_name, host_id)
);
)sql";

}  // namespace

const QList<Migration>& workspaceMigrations() {
  static const QList<Migration> all = {
      {1, "hosts, runs, run_ranks, checkpoints, metrics, events", kMigration1},
      {2, "runs.resume, metric_series, ingest_state", kMigration2},
      {3, "checkpoint lineage, checkpoint_checks, checkpoint_exports", kMigration3},
      {4, "ssh hosts: auth, jump host, work dir, probe; host groups", kMigration4},
  };
  return all;
}

int latestSchemaVersion() { return workspaceMigrations().back().version; }

int schemaVersionOf(sql::Database& db, QString* error) {
  QString err;
  if (!db.exec(QStringLiteral("CREATE TABLE IF NOT EXISTS schema_version ("
                              "version INTEGER PRIMARY KEY, description TEXT, applied_at INTEGER)"),
               &err)) {
    if (error) *error = err;
    return -1;
  }
  const qint64 v = db.queryInt(QStringLiteral("SELECT MAX(version) FROM schema_version"), 0, &err);
  if (!err.isEmpty()) {
    if (error) *error = err;
    return -1;
  }
  return static_cast<int>(v);
}

bool migrateDatabase(sql::Database& db, int target, QString* error, QStringList* applied) {
  const int latest = latestSchemaVersion();
  if (target < 0) target = latest;
  const int current = schemaVersionOf(db, error);
  if (current < 0) return false;
  if (current > latest) {
    if (error) {
      *error = QStringLiteral("%1 has schema version %2 but this build of Fathom knows only up to %3; it was written "
                              "by a newer Fathom. Upgrade Fathom, or open another workspace (FATHOM_WORKSPACE).")
                   .arg(db.path())
                   .arg(current)
                   .arg(latest);
    }
    return false;
  }
  for (const Migration& m : workspaceMigrations()) {
    if (m.version <= current || m.version > target) continue;
    sql::Transaction tx(db);
    QString err;
    if (!tx.ok() || !db.exec(QString::fromUtf8(m.sql), &err)) {
      if (error) {
        *error = QStringLiteral("%1: migration %2 (%3) failed: %4. The database was left at version %5; "
                                "move it aside and use Rescan to rebuild the index from the run directories.")
                     .arg(db.path())
                     .arg(m.version)
                     .arg(QString::fromUtf8(m.description), err.isEmpty() ? db.lastError() : err)
                     .arg(m.version - 1);
      }
      return false;
    }
    sql::Statement st(db, "INSERT INTO schema_version(version, description, applied_at) VALUES (?, ?, ?)");
    st.bind(1, m.version).bind(2, QString::fromUtf8(m.description)).bind(3, QDateTime::currentMSecsSinceEpoch());
    if (!st.run() || !tx.commit(&err)) {
      if (error) *error = st.ok() ? err : st.error();
      return false;
    }
    if (applied) applied->append(QStringLiteral("%1: %2").arg(m.version).arg(QString::fromUtf8(m.description)));
  }
  return true;
}

}  // namespace fathom::cluster
