// Getting a host ready for a run: the engine (uploaded unless the same version with the same
// sha256 is there), the run config, local data (uploaded, or checked to exist remotely), all with
// progress and resumable transfers (SshSession::upload). Blocking: run off the GUI thread.
// Preflight (`fathom-engine bench comm` across the chosen hosts) needs the engine's bench command
// (issue 8); until the engine has it, preflight() says so instead of pretending.
#pragma once

#include <QString>
#include <QStringList>

#include <functional>

#include "cluster/hosts/HostConfig.h"

namespace fathom::cluster {

class SshSession;

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

  // Preflight across hosts; see the file comment. Returns false with `report` saying why.
  static bool preflight(const QList<HostConfig>& hosts, QString* report);

 private:
  SshSession& m_session;
  HostConfig m_host;
  QString m_engine;
};

}  // namespace fathom::cluster
