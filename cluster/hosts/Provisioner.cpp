// Provisioning over one SshSession; every remote path goes through shellQuote().
#include "cluster/hosts/Provisioner.h"

#include <QCryptographicHash>
#include <QDir>
#include <QFile>
#include <QFileInfo>
#include <QProcess>

#include "cluster/hosts/ShellQuote.h"
#include "cluster/hosts/SshSession.h"
#include "cluster/launch/LocalLauncher.h"
#include "engine/config/config.h"

namespace fathom::cluster {

Provisioner::Provisioner(SshSession& session, const HostConfig& host, QString localEngine)
    : m_session(session), m_host(host), m_engine(std::move(localEngine)) {
  if (m_engine.isEmpty()) m_engine = LocalLauncher::findEngineBinary();
}

QString Provisioner::sha256OfFile(const QString& path) {
  QFile f(path);
  if (!f.open(QIODevice::ReadOnly)) return {};
  QCryptographicHash h(QCryptographicHash::Sha256);
  h.addData(&f);
  return QString::fromLatin1(h.result().toHex());
}

QString Provisioner::localEngineVersion(const QString& engine) {
  QProcess p;
  p.start(engine, {QStringLiteral("--version")});
  if (!p.waitForFinished(30000)) {
    p.kill();
    p.waitForFinished(1000);
    return {};
  }
  return QString::fromUtf8(p.readAllStandardOutput()).section(QLatin1Char('\n'), 0, 0).trimmed();
}

EngineCheck Provisioner::checkEngine() {
  EngineCheck c;
  if (m_engine.isEmpty() || !QFileInfo(m_engine).isFile()) {
    c.error = QStringLiteral("no local fathom-engine to compare with (build it or set FATHOM_ENGINE_BIN)");
    return c;
  }
  c.localVersion = localEngineVersion(m_engine);
  c.localSha256 = sha256OfFile(m_engine);
  const QString p = shellQuote(m_host.effectiveEnginePath());
  const SshExecResult r = m_session.exec(
      QStringLiteral("if [ -x %1 ]; then %1 --version 2>&1 | head -n 1; sha256sum %1 | cut -c1-64; else echo @@missing; fi").arg(p),
      120000);
  if (!r.ok) {
    c.error = r.error;
    return c;
  }
  const QStringList lines = QString::fromUtf8(r.out).split(QLatin1Char('\n'), Qt::SkipEmptyParts);
  if (lines.value(0) == QLatin1String("@@missing")) return c;
  c.installed = true;
  c.remoteVersion = lines.value(0).trimmed();
  c.remoteSha256 = lines.value(1).trimmed();
  c.same = !c.localSha256.isEmpty() && c.remoteSha256 == c.localSha256 && c.remoteVersion == c.localVersion;
  return c;
}

ProvisionResult Provisioner::provisionEngine(const ProvisionProgressFn& progress) {
  ProvisionResult res;
  const EngineCheck c = checkEngine();
  if (!c.error.isEmpty()) {
    res.error = QStringLiteral("%1: %2").arg(m_host.displayName(), c.error);
    return res;
  }
  if (c.same) {
    res.ok = true;
    res.engineSkipped = true;
    res.notes << QStringLiteral("%1: %2 is already installed at %3 (same sha256)")
                     .arg(m_host.displayName(), c.remoteVersion, m_host.effectiveEnginePath());
    return res;
  }
  const SshUploadResult u = m_session.upload(m_engine, m_host.effectiveEnginePath(), 0755, [&](qint64 d, qint64 t) {
    return !progress || progress(QStringLiteral("engine"), d, t);
  });
  if (!u.ok) {
    res.error = QStringLiteral("%1: uploading the engine failed: %2").arg(m_host.displayName(), u.error);
    return res;
  }
  res.engineResumedFrom = u.resumedFrom;
  res.uploaded << m_host.effectiveEnginePath();
  // The copy must run there: a different libc or missing LibTorch shows here, not at launch.
  const SshExecResult v = m_session.exec(QStringLiteral("%1 --version 2>&1 | head -n 3").arg(shellQuote(m_host.effectiveEnginePath())), 60000);
  const QString got = QString::fromUtf8(v.out).trimmed();
  if (!v.ok || !got.startsWith(QLatin1String("fathom-engine"))) {
    res.error = QStringLiteral("%1: the uploaded engine does not run there: %2. The host needs the same shared libraries "
                               "(LibTorch, OpenBLAS) as this computer, or a build of its own (set the engine path).")
                    .arg(m_host.displayName(), got.isEmpty() ? v.error : got);
    return res;
  }
  res.ok = true;
  res.notes << QStringLiteral("%1: engine uploaded to %2%3")
                   .arg(m_host.displayName(), m_host.effectiveEnginePath(),
                        u.resumedFrom > 0 ? QStringLiteral(" (resumed at %1 bytes)").arg(u.resumedFrom) : QString());
  return res;
}

QStringList Provisioner::configDataPaths(const QString& configPath, QString* error) {
  config::LoadOptions o;
  o.check_paths = false;
  const config::LoadResult r = config::load_config_file(configPath.toStdString(), o);
  if (!r.ok()) {
    if (error) *error = QStringLiteral("%1 does not load; fix it in the Designer first").arg(configPath);
    return {};
  }
  QStringList out;
  for (const std::string& t : r.config.data.train) out << QString::fromStdString(t);
  if (!r.config.tokenizer.path.empty()) out << QString::fromStdString(r.config.tokenizer.path);
  if (!r.config.model.init_from.empty()) out << QString::fromStdString(r.config.model.init_from);
  out.removeDuplicates();
  return out;
}

ProvisionResult Provisioner::provisionRun(const QString& localConfig, const QString& remoteConfig, bool uploadData,
                                          const ProvisionProgressFn& progress) {
  ProvisionResult res;
  const SshUploadResult u = m_session.upload(localConfig, remoteConfig, 0644, [&](qint64 d, qint64 t) {
    return !progress || progress(QStringLiteral("config"), d, t);
  });
  if (!u.ok) {
    res.error = QStringLiteral("%1: uploading the config failed: %2").arg(m_host.displayName(), u.error);
    return res;
  }
  res.remoteConfigPath = remoteConfig;
  res.uploaded << remoteConfig;
  QString err;
  const QStringList paths = configDataPaths(localConfig, &err);
  if (!err.isEmpty()) {
    res.error = err;
    return res;
  }
  for (const QString& p : paths) {
    if (p.contains(QLatin1Char('*')) || p.contains(QLatin1Char('?')) || p.contains(QLatin1Char('['))) {
      res.notes << QStringLiteral("%1: %2 is a pattern; not checked").arg(m_host.displayName(), p);
      continue;
    }
    if (QDir::isRelativePath(p)) {
      // The engine resolves these against the workspace or the run; a tokenizer that is trained
      // when missing is fine either way.
      res.notes << QStringLiteral("%1: %2 is relative; the engine resolves it on the host").arg(m_host.displayName(), p);
      continue;
    }
    const SshExecResult t = m_session.exec(QStringLiteral("test -e %1").arg(shellQuote(p)), 30000);
    if (t.ok && t.exitCode == 0) continue;
    const QFileInfo local(p);
    if (uploadData && local.isFile()) {
      const SshUploadResult d = m_session.upload(p, p, 0644, [&](qint64 a, qint64 b) {
        return !progress || progress(local.fileName(), a, b);
      });
      if (!d.ok) {
        res.error = QStringLiteral("%1: uploading %2 failed: %3").arg(m_host.displayName(), p, d.error);
        return res;
      }
      res.uploaded << p;
      continue;
    }
    res.missingRemotePaths << p;
  }
  if (!res.missingRemotePaths.isEmpty()) {
    res.error = QStringLiteral("%1: these paths of the config do not exist there: %2. Copy them (directories with rsync), "
                               "or tick 'upload local data' for files.")
                    .arg(m_host.displayName(), res.missingRemotePaths.join(QStringLiteral(", ")));
    return res;
  }
  res.ok = true;
  return res;
}

bool Provisioner::preflight(const QList<HostConfig>& hosts, QString* report) {
  if (report)
    *report = QStringLiteral("preflight across %1 host(s) needs `fathom-engine bench comm`, which this engine does not "
                             "have yet (issue 8: distributed data parallelism). Connect, probe and provision instead.")
                  .arg(hosts.size());
  return false;
}

}  // namespace fathom::cluster
