// The hosts table and host groups ("clusters") of the workspace registry (migration 4). No secrets:
// passwords and passphrases are never written here. Built on the workspace's connection, so it
// lives on the workspace's thread like the other repositories.
#pragma once

#include <QList>
#include <QString>
#include <QStringList>

#include <optional>

#include "cluster/hosts/HostConfig.h"

namespace fathom::cluster {

class Workspace;

class HostRepository {
 public:
  explicit HostRepository(Workspace& workspace) : m_ws(workspace) {}

  // Inserts or updates the host (groups included: it becomes a member of exactly host.groups,
  // creating groups that do not exist yet). False with lastError() on a bad id or a database error.
  bool upsert(const HostConfig& host);
  std::optional<HostConfig> get(const QString& id) const;
  QList<HostConfig> list() const;  // by id
  // Removes the host (and its group memberships).
  bool remove(const QString& id);
  // Stores a probe result (and its time) without touching the rest of the row.
  bool setProbe(const QString& id, const HostProbeResult& probe);

  QStringList groups() const;  // sorted
  QStringList groupMembers(const QString& group) const;  // host ids, sorted
  bool addGroup(const QString& group);
  bool removeGroup(const QString& group);  // hosts stay
  bool setGroupMembers(const QString& group, const QStringList& hostIds);

  QString lastError() const { return m_error; }

 private:
  Workspace& m_ws;
  mutable QString m_error;
};

}  // namespace fathom::cluster
