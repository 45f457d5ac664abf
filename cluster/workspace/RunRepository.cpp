// runs / run_ranks rows <-> RunRecord / RankRecord. Lists are stored as JSON arrays.
#include "cluster/workspace/RunRepository.h"

#include <QJsonArray>
#include <QJsonDocument>

#include "cluster/workspace/Sqlite.h"
#include "cluster/workspace/Workspace.h"

namespace fathom::cluster {

namespace {

QString listToJson(const QStringList& list) {
  return QString::fromUtf8(QJsonDocument(QJsonArray::fromStringList(list)).toJson(QJsonDocument::Compact));
}

QStringList listFromJson(const QString& text) {
  QStringList out;
  if (text.isEmpty()) return out;
  for (const auto& v : QJsonDocument::fromJson(text.toUtf8()).array()) out.append(v.toString());
  return out;
}

constexpr const char* kColumns =
    "id, name, config_path, run_dir, status, host, error, pid, pgid, nprocs, devices, overrides, created_at, "
    "started_at, ended_at, last_step, last_loss, exit_code, parent_run_id, resume";

RunRecord readRun(const sql::Statement& st) {
  RunRecord r;
  r.id = st.text(0);
  r.name = st.text(1);
  r.configPath = st.text(2);
  r.runDir = st.text(3);
  r.status = st.text(4);
  r.host = st.text(5);
  r.error = st.text(6);
  r.pid = st.integer(7);
  r.pgid = st.integer(8);
  r.nprocs = static_cast<int>(st.integer(9));
  r.devices = listFromJson(st.text(10));
  r.overrides = listFromJson(st.text(11));
  r.createdAt = st.time(12);
  r.startedAt = st.time(13);
  r.endedAt = st.time(14);
  r.lastStep = st.integer(15);
  r.lastLoss = st.real(16);
  r.exitCode = static_cast<int>(st.integer(17));
  r.parentRunId = st.text(18);
  r.resume = st.text(19);
  return r;
}

}  // namespace

bool RunRepository::upsert(const RunRecord& r) {
  if (r.id.isEmpty()) {
    m_error = QStringLiteral("cannot store a run without an id");
    return false;
  }
  // INSERT OR REPLACE would delete and re-insert the row, cascading away its checkpoints and
  // metrics; an UPSERT keeps the row (and its children) in place.
  sql::Statement up(m_ws.database(),
                    "INSERT INTO runs (id, name, config_path, run_dir, status, host, error, pid, pgid, nprocs, "
                    "devices, overrides, created_at, started_at, ended_at, last_step, last_loss, exit_code, "
                    "parent_run_id, resume) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?) "
                    "ON CONFLICT(id) DO UPDATE SET name=excluded.name, config_path=excluded.config_path, "
                    "run_dir=excluded.run_dir, status=excluded.status, host=excluded.host, error=excluded.error, "
                    "pid=excluded.pid, pgid=excluded.pgid, nprocs=excluded.nprocs, devices=excluded.devices, "
                    "overrides=excluded.overrides, created_at=excluded.created_at, started_at=excluded.started_at, "
                    "ended_at=excluded.ended_at, last_step=excluded.last_step, last_loss=excluded.last_loss, "
                    "exit_code=excluded.exit_code, parent_run_id=excluded.parent_run_id, resume=excluded.resume");
  up.bind(1, r.id)
      .bind(2, r.name.isNull() ? QString("") : r.name)
      .bind(3, r.configPath.isNull() ? QString("") : r.configPath)
      .bind(4, r.runDir.isNull() ? QString("") : r.runDir)
      .bind(5, r.status.isEmpty() ? run_status::queued : r.status)
      .bind(6, r.host.isEmpty() ? QStringLiteral("local") : r.host)
      .bind(7, r.error)
      .bind(8, r.pid)
      .bind(9, r.pgid)
      .bind(10, r.nprocs)
      .bind(11, listToJson(r.devices))
      .bind(12, listToJson(r.overrides))
      .bindTime(13, r.createdAt)
      .bindTime(14, r.startedAt)
      .bindTime(15, r.endedAt)
      .bind(16, r.lastStep)
      .bind(17, r.lastLoss)
      .bind(18, r.exitCode)
      .bind(19, r.parentRunId)
      .bind(20, r.resume);
  if (!up.run()) {
    m_error = up.error();
    return false;
  }
  Q_EMIT m_ws.runsChanged({r.id});
  return true;
}

std::optional<RunRecord> RunRepository::get(const QString& id) const {
  const QByteArray q = QByteArray("SELECT ") + kColumns + " FROM runs WHERE id = ?";
  sql::Statement st(m_ws.database(), q.constData());
  st.bind(1, id);
  if (st.step()) return readRun(st);
  if (!st.ok()) m_error = st.error();
  return std::nullopt;
}

QList<RunRecord> RunRepository::list() const {
  const QByteArray q = QByteArray("SELECT ") + kColumns + " FROM runs ORDER BY created_at DESC, id DESC";
  sql::Statement st(m_ws.database(), q.constData());
  QList<RunRecord> out;
  while (st.step()) out.append(readRun(st));
  if (!st.ok()) m_error = st.error();
  return out;
}

QList<RunRecord> RunRepository::listByStatus(const QString& status) const {
  const QByteArray q = QByteArray("SELECT ") + kColumns + " FROM runs WHERE status = ? ORDER BY created_at, id";
  sql::Statement st(m_ws.database(), q.constData());
  st.bind(1, status);
  QList<RunRecord> out;
  while (st.step()) out.append(readRun(st));
  if (!st.ok()) m_error = st.error();
  return out;
}

bool RunRepository::remove(const QString& id) {
  sql::Statement st(m_ws.database(), "DELETE FROM runs WHERE id = ?");
  st.bind(1, id);
  if (!st.run()) {
    m_error = st.error();
    return false;
  }
  Q_EMIT m_ws.runsChanged({id});
  Q_EMIT m_ws.checkpointsChanged(id);
  return true;
}

bool RunRepository::setRanks(const QString& runId, const QList<RankRecord>& ranks) {
  sql::Transaction tx(m_ws.database());
  sql::Statement del(m_ws.database(), "DELETE FROM run_ranks WHERE run_id = ?");
  del.bind(1, runId);
  if (!tx.ok() || !del.run()) {
    m_error = del.ok() ? m_ws.database().lastError() : del.error();
    return false;
  }
  sql::Statement ins(m_ws.database(), "INSERT INTO run_ranks (run_id, rank, pid, pgid, host) VALUES (?,?,?,?,?)");
  for (const RankRecord& r : ranks) {
    ins.reset();
    ins.bind(1, runId).bind(2, r.rank).bind(3, r.pid).bind(4, r.pgid).bind(5, r.host);
    if (!ins.run()) {
      m_error = ins.error();
      return false;
    }
  }
  return tx.commit(&m_error);
}

QList<RankRecord> RunRepository::ranks(const QString& runId) const {
  sql::Statement st(m_ws.database(), "SELECT rank, pid, pgid, host FROM run_ranks WHERE run_id = ? ORDER BY rank");
  st.bind(1, runId);
  QList<RankRecord> out;
  while (st.step()) out.append(RankRecord{static_cast<int>(st.integer(0)), st.integer(1), st.integer(2), st.text(3)});
  if (!st.ok()) m_error = st.error();
  return out;
}

}  // namespace fathom::cluster
