// Getting a host ready for a run: the engine (uploaded unless the same version with the same
// sha256 is there), the run config, local data (uploaded, or checked to exist remotely), all with
// progress and resumable transfers (SshSession::upload). Blocking: run off the GUI thread.
// Preflight: `fathom-engine bench comm` across the chosen hosts (one rank per host, rendezvous like
// a launch), the bus bandwidth of all-reduce / reduce-scatter / all-gather between them.
#pragma once

#include <QString>
#include <QStringList>

#include <atomic>
#include <functional>

#include "cluster/hosts/HostConfig.h"
#include "cluster/hosts/SshSession.h"

namespace fathom::cluster {

// what: "engine", "config", a data file; done/total in bytes. Return false to cancel.
using ProvisionProgressFn = std::function<bool(const QString& what, qint64 done, qint64 total)>;

struct EngineCheck {
  bool installed = false;
  bool same = false;  // same --version and the same sha256 as the local binary
  QString remoteVersion, localVersion, remoteSha256, localSha256;
  QString error;
};

struct ProvisionResult {
  bool ok = false;
  QString error;
  bool engineSkipped = false;        // already there, identical
  qint64 engineResumedFrom = 0;
  QString remoteConfigPath;          // where the config went
  QStringList uploaded;              // remote paths written
  QStringList missingRemotePaths;    // data paths that exist neither locally (to upload) nor remotely
  QStringList notes;                 // what was done, one line each
};

struct PreflightOptions {
  QString knownHostsFile;  // "" = ~/.ssh/known_hosts
  SshCallbacks callbacks;
  int connectTimeoutMs = 10000;
  int processesPerHost = 1;
  QString sizes = QStringLiteral("64K..16M");  // bench comm --sizes
  int iters = 5;
  QString backend;         // "" = the engine's default (nccl on CUDA, gloo on CPU)
  QString device = QStringLiteral("auto");
  int timeoutS = 120;      // rendezvous and collectives; the whole preflight ends within ~2x this
  const std::atomic<bool>* cancel = nullptr;
  std::function<void(const QString&)> progress;  // one line per step, from the calling thread
};

struct PreflightRow {
  QString op, algorithm;
  qint64 bytes = 0;
  double timeUs = 0, algbwGBps = 0, busbwGBps = 0;
};

struct PreflightResult {
  bool ok = false;
  QString error;    // names the host (and rank) that failed
  QString report;   // a table: op, size, time, algbw, busbw; then the slowest link's summary
  int worldSize = 0;
  QString masterAddr, backend;
  int masterPort = 0;
  QList<PreflightRow> rows;
};

class Provisioner {
 public:
  // `localEngine` "" = LocalLauncher::findEngineBinary().
  explicit Provisioner(SshSession& session, const HostConfig& host, QString localEngine = QString());

  static QString sha256OfFile(const QString& path);
  // `fathom-engine --version`, first line ("" when it does not run).
  static QString localEngineVersion(const QString& engine);

  EngineCheck checkEngine();
  // Uploads the engine to host.effectiveEnginePath() unless checkEngine() says it is the same.
  ProvisionResult provisionEngine(const ProvisionProgressFn& progress = {});
  // Uploads `localConfig` as `remoteConfig`, then for every data path the config names
  // (data.train, tokenizer.path, model.init_from): absolute paths that exist remotely are kept;
  // missing ones are uploaded from this computer to the same path when `uploadData` and they exist
  // here (files only), else listed in missingRemotePaths (ok=false).
  ProvisionResult provisionRun(const QString& localConfig, const QString& remoteConfig, bool uploadData,
                               const ProvisionProgressFn& progress = {});

  // Data paths a config refers to (absolute where the config made them so).
  static QStringList configDataPaths(const QString& configPath, QString* error = nullptr);

  // `fathom-engine bench comm --json` on every host at once (host 0 holds rank 0 and hosts the
  // rendezvous on a free port; GLOO_SOCKET_IFNAME per host as in a launch), each under `timeout`
  // on the host so nothing outlives it. Blocks: run off the GUI thread.
  static PreflightResult preflight(const QList<HostConfig>& hosts, const PreflightOptions& options);
  // The bench comm command line of one rank (env and argv, quoted), for tests and the docs.
  static QString preflightCommand(const HostConfig& host, const PreflightOptions& options, const QString& masterAddr, int masterPort,
                                  int rank, int worldSize, int localRank, const QString& socketIfname);

 private:
  SshSession& m_session;
  HostConfig m_host;
  QString m_engine;
};

}  // namespace fathom::cluster
