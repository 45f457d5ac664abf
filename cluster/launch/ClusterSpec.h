// Where a multi-node launch runs: the hosts (host 0 holds rank 0), processes per host, devices, and
// (once started) where each rank lives on which host. Saved as <runDir>/cluster.json so that a
// later workbench re-attaches to the remote ranks; the run_ranks table keeps the host of each rank.
#pragma once

#include <QHash>
#include <QJsonObject>
#include <QList>
#include <QString>
#include <QStringList>

#include "cluster/hosts/HostConfig.h"

namespace fathom::cluster {

struct RemoteRank {
  int rank = 0;
  int localRank = 0;
  qint64 pid = 0;  // the rank's wrapper; also its process group and session id (setsid)
  qint64 stderrOffset = 0;  // bytes of the rank's remote stderr file mirrored into the local one
};

struct RemoteHostState {
  QString remoteWorkDir;  // absolute, as `cd <workDir> && pwd` printed it
  QString remoteRunDir;   // <remoteWorkDir>/runs/<runId>
  QList<RemoteRank> ranks;
  qint64 eventsOffset = 0;  // bytes of the remote events.jsonl mirrored into the local one
  // The interface that carries this host's rendezvous address (or its route to MASTER_ADDR), as
  // `ip -o -4 addr` / `ip route get` showed it at launch: the ranks' GLOO_SOCKET_IFNAME.
  QString socketIfname;
};

struct ClusterSpec {
  QList<HostConfig> hosts;
  int procsPerHost = 1;
  // Per host (the same on each): "cpu" or "cuda:0", "cuda:1", ... (one process per listed GPU
  // when procsPerHost is 0); empty = the config decides.
  QStringList devices;
  // Per host id: the devices chosen there ("cuda:0", "cuda:2"), overriding `devices` on that host
  // (the Launch dialog's per-host GPU choice, from the probe). Every host must then list the same
  // number of GPUs: one process per GPU, ranks numbered host by host.
  QHash<QString, QStringList> hostDevices;
  bool provisionEngine = false;  // upload the engine first (skipped where identical)
  bool uploadData = false;       // upload local data files the config names when missing remotely
  QString knownHostsFile;        // "" = ~/.ssh/known_hosts

  // Filled in by the launcher.
  QString masterAddr;
  int masterPort = 0;
  QList<RemoteHostState> state;  // index = host index

  QStringList devicesOf(int hostIndex) const {
    if (hostIndex >= 0 && hostIndex < hosts.size()) {
      const auto it = hostDevices.constFind(hosts.at(hostIndex).id);
      if (it != hostDevices.cend() && !it->isEmpty()) return *it;
    }
    return devices;
  }
  int processesPerHost() const {
    if (procsPerHost > 0) return procsPerHost;
    int gpus = 0;
    for (const QString& d : devicesOf(0))
      if (d.startsWith(QLatin1String("cuda"))) ++gpus;
    return gpus > 0 ? gpus : 1;
  }
  int worldSize() const { return static_cast<int>(hosts.size()) * processesPerHost(); }
  // Host index of a global rank (ranks are numbered host by host).
  int hostOfRank(int rank) const { return processesPerHost() > 0 ? rank / processesPerHost() : 0; }

  QJsonObject toJson() const;
  static ClusterSpec fromJson(const QJsonObject& o);
  static QString fileName() { return QStringLiteral("cluster.json"); }
  bool save(const QString& runDir, QString* error = nullptr) const;
  static bool load(const QString& runDir, ClusterSpec* out, QString* error = nullptr);
};

}  // namespace fathom::cluster
