// Provisioning over one SshSession; every remote path goes through shellQuote().
#include "cluster/hosts/Provisioner.h"

#include <QCryptographicHash>
#include <QDir>
#include <QFile>
#include <QFileInfo>
#include <QJsonArray>
#include <QJsonDocument>
#include <QJsonObject>
#include <QProcess>

#include <thread>
#include <vector>

#include "cluster/hosts/HostProbe.h"
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

QString Provisioner::preflightCommand(const HostConfig& host, const PreflightOptions& o, const QString& masterAddr, int masterPort,
                                     int rank, int worldSize, int localRank, const QString& socketIfname) {
  QStringList argv{QStringLiteral("timeout"), QStringLiteral("-k"), QStringLiteral("5"), QString::number(o.timeoutS + 30),
                   QStringLiteral("env"), QStringLiteral("OMP_WAIT_POLICY=PASSIVE"),
                   QStringLiteral("MASTER_ADDR=%1").arg(masterAddr), QStringLiteral("MASTER_PORT=%1").arg(masterPort),
                   QStringLiteral("RANK=%1").arg(rank), QStringLiteral("WORLD_SIZE=%1").arg(worldSize),
                   QStringLiteral("LOCAL_RANK=%1").arg(localRank), QStringLiteral("LOCAL_WORLD_SIZE=%1").arg(std::max(1, o.processesPerHost))};
  if (!socketIfname.isEmpty()) argv << QStringLiteral("GLOO_SOCKET_IFNAME=%1").arg(socketIfname);
  argv << host.effectiveEnginePath() << QStringLiteral("bench") << QStringLiteral("comm") << QStringLiteral("--json")
       << QStringLiteral("--sizes") << o.sizes << QStringLiteral("--iters") << QString::number(std::max(1, o.iters))
       << QStringLiteral("--timeout") << QString::number(o.timeoutS) << QStringLiteral("--device") << o.device;
  if (!o.backend.isEmpty()) argv << QStringLiteral("--backend") << o.backend;
  return shellJoin(argv);
}

PreflightResult Provisioner::preflight(const QList<HostConfig>& hosts, const PreflightOptions& o) {
  PreflightResult res;
  auto say = [&](const QString& line) {
    if (o.progress) o.progress(line);
  };
  const int perHost = std::max(1, o.processesPerHost);
  const int world = static_cast<int>(hosts.size()) * perHost;
  res.worldSize = world;
  if (world < 2) {
    res.error = QStringLiteral("preflight measures the links between ranks: choose at least two hosts (or several processes per host)");
    return res;
  }
  const auto label = [](const HostConfig& h) {
    return h.displayName() == h.address ? h.address : QStringLiteral("%1 (%2)").arg(h.displayName(), h.address);
  };
  // One session per rank: a session runs one command at a time.
  std::vector<std::unique_ptr<SshSession>> sessions;
  for (int h = 0; h < hosts.size(); ++h) {
    for (int l = 0; l < perHost; ++l) {
      if (o.cancel && o.cancel->load()) {
        res.error = QStringLiteral("cancelled");
        return res;
      }
      if (l == 0) say(QStringLiteral("%1: connecting").arg(label(hosts[h])));
      auto s = std::make_unique<SshSession>();
      s->setKnownHostsFile(o.knownHostsFile);
      s->setCallbacks(o.callbacks);
      s->setConnectTimeoutMs(o.connectTimeoutMs);
      if (!s->connect(hosts[h])) {
        res.error = QStringLiteral("host %1: %2").arg(label(hosts[h]), s->lastError());
        return res;
      }
      sessions.push_back(std::move(s));
    }
  }
  // The engine must know bench comm (issue 8) everywhere.
  for (int h = 0; h < hosts.size(); ++h) {
    const SshExecResult r = sessions[static_cast<size_t>(h * perHost)]->exec(
        shellJoin({hosts[h].effectiveEnginePath(), QStringLiteral("bench"), QStringLiteral("comm"), QStringLiteral("--help")}) +
            QStringLiteral(" >/dev/null 2>&1"),
        30000);
    if (!r.ok || r.exitCode != 0) {
      res.error = QStringLiteral("host %1: %2 does not run `bench comm` (not installed, or older than the distributed engine): "
                                 "provision the host first")
                      .arg(label(hosts[h]), hosts[h].effectiveEnginePath());
      return res;
    }
  }
  res.masterAddr = hosts.first().effectiveRendezvousAddress();
  res.masterPort = findFreePort(*sessions.front());
  if (res.masterPort <= 0) {
    res.error = QStringLiteral("host %1: cannot read its listening ports to pick MASTER_PORT").arg(label(hosts.first()));
    return res;
  }
  QStringList ifnames;
  for (int h = 0; h < hosts.size(); ++h)
    ifnames << findSocketInterface(*sessions[static_cast<size_t>(h * perHost)], hosts[h].effectiveRendezvousAddress(), res.masterAddr);
  say(QStringLiteral("bench comm across %1 ranks, rendezvous %2:%3").arg(world).arg(res.masterAddr).arg(res.masterPort));

  // Every rank at once; each blocks in its own thread until its bench ends (or times out there).
  std::vector<SshExecResult> results(static_cast<size_t>(world));
  std::vector<std::thread> threads;
  for (int rank = 0; rank < world; ++rank) {
    const int h = rank / perHost, l = rank % perHost;
    const QString cmd = preflightCommand(hosts[h], o, res.masterAddr, res.masterPort, rank, world, l, ifnames.value(h));
    threads.emplace_back([&, rank, cmd] {
      results[static_cast<size_t>(rank)] = sessions[static_cast<size_t>(rank)]->exec(cmd, (o.timeoutS + 45) * 1000, {}, o.cancel);
    });
  }
  for (auto& t : threads) t.join();

  for (int rank = 0; rank < world; ++rank) {
    const SshExecResult& r = results[static_cast<size_t>(rank)];
    const HostConfig& h = hosts[rank / perHost];
    if (r.cancelled) {
      res.error = QStringLiteral("cancelled (the ranks end by their own timeout on the hosts)");
      return res;
    }
    if (!r.ok || r.exitCode != 0) {
      QStringList lines = QString::fromUtf8(r.err).trimmed().split(QLatin1Char('\n'));
      const QString err = lines.mid(std::max<qsizetype>(0, lines.size() - 6)).join(QLatin1Char('\n'));
      res.error = QStringLiteral("rank %1 on host %2: %3").arg(rank).arg(label(h), !r.ok ? r.error : QStringLiteral("bench comm exited with %1").arg(r.exitCode));
      if (!err.isEmpty()) res.error += QStringLiteral("\n") + err;
      return res;
    }
  }
  const QJsonObject j = QJsonDocument::fromJson(results.front().out.trimmed().split('\n').last()).object();
  res.backend = j.value(QStringLiteral("backend")).toString();
  for (const QJsonValue& v : j.value(QStringLiteral("results")).toArray()) {
    const QJsonObject e = v.toObject();
    PreflightRow row;
    row.op = e.value(QStringLiteral("op")).toString();
    row.algorithm = e.value(QStringLiteral("algorithm")).toString();
    row.bytes = static_cast<qint64>(e.value(QStringLiteral("bytes")).toDouble());
    row.timeUs = e.value(QStringLiteral("time_us")).toDouble();
    row.algbwGBps = e.value(QStringLiteral("algbw_gbps")).toDouble();
    row.busbwGBps = e.value(QStringLiteral("busbw_gbps")).toDouble();
    res.rows << row;
  }
  if (res.rows.isEmpty()) {
    res.error = QStringLiteral("rank 0 on host %1 printed no results: %2").arg(label(hosts.first()), QString::fromUtf8(results.front().out.left(500)));
    return res;
  }
  QString t = QStringLiteral("bench comm: %1 ranks on %2 hosts, %3\n").arg(world).arg(hosts.size()).arg(res.backend);
  t += QStringLiteral("%1 %2 %3 %4 %5\n")
           .arg(QStringLiteral("op"), -16)
           .arg(QStringLiteral("size"), 8)
           .arg(QStringLiteral("time_us"), 12)
           .arg(QStringLiteral("algbw_GB/s"), 12)
           .arg(QStringLiteral("busbw_GB/s"), 12);
  double best = 0;
  for (const PreflightRow& r : res.rows) {
    const QString size = r.bytes >= (1 << 20) ? QStringLiteral("%1M").arg(r.bytes >> 20)
                         : r.bytes >= 1024   ? QStringLiteral("%1K").arg(r.bytes >> 10)
                                             : QString::number(r.bytes);
    t += QStringLiteral("%1 %2 %3 %4 %5\n")
             .arg(r.op, -16)
             .arg(size, 8)
             .arg(r.timeUs, 12, 'f', 1)
             .arg(r.algbwGBps, 12, 'f', 3)
             .arg(r.busbwGBps, 12, 'f', 3);
    if (r.op == QLatin1String("all_reduce")) best = std::max(best, r.busbwGBps);
  }
  t += QStringLiteral("peak all_reduce bus bandwidth: %1 GB/s").arg(best, 0, 'f', 3);
  res.report = t;
  res.ok = true;
  return res;
}

}  // namespace fathom::cluster
