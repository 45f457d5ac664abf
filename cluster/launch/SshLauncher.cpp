// SshLauncher: one RemoteJob (a worker thread) per run; see SshLauncher.h for the process layout.
#include "cluster/launch/SshLauncher.h"

#include <QDateTime>
#include <QDir>
#include <QElapsedTimer>
#include <QFile>
#include <QFileInfo>
#include <QJsonDocument>
#include <QJsonObject>
#include <QMap>
#include <QPointer>
#include <QRandomGenerator>
#include <QSet>

#include <algorithm>
#include <atomic>
#include <mutex>
#include <thread>

#include "cluster/hosts/HostProbe.h"
#include "cluster/hosts/Provisioner.h"
#include "cluster/hosts/ShellQuote.h"
#include "cluster/workspace/RunFiles.h"

namespace fathom::cluster {

namespace {

// The wrapper every remote rank runs in (sh -c W fathom-rank PIDFILE EXITFILE ERRFILE CMD...):
// records its pid (it is the session and group leader: setsid), forwards SIGTERM to the engine,
// waits for it and records its exit status (128+N for signal N) atomically.
const char* kWrapper =
    "pidf=$1; exitf=$2; errf=$3; shift 3; "
    "echo $$ > \"$pidf.tmp\" && mv -f \"$pidf.tmp\" \"$pidf\"; "
    "trap \"\" HUP; trap \"kill -TERM \\$child 2>/dev/null\" TERM INT; "
    "\"$@\" </dev/null >/dev/null 2>>\"$errf\" & child=$!; "
    "while :; do wait \"$child\"; st=$?; kill -0 \"$child\" 2>/dev/null || break; done; "
    "echo \"$st\" > \"$exitf.tmp\" && mv -f \"$exitf.tmp\" \"$exitf\"";

QString pidFile(int rank) { return QStringLiteral("rank%1.pid").arg(rank); }
QString exitFile(int rank) { return QStringLiteral("rank%1.exit").arg(rank); }

const QStringList kRendezvousVars = {QStringLiteral("MASTER_ADDR"), QStringLiteral("MASTER_PORT"),
                                     QStringLiteral("RANK"),        QStringLiteral("WORLD_SIZE"),
                                     QStringLiteral("LOCAL_RANK"),  QStringLiteral("LOCAL_WORLD_SIZE"),
                                     QStringLiteral("FATHOM_WORKSPACE")};

// The spec as it runs on a host: paths there, world size over all hosts.
LaunchSpec remoteSpec(const LaunchSpec& spec, const ClusterSpec& cluster, const QString& remoteRunDir,
                      const QString& remoteConfig) {
  LaunchSpec s = spec;
  if (s.command.isEmpty()) s.command = LocalLauncher::engineCommand(spec);  // read from the local config
  s.configPath = remoteConfig;
  s.runDir = remoteRunDir;
  s.nprocs = cluster.worldSize();
  s.devices = cluster.devices;
  return s;
}

int cudaCount(const QStringList& devices) {
  int n = 0;
  for (const QString& d : devices)
    if (d.startsWith(QLatin1String("cuda"))) ++n;
  return n;
}

}  // namespace

// ---- command lines ------------------------------------------------------------------------------

QStringList SshLauncher::rankCommand(const LaunchSpec& spec, const ClusterSpec& cluster, int hostIndex, int localRank,
                                     const QString& remoteRunDir, const QString& remoteConfig, const QString& remoteWorkDir) {
  const int perHost = cluster.processesPerHost();
  const int rank = hostIndex * perHost + localRank;
  LaunchSpec s = remoteSpec(spec, cluster, remoteRunDir, remoteConfig);
  s.devices = cluster.devicesOf(hostIndex);  // this host's GPUs when chosen per host
  QStringList argv{QStringLiteral("env")};
  for (const QString& e : spec.environment) {
    const QString name = e.section(QLatin1Char('='), 0, 0);
    if (e.indexOf(QLatin1Char('=')) > 0 && !kRendezvousVars.contains(name)) argv << e;
  }
  argv << QStringLiteral("FATHOM_WORKSPACE=%1").arg(remoteWorkDir) << QStringLiteral("OMP_WAIT_POLICY=PASSIVE");
  if (cluster.worldSize() > 1) {
    // Gloo binds to the interface that resolves from the host name unless told; on hosts whose name
    // resolves to 127.0.0.1 (common) the ranks could not reach each other. The user's own value wins.
    const QString ifname = hostIndex < cluster.state.size() ? cluster.state.at(hostIndex).socketIfname : QString();
    bool userIf = false;
    for (const QString& e : spec.environment) userIf = userIf || e.startsWith(QLatin1String("GLOO_SOCKET_IFNAME="));
    if (!ifname.isEmpty() && !userIf) argv << QStringLiteral("GLOO_SOCKET_IFNAME=%1").arg(ifname);
    argv << QStringLiteral("MASTER_ADDR=%1").arg(cluster.masterAddr.isEmpty() ? QStringLiteral("<rank-0-host>") : cluster.masterAddr)
         << QStringLiteral("MASTER_PORT=%1").arg(cluster.masterPort) << QStringLiteral("RANK=%1").arg(rank)
         << QStringLiteral("WORLD_SIZE=%1").arg(cluster.worldSize()) << QStringLiteral("LOCAL_RANK=%1").arg(localRank)
         << QStringLiteral("LOCAL_WORLD_SIZE=%1").arg(perHost);
  }
  argv << cluster.hosts.at(hostIndex).effectiveEnginePath();
  QStringList args = LocalLauncher::engineArguments(s, rank);
  argv += args;
  return argv;
}

QStringList SshLauncher::commandPreview(const LaunchSpec& spec, const ClusterSpec& cluster) {
  QStringList out;
  for (int h = 0; h < cluster.hosts.size(); ++h) {
    const HostConfig& host = cluster.hosts.at(h);
    const QString work = h < cluster.state.size() && !cluster.state[h].remoteWorkDir.isEmpty() ? cluster.state[h].remoteWorkDir
                                                                                               : host.effectiveWorkDir();
    const QString runDir = work + QStringLiteral("/runs/") + (spec.runId.isEmpty() ? QStringLiteral("<run-id>") : spec.runId);
    for (int l = 0; l < cluster.processesPerHost(); ++l) {
      const QStringList argv = rankCommand(spec, cluster, h, l, runDir, runDir + QStringLiteral("/launch-config.yaml"), work);
      out << QStringLiteral("%1: cd %2 && nohup setsid %3").arg(host.displayName(), shellQuote(runDir), shellJoin(argv));
    }
  }
  return out;
}

QString SshLauncher::torchrunCommand(const LaunchSpec& spec, const ClusterSpec& cluster) {
  LaunchSpec s = spec;
  if (s.command.isEmpty() && QFileInfo(spec.configPath).isFile()) s.command = LocalLauncher::engineCommand(spec);
  if (s.command.isEmpty()) s.command = QStringLiteral("train");
  const QString master = cluster.masterAddr.isEmpty() && !cluster.hosts.isEmpty()
                             ? cluster.hosts.first().effectiveRendezvousAddress()
                             : cluster.masterAddr;
  const int port = cluster.masterPort > 0 ? cluster.masterPort : 29500;
  QStringList argv{QStringLiteral("torchrun"),
                   QStringLiteral("--nnodes=%1").arg(std::max<qsizetype>(1, cluster.hosts.size())),
                   QStringLiteral("--nproc-per-node=%1").arg(cluster.processesPerHost()),
                   QStringLiteral("--rdzv-backend=c10d"),
                   QStringLiteral("--rdzv-endpoint=%1:%2").arg(master).arg(port),
                   QStringLiteral("--no-python"),
                   cluster.hosts.isEmpty() ? QStringLiteral("fathom-engine") : cluster.hosts.first().effectiveEnginePath(),
                   s.command,
                   spec.configPath};
  for (const QString& o : spec.overrides) argv << QStringLiteral("--set") << o;
  argv << QStringLiteral("--run-dir") << (spec.runDir.isEmpty() ? QStringLiteral("runs/") + spec.runId : spec.runDir);
  // torchrun sets RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR and MASTER_PORT; the engine reads them.
  return QStringLiteral("# run this on every node (torchrun assigns the ranks)\n") + shellJoin(argv) + QLatin1Char('\n');
}

QString SshLauncher::slurmScript(const LaunchSpec& spec, const ClusterSpec& cluster) {
  LaunchSpec s = spec;
  if (s.command.isEmpty() && QFileInfo(spec.configPath).isFile()) s.command = LocalLauncher::engineCommand(spec);
  if (s.command.isEmpty()) s.command = QStringLiteral("train");
  const int gpus = cudaCount(cluster.devicesOf(0));
  const QString runDir = spec.runDir.isEmpty() ? QStringLiteral("runs/") + spec.runId : spec.runDir;
  QStringList engineArgv{cluster.hosts.isEmpty() ? QStringLiteral("fathom-engine") : cluster.hosts.first().effectiveEnginePath(),
                         s.command, spec.configPath};
  for (const QString& o : spec.overrides) engineArgv << QStringLiteral("--set") << o;
  engineArgv << QStringLiteral("--run-dir") << runDir << QStringLiteral("--run-id") << spec.runId;
  QString out;
  out += QStringLiteral("#!/bin/bash\n");
  out += QStringLiteral("# Exported from Fathom: the same launch as the SSH cluster launch, for Slurm.\n");
  out += QStringLiteral("#SBATCH --job-name=%1\n").arg(shellQuote(spec.name.isEmpty() ? spec.runId : spec.name));
  out += QStringLiteral("#SBATCH --nodes=%1\n").arg(std::max<qsizetype>(1, cluster.hosts.size()));
  out += QStringLiteral("#SBATCH --ntasks-per-node=%1\n").arg(cluster.processesPerHost());
  if (gpus > 0) out += QStringLiteral("#SBATCH --gpus-per-node=%1\n").arg(gpus);
  out += QStringLiteral("#SBATCH --output=%1\n").arg(shellQuote(runDir + QStringLiteral("/slurm-%j.out")));
  out += QStringLiteral("set -euo pipefail\n");
  out += QStringLiteral("export MASTER_ADDR=$(scontrol show hostnames \"$SLURM_JOB_NODELIST\" | head -n 1)\n");
  out += QStringLiteral("export MASTER_PORT=%1\n").arg(cluster.masterPort > 0 ? cluster.masterPort : 29500);
  out += QStringLiteral("export OMP_WAIT_POLICY=PASSIVE\n");
  out += QStringLiteral("mkdir -p %1\n").arg(shellQuote(runDir));
  out += QStringLiteral("srun --kill-on-bad-exit=1 bash -c 'RANK=$SLURM_PROCID WORLD_SIZE=$SLURM_NTASKS LOCAL_RANK=$SLURM_LOCALID "
                        "LOCAL_WORLD_SIZE=$SLURM_NTASKS_PER_NODE exec \"$@\" --set distributed.world_size=$SLURM_NTASKS "
                        "--set distributed.rank=$SLURM_PROCID' fathom-rank %1\n")
             .arg(shellJoin(engineArgv));
  return out;
}

// ---- the worker ---------------------------------------------------------------------------------

class RemoteJob {
 public:
  struct Host {
    std::unique_ptr<SshSession> session;
    std::unique_ptr<SshChannel> stream;
    // Every rank's stderr file of this host through one channel (sshd allows few sessions per
    // connection: 10 by default), each line prefixed with its rank.
    std::unique_ptr<SshChannel> errStream;
    QByteArray errPartial;
    QByteArray partial;
    qint64 lastOkMs = 0, lastTryMs = 0;
    QString lostError;
    bool dead = false;
  };

  RemoteJob(SshLauncher* launcher, LaunchSpec spec, ClusterSpec cluster, bool reattach)
      : m_launcher(launcher), m_spec(std::move(spec)), m_cluster(std::move(cluster)), m_reattach(reattach) {
    m_callbacks = launcher->m_callbacks;
    m_graceMs = launcher->m_graceMs;
    m_connectTimeoutMs = launcher->m_connectTimeoutMs;
    m_runId = m_spec.runId;
    m_runDir = m_spec.runDir;
  }
  ~RemoteJob() {
    m_detach = true;
    if (m_thread.joinable()) m_thread.join();
  }
  void startThread() { m_thread = std::thread([this] { run(); }); }

  std::atomic<bool> m_stop{false}, m_kill{false}, m_detach{false};

 private:
  qint64 now() const { return QDateTime::currentMSecsSinceEpoch(); }
  QString hostLabel(int h) const {
    const HostConfig& c = m_cluster.hosts.at(h);
    return c.displayName() == c.address ? c.address : QStringLiteral("%1 (%2)").arg(c.displayName(), c.address);
  }

  void emitProgress(const QString& msg) {
    QPointer<SshLauncher> l = m_launcher;
    const QString id = m_runId;
    QMetaObject::invokeMethod(m_launcher, [l, id, msg] { if (l) Q_EMIT l->progress(id, msg); }, Qt::QueuedConnection);
  }
  void emitFinished(bool ok, const QString& error) {
    QPointer<SshLauncher> l = m_launcher;
    const QString id = m_runId;
    QMetaObject::invokeMethod(
        m_launcher,
        [l, id, ok, error] {
          if (!l) return;
          l->jobDone(id);
          Q_EMIT l->finished(id, ok, error);
        },
        Qt::QueuedConnection);
  }

  // timeoutMs 0 = the launcher's connect timeout.
  bool connectHost(int h, QString* error, int timeoutMs = 0) {
    Host& host = m_hosts[h];
    host.lastTryMs = now();
    auto s = std::make_unique<SshSession>();
    s->setKnownHostsFile(m_cluster.knownHostsFile);
    s->setCallbacks(m_callbacks);
    s->setConnectTimeoutMs(timeoutMs > 0 ? timeoutMs : m_connectTimeoutMs);
    if (!s->connect(m_cluster.hosts.at(h))) {
      *error = s->lastError();
      return false;
    }
    if (m_monitoring) s->setOperationTimeoutMs(pollTimeoutMs());
    host.session = std::move(s);
    host.lastOkMs = now();
    return true;
  }
  // While the ranks run: a host whose link went away does not answer at all (TCP keeps trying), so
  // every step waits at most this long and a lost host is noticed well within the grace period.
  int pollTimeoutMs() const { return std::clamp(m_graceMs / 4, 1000, 5000); }
  void startMonitoring() {
    m_monitoring = true;
    for (auto& host : m_hosts)
      if (host.session) host.session->setOperationTimeoutMs(pollTimeoutMs());
  }

  SshExecResult execOn(int h, const QString& cmd, int timeoutMs = 30000) {
    Host& host = m_hosts[h];
    if (!host.session) {
      SshExecResult r;
      r.error = QStringLiteral("not connected");
      return r;
    }
    SshExecResult r = host.session->exec(cmd, timeoutMs);
    if (r.ok) host.lastOkMs = now();
    return r;
  }

  bool launch(QString* error);
  void openStream(int h);
  void pumpStreams(int waitMs);
  void appendLines(int h, const QByteArray& chunk);
  void appendStderr(int h, int rank, const QByteArray& chunk);
  void closeStreams(Host& host) {
    host.errStream.reset();
    host.errPartial.clear();
    host.stream.reset();
  }
  void detectSocketInterfaces();
  void pollStatus();
  void signalRanks(const QString& sig, bool group, const QSet<int>& skipRanks = {});
  void finishUp();
  void saveState(bool force = false);
  void run();

  SshLauncher* m_launcher;
  LaunchSpec m_spec;
  ClusterSpec m_cluster;
  bool m_reattach;
  SshCallbacks m_callbacks;
  int m_graceMs;
  int m_connectTimeoutMs = 10000;
  QString m_runId, m_runDir;
  std::thread m_thread;
  std::vector<Host> m_hosts;
  QMap<int, qint64> m_lastSeq;                  // rank -> highest seq mirrored
  QMap<int, QString> m_rankState;               // rank -> "alive" | "exit N" | "gone" | "lost"
  QMap<int, QString> m_rankWhy;                 // rank -> why it counts as ended badly
  qint64 m_savedAtMs = 0;
  bool m_dirtyState = false;
  qint64 m_termSentMs = 0, m_killSentMs = 0;
  QString m_failure;  // first failure, naming host and rank
  bool m_monitoring = false;  // the ranks run: short SSH timeouts (pollTimeoutMs())
};

void RemoteJob::saveState(bool force) {
  if (!force && (!m_dirtyState || now() - m_savedAtMs < 1000)) return;
  QString err;
  if (!m_cluster.save(m_runDir, &err)) qWarning("fathom: %s", qPrintable(err));
  m_savedAtMs = now();
  m_dirtyState = false;
}

bool RemoteJob::launch(QString* error) {
  const int nHosts = static_cast<int>(m_cluster.hosts.size());
  const int perHost = m_cluster.processesPerHost();
  QList<RemoteHostState> previous = m_cluster.state;
  m_cluster.state.clear();
  for (int h = 0; h < nHosts; ++h) {
    emitProgress(QStringLiteral("%1: connecting").arg(hostLabel(h)));
    QString err;
    if (!connectHost(h, &err)) {
      *error = QStringLiteral("host %1: %2").arg(hostLabel(h), err);
      return false;
    }
    const HostConfig& hc = m_cluster.hosts.at(h);
    const SshExecResult w = execOn(h, QStringLiteral("mkdir -p %1 && cd %1 && pwd").arg(shellQuote(hc.effectiveWorkDir())));
    if (!w.ok || w.exitCode != 0) {
      *error = QStringLiteral("host %1: cannot create the work directory %2: %3%4")
                   .arg(hostLabel(h), hc.effectiveWorkDir(), w.error, QString::fromUtf8(w.err).trimmed());
      return false;
    }
    RemoteHostState st;
    st.remoteWorkDir = QString::fromUtf8(w.out).trimmed();
    st.remoteRunDir = st.remoteWorkDir + QStringLiteral("/runs/") + m_runId;
    // A resumed run continues the remote events.jsonl: mirror only what is new.
    if (h < previous.size() && previous[h].remoteRunDir == st.remoteRunDir) st.eventsOffset = previous[h].eventsOffset;
    if (hc.enginePath.isEmpty()) m_cluster.hosts[h].enginePath = st.remoteWorkDir + QStringLiteral("/bin/fathom-engine");
    m_cluster.state.append(st);

    Provisioner prov(*m_hosts[h].session, m_cluster.hosts.at(h), m_spec.engineBinary);
    auto progress = [&](const QString& what, qint64 done, qint64 total) {
      static thread_local qint64 lastMs = 0;
      if (now() - lastMs > 500 || done == total) {
        lastMs = now();
        emitProgress(QStringLiteral("%1: uploading %2 %3%").arg(hostLabel(h), what).arg(total > 0 ? 100 * done / total : 100));
      }
      return !m_detach.load() && !m_kill.load() && !m_stop.load();
    };
    if (m_cluster.provisionEngine) {
      const ProvisionResult pr = prov.provisionEngine(progress);
      if (!pr.ok) {
        *error = pr.error;
        return false;
      }
      for (const QString& n : pr.notes) emitProgress(n);
    }
    const QString remoteConfig = st.remoteRunDir + QStringLiteral("/launch-config.yaml");
    const ProvisionResult pr = prov.provisionRun(m_spec.configPath, remoteConfig, m_cluster.uploadData, progress);
    if (!pr.ok) {
      *error = pr.error;
      return false;
    }
    // Stale status files of an earlier attempt would read as this attempt's end.
    QStringList stale;
    for (int l = 0; l < perHost; ++l) {
      const int rank = h * perHost + l;
      stale << shellQuote(st.remoteRunDir + QLatin1Char('/') + pidFile(rank)) << shellQuote(st.remoteRunDir + QLatin1Char('/') + exitFile(rank));
    }
    execOn(h, QStringLiteral("rm -f ") + stale.join(QLatin1Char(' ')));
  }

  // A free port on rank 0's host: not among its listening TCP sockets.
  {
    const SshExecResult r = execOn(0, QStringLiteral("cat /proc/net/tcp /proc/net/tcp6 2>/dev/null"));
    QSet<int> used;
    for (const QString& line : QString::fromUtf8(r.out).split(QLatin1Char('\n'))) {
      const QStringList f = line.simplified().split(QLatin1Char(' '));
      if (f.size() < 4 || !f.at(1).contains(QLatin1Char(':'))) continue;
      used.insert(f.at(1).section(QLatin1Char(':'), -1).toInt(nullptr, 16));
    }
    int port = 0;
    for (int i = 0; i < 200 && port == 0; ++i) {
      const int p = 29500 + static_cast<int>(QRandomGenerator::global()->bounded(20000));
      if (!used.contains(p)) port = p;
    }
    m_cluster.masterPort = port;
    m_cluster.masterAddr = m_cluster.hosts.first().effectiveRendezvousAddress();
  }
  if (m_cluster.worldSize() > 1) detectSocketInterfaces();
  saveState(true);

  // Start every rank; each host answers with "rank pid" lines once the wrappers wrote their pids.
  QList<RankRecord> records;
  for (int h = 0; h < nHosts; ++h) {
    RemoteHostState& st = m_cluster.state[h];
    const QString remoteConfig = st.remoteRunDir + QStringLiteral("/launch-config.yaml");
    QStringList lines{QStringLiteral("cd %1 || exit 1").arg(shellQuote(st.remoteRunDir))};
    QStringList waits;
    for (int l = 0; l < perHost; ++l) {
      const int rank = h * perHost + l;
      const QStringList argv = SshLauncher::rankCommand(m_spec, m_cluster, h, l, st.remoteRunDir, remoteConfig, st.remoteWorkDir);
      const QString err = run_files::stderrFileForRank(rank);
      lines << QStringLiteral("nohup setsid sh -c %1 fathom-rank %2 %3 %4 %5 </dev/null >/dev/null 2>&1 &")
                   .arg(shellQuote(QString::fromLatin1(kWrapper)), shellQuote(pidFile(rank)), shellQuote(exitFile(rank)),
                        shellQuote(err), shellJoin(argv));
      waits << QStringLiteral("i=0; while [ ! -s %1 ] && [ $i -lt 100 ]; do sleep 0.05; i=$((i+1)); done; echo %2 $(cat %1 2>/dev/null)")
                   .arg(shellQuote(pidFile(rank)))
                   .arg(rank);
    }
    const SshExecResult r = execOn(h, (lines + waits).join(QLatin1Char('\n')), 30000);
    if (!r.ok || r.exitCode != 0) {
      *error = QStringLiteral("host %1: starting the ranks failed: %2%3").arg(hostLabel(h), r.error, QString::fromUtf8(r.err).trimmed());
      return false;
    }
    QMap<int, qint64> pids;
    for (const QString& line : QString::fromUtf8(r.out).split(QLatin1Char('\n'), Qt::SkipEmptyParts)) {
      const QStringList f = line.split(QLatin1Char(' '), Qt::SkipEmptyParts);
      if (f.size() == 2) pids.insert(f[0].toInt(), f[1].toLongLong());
    }
    for (int l = 0; l < perHost; ++l) {
      const int rank = h * perHost + l;
      const qint64 pid = pids.value(rank);
      if (pid <= 0) {
        *error = QStringLiteral("rank %1 on host %2 did not start (no pid file in %3); check that sh and setsid exist there")
                     .arg(rank)
                     .arg(hostLabel(h), st.remoteRunDir);
        return false;
      }
      st.ranks.append(RemoteRank{rank, l, pid});
      records.append(RankRecord{rank, pid, pid, m_cluster.hosts.at(h).id});
      m_rankState.insert(rank, QStringLiteral("alive"));
    }
  }
  saveState(true);
  QPointer<SshLauncher> l = m_launcher;
  const QString id = m_runId;
  QMetaObject::invokeMethod(m_launcher, [l, id, records] { if (l) Q_EMIT l->started(id, records); }, Qt::QueuedConnection);
  return true;
}

// Per host, the interface Gloo should use: the one carrying the host's rendezvous address, else
// the one its route to MASTER_ADDR leaves by (not loopback). Left empty when neither is found (the
// engine then picks by host name); a user's GLOO_SOCKET_IFNAME overrides it (rankCommand()).
void RemoteJob::detectSocketInterfaces() {
  for (int h = 0; h < static_cast<int>(m_hosts.size()); ++h) {
    if (!m_hosts[h].session) continue;
    const QString ifname = findSocketInterface(*m_hosts[h].session, m_cluster.hosts.at(h).effectiveRendezvousAddress(), m_cluster.masterAddr);
    m_cluster.state[h].socketIfname = ifname;
    if (!ifname.isEmpty()) emitProgress(QStringLiteral("%1: ranks use network interface %2").arg(hostLabel(h), ifname));
  }
}

void RemoteJob::openStream(int h) {
  Host& host = m_hosts[h];
  closeStreams(host);
  host.partial.clear();
  if (!host.session) return;
  const RemoteHostState& st = m_cluster.state.at(h);
  // cat returns when the channel closes (or the connection drops), and takes tail with it.
  const QString cmd = QStringLiteral("cd %1 && { tail -c +%2 -F events.jsonl 2>/dev/null & t=$!; cat >/dev/null; kill $t; }")
                          .arg(shellQuote(st.remoteRunDir))
                          .arg(st.eventsOffset + 1);
  host.stream = host.session->openExec(cmd);
  // Each rank's stderr, live, line by line into the local run directory's stderr file of that
  // rank: "<rank> <line>" per line over one channel. When the channel closes, cat returns and
  // `kill 0` ends the command's process group (sshd made it a session of its own): tails and loops.
  QStringList tails;
  for (const RemoteRank& r : st.ranks) {
    if (m_rankState.value(r.rank).startsWith(QLatin1String("exit"))) continue;  // caught up in finishUp()
    tails << QStringLiteral("{ tail -c +%1 -F %2 2>/dev/null | while IFS= read -r l; do printf '%3 %s\\n' \"$l\"; done; } &")
                 .arg(r.stderrOffset + 1)
                 .arg(shellQuote(run_files::stderrFileForRank(r.rank)))
                 .arg(r.rank);
  }
  if (!tails.isEmpty())
    host.errStream = host.session->openExec(QStringLiteral("cd %1 && { %2 cat >/dev/null; kill 0; }").arg(shellQuote(st.remoteRunDir), tails.join(QLatin1Char(' '))));
}

void RemoteJob::appendStderr(int h, int rank, const QByteArray& chunk) {
  if (chunk.isEmpty()) return;
  for (RemoteRank& r : m_cluster.state[h].ranks) {
    if (r.rank != rank) continue;
    QFile f(QDir(m_runDir).filePath(run_files::stderrFileForRank(rank)));
    // A resumed run's first mirror starts the local file afresh from the remote offset 0.
    if (f.open(QIODevice::WriteOnly | (r.stderrOffset == 0 ? QIODevice::Truncate : QIODevice::Append))) f.write(chunk);
    r.stderrOffset += chunk.size();
    m_dirtyState = true;
  }
}

void RemoteJob::appendLines(int h, const QByteArray& chunk) {
  Host& host = m_hosts[h];
  host.partial += chunk;
  const int lastNl = host.partial.lastIndexOf('\n');
  if (lastNl < 0) return;
  const QByteArray complete = host.partial.left(lastNl + 1);
  host.partial.remove(0, lastNl + 1);
  QByteArray out;
  for (const QByteArray& line : complete.split('\n')) {
    if (line.isEmpty()) continue;
    const QJsonObject o = QJsonDocument::fromJson(line).object();
    const int rank = o.value(QStringLiteral("rank")).toInt();
    const qint64 seq = static_cast<qint64>(o.value(QStringLiteral("seq")).toDouble());
    if (seq > 0) {
      if (seq <= m_lastSeq.value(rank, 0)) continue;  // mirrored before a re-attach
      m_lastSeq[rank] = seq;
    }
    out += line + '\n';
  }
  m_cluster.state[h].eventsOffset += complete.size();
  m_dirtyState = true;
  if (out.isEmpty()) return;
  QFile f(QDir(m_runDir).filePath(run_files::eventsFile()));
  if (f.open(QIODevice::WriteOnly | QIODevice::Append)) f.write(out);
}

void RemoteJob::pumpStreams(int waitMs) {
  for (int h = 0; h < static_cast<int>(m_hosts.size()); ++h) {
    Host& host = m_hosts[h];
    if (!host.stream) continue;
    QByteArray out, err;
    if (!host.stream->read(&out, &err, waitMs)) {
      host.lostError = host.stream->error();
      closeStreams(host);
      host.session.reset();
      continue;
    }
    waitMs = 0;  // wait on the first host only
    if (!out.isEmpty()) appendLines(h, out);
    if (host.errStream) {
      QByteArray eo, ee;
      if (!host.errStream->read(&eo, &ee, 0)) {
        host.errStream.reset();  // the status poll notices a lost host
      } else if (!eo.isEmpty()) {
        host.errPartial += eo;
        const int nl = host.errPartial.lastIndexOf('\n');
        if (nl >= 0) {
          QMap<int, QByteArray> perRank;
          for (const QByteArray& line : host.errPartial.left(nl).split('\n')) {
            const int sp = line.indexOf(' ');
            if (sp > 0) perRank[line.left(sp).toInt()] += line.mid(sp + 1) + '\n';
          }
          host.errPartial.remove(0, nl + 1);
          for (auto it = perRank.cbegin(); it != perRank.cend(); ++it) appendStderr(h, it.key(), it.value());
        }
      }
    }
  }
}

void RemoteJob::signalRanks(const QString& sig, bool group, const QSet<int>& skipRanks) {
  for (int h = 0; h < static_cast<int>(m_hosts.size()) && h < m_cluster.state.size(); ++h) {
    QStringList targets;
    for (const RemoteRank& r : m_cluster.state.at(h).ranks) {
      if (skipRanks.contains(r.rank) || r.pid <= 1) continue;
      if (m_rankState.value(r.rank).startsWith(QLatin1String("exit"))) continue;
      targets << (group ? QStringLiteral("-%1").arg(r.pid) : QString::number(r.pid));
    }
    if (targets.isEmpty() || !m_hosts[h].session) continue;
    // pids are numbers we parsed; the signal name is ours.
    execOn(h, QStringLiteral("kill -%1 -- %2 2>/dev/null; true").arg(sig, targets.join(QLatin1Char(' '))), 15000);
  }
}

void RemoteJob::pollStatus() {
  for (int h = 0; h < static_cast<int>(m_hosts.size()); ++h) {
    Host& host = m_hosts[h];
    if (host.dead) continue;
    const RemoteHostState& st = m_cluster.state.at(h);
    bool anyOpen = false;
    for (const RemoteRank& r : st.ranks)
      if (!m_rankState.value(r.rank).startsWith(QLatin1String("exit")) && m_rankState.value(r.rank) != QLatin1String("gone"))
        anyOpen = true;
    if (!anyOpen) continue;
    if (!host.session) {
      if (now() - host.lastTryMs < 2000) {
        // fall through to the grace check below
      } else {
        QString err;
        // Within what is left of the grace period, so a lost host is given up on in time.
        if (host.lastOkMs == 0) host.lastOkMs = now();
        const qint64 left = m_graceMs - (now() - host.lastOkMs);
        const int timeout = static_cast<int>(std::clamp<qint64>(left, 1000, std::min(m_connectTimeoutMs, 5000)));
        if (connectHost(h, &err, timeout)) {
          emitProgress(QStringLiteral("%1: reconnected").arg(hostLabel(h)));
          openStream(h);
        } else {
          host.lostError = err;
        }
      }
      if (!host.session) {
        if (host.lastOkMs == 0) host.lastOkMs = now();
        if (now() - host.lastOkMs > m_graceMs) {
          host.dead = true;
          QStringList ranks;
          for (const RemoteRank& r : st.ranks) {
            if (m_rankState.value(r.rank).startsWith(QLatin1String("exit"))) continue;
            m_rankState[r.rank] = QStringLiteral("lost");
            ranks << QString::number(r.rank);
          }
          if (m_failure.isEmpty())
            m_failure = QStringLiteral("host %1 (rank %2) has been unreachable for %3 s: %4")
                            .arg(hostLabel(h), ranks.join(QStringLiteral(", ")))
                            .arg(m_graceMs / 1000)
                            .arg(host.lostError.isEmpty() ? QStringLiteral("connection lost") : host.lostError);
        }
        continue;
      }
    }
    QStringList checks;
    for (const RemoteRank& r : st.ranks)
      checks << QStringLiteral("if [ -f %2 ]; then echo \"%1 exit $(cat %2)\"; elif [ -f %3 ] && kill -0 \"$(cat %3)\" 2>/dev/null; "
                               "then echo \"%1 alive\"; else echo \"%1 gone\"; fi")
                    .arg(r.rank)
                    .arg(shellQuote(exitFile(r.rank)), shellQuote(pidFile(r.rank)));
    const SshExecResult res =
        execOn(h, QStringLiteral("cd %1 || exit 3; ").arg(shellQuote(st.remoteRunDir)) + checks.join(QStringLiteral("; ")), pollTimeoutMs());
    if (!res.ok) {
      host.lostError = res.error;
      closeStreams(host);
      host.session.reset();
      continue;
    }
    for (const QString& line : QString::fromUtf8(res.out).split(QLatin1Char('\n'), Qt::SkipEmptyParts)) {
      const int rank = line.section(QLatin1Char(' '), 0, 0).toInt();
      const QString state = line.section(QLatin1Char(' '), 1).trimmed();
      if (!m_rankState.contains(rank) || m_rankState.value(rank) == state) continue;
      m_rankState[rank] = state;
      const bool bad = state == QLatin1String("gone") || (state.startsWith(QLatin1String("exit")) && state != QLatin1String("exit 0"));
      if (!bad) continue;
      const int code = state.section(QLatin1Char(' '), 1).toInt();
      QString how;
      if (state == QLatin1String("gone")) how = QStringLiteral("vanished without an exit status (killed, or the host rebooted)");
      else if (code > 128) how = QStringLiteral("was killed by signal %1").arg(code - 128);
      else how = QStringLiteral("exited with code %1").arg(code);
      m_rankWhy[rank] = how;
      const bool expected = (m_stop.load() || m_kill.load()) && (state == QLatin1String("gone") || code > 128);
      if (m_failure.isEmpty() && !expected)
        m_failure = QStringLiteral("rank %1 on host %2 %3").arg(rank).arg(hostLabel(h), how);
    }
  }
}

void RemoteJob::finishUp() {
  // The last records: the ranks have ended, tail delivers what is left within moments.
  QElapsedTimer quiet;
  quiet.start();
  qint64 before = -1;
  while (quiet.elapsed() < 3000) {
    qint64 total = 0;
    pumpStreams(100);
    for (const auto& s : m_cluster.state) total += s.eventsOffset;
    if (total == before && quiet.elapsed() > 400) break;
    before = total;
  }
  for (auto& host : m_hosts) closeStreams(host);
  // Whatever the streams had not delivered yet (tail -F polls once a second where inotify is
  // missing, so the last records can lag the exit files): read on from the mirrored offset.
  for (int h = 0; h < static_cast<int>(m_hosts.size()); ++h) {
    if (!m_hosts[h].session) continue;
    const SshExecResult rest = execOn(h, QStringLiteral("cd %1 && tail -c +%2 events.jsonl 2>/dev/null | head -c 67108864")
                                             .arg(shellQuote(m_cluster.state.at(h).remoteRunDir))
                                             .arg(m_cluster.state.at(h).eventsOffset + 1),
                                      15000);
    m_hosts[h].partial.clear();  // the offset counts complete lines only: the partial one comes again
    if (rest.ok && !rest.out.isEmpty()) appendLines(h, rest.out);
  }
  // Each rank's stderr (the last lines) and how it ended, in the local run directory.
  QString statusText;
  QString tails;
  for (int h = 0; h < static_cast<int>(m_hosts.size()); ++h) {
    for (const RemoteRank& r : m_cluster.state.at(h).ranks) {
      const QString name = run_files::stderrFileForRank(r.rank);
      if (m_hosts[h].session) {
        // What the live mirror has not delivered yet (at most 4 MiB more; the rest stays remote).
        const SshExecResult rest = execOn(h, QStringLiteral("cd %1 && tail -c +%2 %3 2>/dev/null | head -c 4194304")
                                                 .arg(shellQuote(m_cluster.state.at(h).remoteRunDir))
                                                 .arg(r.stderrOffset + 1)
                                                 .arg(shellQuote(name)),
                                          15000);
        if (rest.ok) appendStderr(h, r.rank, rest.out);
        const QString tail = run_files::tailOfFile(QDir(m_runDir).filePath(name), 20);
        if (m_rankWhy.contains(r.rank) && !tail.isEmpty())
          tails += QStringLiteral("\n--- last lines of rank %1's stderr on %2 ---\n%3")
                       .arg(r.rank)
                       .arg(hostLabel(h), run_files::tailOfFile(QDir(m_runDir).filePath(name), 20));
      }
      const QString state = m_rankState.value(r.rank);
      int code = state.startsWith(QLatin1String("exit")) ? state.section(QLatin1Char(' '), 1).toInt() : 137;
      if (code > 128) statusText += QStringLiteral("rank=%1 pid=%2 signal=%3\n").arg(r.rank).arg(r.pid).arg(code - 128);
      else statusText += QStringLiteral("rank=%1 pid=%2 exit=%3\n").arg(r.rank).arg(r.pid).arg(code);
    }
  }
  QFile st(QDir(m_runDir).filePath(run_files::exitStatusFile()));
  if (st.open(QIODevice::WriteOnly | QIODevice::Truncate)) st.write(statusText.toUtf8());
  st.close();
  saveState(true);
  for (auto& host : m_hosts) {
    closeStreams(host);
    host.session.reset();
  }
  QString error;
  if (!m_failure.isEmpty()) {
    error = m_failure;
    if (m_termSentMs > 0) error += QStringLiteral("; the other ranks were stopped");
    error += tails;
  }
  emitFinished(m_failure.isEmpty(), error);
}

void RemoteJob::run() {
  m_hosts.resize(static_cast<size_t>(m_cluster.hosts.size()));
  if (m_reattach) {
    m_monitoring = true;
    // What was mirrored already: skip it when the stream repeats it.
    QFile f(QDir(m_runDir).filePath(run_files::eventsFile()));
    if (f.open(QIODevice::ReadOnly)) {
      while (!f.atEnd()) {
        const QJsonObject o = QJsonDocument::fromJson(f.readLine()).object();
        const int rank = o.value(QStringLiteral("rank")).toInt();
        const qint64 seq = static_cast<qint64>(o.value(QStringLiteral("seq")).toDouble());
        if (seq > m_lastSeq.value(rank, 0)) m_lastSeq[rank] = seq;
      }
    }
    for (const RemoteHostState& st : m_cluster.state)
      for (const RemoteRank& r : st.ranks) m_rankState.insert(r.rank, QStringLiteral("alive"));
    for (int h = 0; h < static_cast<int>(m_hosts.size()); ++h) {
      QString err;
      if (connectHost(h, &err)) openStream(h);
      else {
        m_hosts[h].lostError = err;
        m_hosts[h].lastOkMs = now();
      }
    }
  } else {
    QString error;
    if (!launch(&error)) {
      // Whatever did start must not linger.
      signalRanks(QStringLiteral("KILL"), true);
      for (auto& host : m_hosts) {
        closeStreams(host);
        host.session.reset();
      }
      emitFinished(false, error);
      return;
    }
    startMonitoring();
    for (int h = 0; h < static_cast<int>(m_hosts.size()); ++h) openStream(h);
  }

  qint64 lastPoll = 0;
  bool stopSent = false, killSent = false;
  while (!m_detach.load()) {
    pumpStreams(50);
    saveState();
    if (m_kill.load() && !killSent) {
      killSent = true;
      signalRanks(QStringLiteral("KILL"), true);
      lastPoll = 0;
    }
    if (m_stop.load() && !stopSent) {
      stopSent = true;
      m_termSentMs = m_termSentMs ? m_termSentMs : now();
      signalRanks(QStringLiteral("TERM"), false);
      m_termSentMs = now();
      lastPoll = 0;
    }
    if (now() - lastPoll >= 500) {
      lastPoll = now();
      pollStatus();
      bool allEnded = true;
      for (auto it = m_rankState.cbegin(); it != m_rankState.cend(); ++it)
        if (it.value() == QLatin1String("alive")) allEnded = false;
      if (allEnded) break;
      // One rank failed or a host is gone: stop the rest, then kill what does not listen.
      if (!m_failure.isEmpty() && m_termSentMs == 0) {
        QSet<int> skip;
        for (auto it = m_rankState.cbegin(); it != m_rankState.cend(); ++it)
          if (it.value() != QLatin1String("alive")) skip.insert(it.key());
        m_termSentMs = now();
        signalRanks(QStringLiteral("TERM"), false, skip);
      }
      const qint64 killAfter = m_stop.load() && m_failure.isEmpty() ? 30000 : 10000;
      if (m_termSentMs > 0 && m_killSentMs == 0 && now() - m_termSentMs > killAfter) {
        m_killSentMs = now();
        signalRanks(QStringLiteral("KILL"), true);
      }
    }
  }
  if (m_detach.load()) {
    saveState(true);
    for (auto& host : m_hosts) {
      closeStreams(host);
      host.session.reset();
    }
    return;
  }
  finishUp();
}

// ---- SshLauncher --------------------------------------------------------------------------------

SshLauncher::SshLauncher(QObject* parent) : QObject(parent) { registerMetaTypes(); }

SshLauncher::~SshLauncher() {
  for (auto& j : m_jobs) j->m_detach = true;
  m_jobs.clear();  // joins the threads
}

bool SshLauncher::start(const LaunchSpec& spec, const ClusterSpec& cluster, QString* error) {
  auto fail = [&](const QString& why) {
    if (error) *error = why;
    return false;
  };
  if (spec.runId.isEmpty() || spec.runDir.isEmpty()) return fail(QStringLiteral("a cluster launch needs a run id and a local run directory"));
  if (m_jobs.contains(spec.runId)) return fail(QStringLiteral("run %1 is already running").arg(spec.runId));
  if (cluster.hosts.isEmpty()) return fail(QStringLiteral("no hosts chosen; pick hosts or a host group"));
  if (!QFileInfo(spec.configPath).isFile()) return fail(QStringLiteral("config file %1 does not exist").arg(spec.configPath));
  QSet<QString> ids;
  for (const HostConfig& h : cluster.hosts) {
    if (h.address.isEmpty()) return fail(QStringLiteral("host %1 has no address").arg(h.displayName()));
    if (ids.contains(h.id)) return fail(QStringLiteral("host %1 is listed twice").arg(h.displayName()));
    ids.insert(h.id);
  }
  if (!cluster.hostDevices.isEmpty()) {
    // One process per chosen GPU: every host needs the same number (ranks are numbered host by host).
    const int first = cudaCount(cluster.devicesOf(0));
    for (int h = 1; h < cluster.hosts.size(); ++h)
      if (cudaCount(cluster.devicesOf(h)) != first)
        return fail(QStringLiteral("choose the same number of GPUs on every host (%1 has %2, %3 has %4)")
                        .arg(cluster.hosts.first().displayName())
                        .arg(first)
                        .arg(cluster.hosts.at(h).displayName())
                        .arg(cudaCount(cluster.devicesOf(h))));
  }
  if (cluster.processesPerHost() < 1 || cluster.processesPerHost() > 64)
    return fail(QStringLiteral("%1 processes per host is out of range (1..64)").arg(cluster.processesPerHost()));
  if (!QDir().mkpath(spec.runDir)) return fail(QStringLiteral("cannot create the run directory %1").arg(spec.runDir));
  ClusterSpec c = cluster;
  ClusterSpec previous;
  if (ClusterSpec::load(spec.runDir, &previous)) c.state = previous.state;  // resume: keep mirror offsets
  QFile::remove(QDir(spec.runDir).filePath(run_files::exitStatusFile()));
  LaunchSpec s = spec;
  s.configPath = QFileInfo(spec.configPath).absoluteFilePath();
  auto job = std::make_shared<RemoteJob>(this, s, c, false);
  m_jobs.insert(spec.runId, job);
  job->startThread();
  return true;
}

bool SshLauncher::reattach(const QString& runId, const QString& runDir, QString* error) {
  if (m_jobs.contains(runId)) return true;
  ClusterSpec c;
  if (!ClusterSpec::load(runDir, &c, error)) return false;
  if (c.state.size() != c.hosts.size()) {
    if (error) *error = QStringLiteral("%1 does not record where the ranks run (the launch did not get that far)").arg(runDir);
    return false;
  }
  LaunchSpec s;
  s.runId = runId;
  s.runDir = runDir;
  auto job = std::make_shared<RemoteJob>(this, s, c, true);
  m_jobs.insert(runId, job);
  job->startThread();
  return true;
}

bool SshLauncher::stop(const QString& runId) {
  auto j = m_jobs.value(runId);
  if (!j) return false;
  j->m_stop = true;
  return true;
}

bool SshLauncher::kill(const QString& runId) {
  auto j = m_jobs.value(runId);
  if (!j) return false;
  j->m_kill = true;
  return true;
}

void SshLauncher::detach(const QString& runId) {
  auto j = m_jobs.take(runId);
  if (j) j->m_detach = true;
  // The shared_ptr's destructor joins the thread.
}

void SshLauncher::jobDone(const QString& runId) {
  auto j = m_jobs.take(runId);
  // The thread has returned (it posted this as its last act); join it off the hot path.
  if (j) j.reset();
}

}  // namespace fathom::cluster
