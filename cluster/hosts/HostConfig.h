// One SSH host of the workbench (hosts table) and what a probe found on it. Plain values only.
// Secrets are never part of it: passphrases and passwords are asked when needed (see SshSession).
#pragma once

#include <QDateTime>
#include <QJsonObject>
#include <QList>
#include <QMetaType>
#include <QString>
#include <QStringList>

namespace fathom::cluster {

// How SshSession authenticates (HostConfig::auth).
namespace ssh_auth {
inline const QString automatic = QStringLiteral("auto");   // agent, then the key file, then default keys
inline const QString agent = QStringLiteral("agent");      // ssh-agent only ($SSH_AUTH_SOCK)
inline const QString key = QStringLiteral("key");          // HostConfig::identityFile; passphrase asked
inline const QString password = QStringLiteral("password"); // asked each time (or the OS keychain)
}  // namespace ssh_auth

struct GpuInfo {
  int index = 0;
  QString name;
  qint64 memoryMiB = 0;
  QString driver;
};

struct NetInterface {
  QString name, address;  // "eth0", "10.0.0.5/24"
};

// What HostProbe found (JSON in hosts.probe).
struct HostProbeResult {
  bool ok = false;
  QString error;
  QString os;             // PRETTY_NAME of /etc/os-release
  QString kernel;         // uname -r
  QString hostname;
  int cpus = 0;           // nproc
  QString cpuModel;
  qint64 memoryBytes = 0;
  qint64 diskFreeBytes = 0;  // of the work directory (or its nearest existing parent)
  QString diskPath;
  QList<GpuInfo> gpus;       // empty: no NVIDIA GPU (or no nvidia-smi)
  QList<NetInterface> interfaces;  // IPv4, loopback left out
  QString engineVersion;     // first line of `fathom-engine --version`, "" when not installed
  QString engineError;       // why there is no version
  QDateTime probedAt;

  QJsonObject toJson() const;
  static HostProbeResult fromJson(const QJsonObject& o);
};

struct HostConfig {
  QString id;       // stable key ("gpu1"); also the name shown when `name` is empty
  QString name;
  QString address;  // host name or IP the workbench connects to
  int port = 22;
  QString user;     // "" = the local user name
  QString auth = ssh_auth::automatic;
  QString identityFile;  // private key for ssh_auth::key / automatic
  QString jumpHost;      // "" or [user@]host[:port] reached first (ProxyJump)
  QString workDir;       // remote directory for runs, engine and data; "" = ~/fathom
  QString enginePath;    // remote fathom-engine; "" = <workDir>/bin/fathom-engine
  // The address other nodes use to reach this one (MASTER_ADDR when it hosts rank 0); "" = address.
  QString rendezvousAddress;
  QStringList groups;    // host groups ("clusters") it belongs to
  QDateTime createdAt;
  HostProbeResult probe;

  QString displayName() const { return name.isEmpty() ? id : name; }
  QString effectiveUser() const;
  QString effectiveWorkDir() const;    // workDir or "fathom" (relative: under the login directory)
  QString effectiveEnginePath() const;
  QString effectiveRendezvousAddress() const { return rendezvousAddress.isEmpty() ? address : rendezvousAddress; }
  // user@address:port, for messages.
  QString destination() const;
};

// [user@]host[:port] (also [v6addr]:port). False for an empty host or a bad port.
bool parseDestination(const QString& text, QString* user, QString* host, int* port);

}  // namespace fathom::cluster

Q_DECLARE_METATYPE(fathom::cluster::HostConfig)
Q_DECLARE_METATYPE(fathom::cluster::HostProbeResult)
