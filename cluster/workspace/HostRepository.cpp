// hosts / host_groups / host_group_members rows <-> HostConfig.
#include "cluster/workspace/HostRepository.h"

#include <QJsonDocument>
#include <QRegularExpression>

#include "cluster/workspace/Sqlite.h"
#include "cluster/workspace/Workspace.h"

namespace fathom::cluster {

namespace {

constexpr const char* kColumns =
    "id, name, address, port, user, identity_file, engine_path, created_at, auth, jump_host, work_dir, "
    "rendezvous_address, probe";

HostConfig readHost(const sql::Statement& st) {
  HostConfig h;
  h.id = st.text(0);
  h.name = st.text(1);
  h.address = st.text(2);
  h.port = static_cast<int>(st.integer(3));
  h.user = st.text(4);
  h.identityFile = st.text(5);
  h.enginePath = st.text(6);
  h.createdAt = st.time(7);
  h.auth = st.text(8).isEmpty() ? ssh_auth::automatic : st.text(8);
  h.jumpHost = st.text(9);
  h.workDir = st.text(10);
  h.rendezvousAddress = st.text(11);
  if (!st.isNull(12)) h.probe = HostProbeResult::fromJson(QJsonDocument::fromJson(st.text(12).toUtf8()).object());
  return h;
}

QString orEmpty(const QString& s) { return s.isNull() ? QString("") : s; }

}  // namespace

bool HostRepository::upsert(const HostConfig& h) {
  static const QRegularExpression idRe(QStringLiteral("^[A-Za-z0-9][A-Za-z0-9_.-]*$"));
  if (!idRe.match(h.id).hasMatch()) {
    m_error = QStringLiteral("host id '%1' must start with a letter or digit and use only letters, digits, '_', '.', '-'").arg(h.id);
    return false;
  }
  if (h.address.trimmed().isEmpty()) {
    m_error = QStringLiteral("host %1 has no address").arg(h.id);
    return false;
  }
  if (h.port < 1 || h.port > 65535) {
    m_error = QStringLiteral("host %1: port %2 is not in 1..65535").arg(h.id).arg(h.port);
    return false;
  }
  sql::Database& db = m_ws.database();
  sql::Transaction tx(db);
  sql::Statement up(db,
                    "INSERT INTO hosts (id, name, address, port, user, identity_file, engine_path, created_at, auth, "
                    "jump_host, work_dir, rendezvous_address, probe, probed_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?) "
                    "ON CONFLICT(id) DO UPDATE SET name=excluded.name, address=excluded.address, port=excluded.port, "
                    "user=excluded.user, identity_file=excluded.identity_file, engine_path=excluded.engine_path, "
                    "auth=excluded.auth, jump_host=excluded.jump_host, work_dir=excluded.work_dir, "
                    "rendezvous_address=excluded.rendezvous_address, probe=COALESCE(excluded.probe, hosts.probe), "
                    "probed_at=COALESCE(excluded.probed_at, hosts.probed_at)");
  up.bind(1, h.id)
      .bind(2, orEmpty(h.name))
      .bind(3, h.address.trimmed())
      .bind(4, h.port)
      .bind(5, orEmpty(h.user))
      .bind(6, orEmpty(h.identityFile))
      .bind(7, orEmpty(h.enginePath))
      .bindTime(8, h.createdAt.isValid() ? h.createdAt : QDateTime::currentDateTime())
      .bind(9, h.auth.isEmpty() ? ssh_auth::automatic : h.auth)
      .bind(10, orEmpty(h.jumpHost))
      .bind(11, orEmpty(h.workDir))
      .bind(12, orEmpty(h.rendezvousAddress));
  if (h.probe.probedAt.isValid()) {
    up.bind(13, QString::fromUtf8(QJsonDocument(h.probe.toJson()).toJson(QJsonDocument::Compact))).bindTime(14, h.probe.probedAt);
  } else {
    up.bindNull(13).bindNull(14);
  }
  if (!up.run()) {
    m_error = up.error();
    return false;
  }
  sql::Statement del(db, "DELETE FROM host_group_members WHERE host_id = ?");
  del.bind(1, h.id);
  if (!del.run()) {
    m_error = del.error();
    return false;
  }
  for (const QString& g : h.groups) {
    if (g.trimmed().isEmpty()) continue;
    sql::Statement ag(db, "INSERT OR IGNORE INTO host_groups (name, created_at) VALUES (?, ?)");
    ag.bind(1, g.trimmed()).bindTime(2, QDateTime::currentDateTime());
    sql::Statement am(db, "INSERT OR IGNORE INTO host_group_members (group_name, host_id) VALUES (?, ?)");
    am.bind(1, g.trimmed()).bind(2, h.id);
    if (!ag.run() || !am.run()) {
      m_error = ag.ok() ? am.error() : ag.error();
      return false;
    }
  }
  QString err;
  if (!tx.commit(&err)) {
    m_error = err;
    return false;
  }
  return true;
}

std::optional<HostConfig> HostRepository::get(const QString& id) const {
  sql::Statement st(m_ws.database(), (QByteArray("SELECT ") + kColumns + " FROM hosts WHERE id = ?").constData());
  st.bind(1, id);
  if (!st.step()) return std::nullopt;
  HostConfig h = readHost(st);
  sql::Statement g(m_ws.database(), "SELECT group_name FROM host_group_members WHERE host_id = ? ORDER BY group_name");
  g.bind(1, id);
  while (g.step()) h.groups << g.text(0);
  return h;
}

QList<HostConfig> HostRepository::list() const {
  QList<HostConfig> out;
  QStringList ids;
  {
    sql::Statement st(m_ws.database(), "SELECT id FROM hosts ORDER BY id");
    while (st.step()) ids << st.text(0);
  }
  for (const QString& id : ids)
    if (auto h = get(id)) out.append(*h);
  return out;
}

bool HostRepository::remove(const QString& id) {
  sql::Statement st(m_ws.database(), "DELETE FROM hosts WHERE id = ?");
  st.bind(1, id);
  if (!st.run()) {
    m_error = st.error();
    return false;
  }
  return true;
}

bool HostRepository::setProbe(const QString& id, const HostProbeResult& probe) {
  sql::Statement st(m_ws.database(), "UPDATE hosts SET probe = ?, probed_at = ? WHERE id = ?");
  HostProbeResult p = probe;
  if (!p.probedAt.isValid()) p.probedAt = QDateTime::currentDateTime();
  st.bind(1, QString::fromUtf8(QJsonDocument(p.toJson()).toJson(QJsonDocument::Compact))).bindTime(2, p.probedAt).bind(3, id);
  if (!st.run()) {
    m_error = st.error();
    return false;
  }
  if (m_ws.database().changes() == 0) {
    m_error = QStringLiteral("no host '%1'").arg(id);
    return false;
  }
  return true;
}

QStringList HostRepository::groups() const {
  QStringList out;
  sql::Statement st(m_ws.database(), "SELECT name FROM host_groups ORDER BY name");
  while (st.step()) out << st.text(0);
  return out;
}

QStringList HostRepository::groupMembers(const QString& group) const {
  QStringList out;
  sql::Statement st(m_ws.database(), "SELECT host_id FROM host_group_members WHERE group_name = ? ORDER BY host_id");
  st.bind(1, group);
  while (st.step()) out << st.text(0);
  return out;
}

bool HostRepository::addGroup(const QString& group) {
  if (group.trimmed().isEmpty()) {
    m_error = QStringLiteral("a group needs a name");
    return false;
  }
  sql::Statement st(m_ws.database(), "INSERT OR IGNORE INTO host_groups (name, created_at) VALUES (?, ?)");
  st.bind(1, group.trimmed()).bindTime(2, QDateTime::currentDateTime());
  if (!st.run()) {
    m_error = st.error();
    return false;
  }
  return true;
}

bool HostRepository::removeGroup(const QString& group) {
  sql::Statement st(m_ws.database(), "DELETE FROM host_groups WHERE name = ?");
  st.bind(1, group);
  if (!st.run()) {
    m_error = st.error();
    return false;
  }
  return true;
}

bool HostRepository::setGroupMembers(const QString& group, const QStringList& hostIds) {
  if (!addGroup(group)) return false;
  sql::Database& db = m_ws.database();
  sql::Transaction tx(db);
  sql::Statement del(db, "DELETE FROM host_group_members WHERE group_name = ?");
  del.bind(1, group.trimmed());
  if (!del.run()) {
    m_error = del.error();
    return false;
  }
  for (const QString& id : hostIds) {
    sql::Statement am(db, "INSERT OR IGNORE INTO host_group_members (group_name, host_id) VALUES (?, ?)");
    am.bind(1, group.trimmed()).bind(2, id);
    if (!am.run()) {
      m_error = QStringLiteral("%1 (is '%2' a known host?)").arg(am.error(), id);
      return false;
    }
  }
  QString err;
  if (!tx.commit(&err)) {
    m_error = err;
    return false;
  }
  return true;
}

}  // namespace fathom::cluster
