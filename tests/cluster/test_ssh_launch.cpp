// Multi-node launches over SSH through the job queue: two "hosts" in network namespaces of their
// own (own addresses, own sshd, distinct work directories on the shared file system), the stand-in
// engine (fake_engine.cpp) as the remote engine. Covers rendezvous environment, the mirror of
// remote events into the local ingest, a killed rank failing the job (naming host and rank, other
// rank stopped), a failing rank's stderr, stop reaching every rank, re-attach after the workbench
// went away, host/provision/probe bookkeeping, and shell metacharacters that must not inject.
#include <QtTest>

#include "cluster/hosts/HostProbe.h"
#include "cluster/hosts/Provisioner.h"
#include "cluster/hosts/ShellQuote.h"
#include "cluster/jobs/JobQueue.h"
#include "cluster/workspace/HostRepository.h"
#include "test_ssh_fixture.h"

using namespace fathom::cluster;

class TestSshLaunch : public QObject {
  Q_OBJECT

  QTemporaryDir m_tmp;
  std::unique_ptr<ssh_test::SshNetwork> m_net;
  std::unique_ptr<ssh_test::ClientKey> m_key;
  std::vector<std::unique_ptr<ssh_test::TestSshd>> m_sshd;
  QString m_knownHosts, m_config;
  int m_wsCount = 0;

  HostConfig host(int i, const QString& workDir = QString()) const {
    HostConfig h;
    h.id = QStringLiteral("node%1").arg(i);
    h.address = m_net->addresses().at(i);
    h.port = 22;
    h.user = QStringLiteral("root");
    h.auth = ssh_auth::key;
    h.identityFile = m_key->privateKey;
    h.workDir = workDir.isEmpty() ? m_tmp.filePath(QStringLiteral("work%1").arg(i)) : workDir;
    h.enginePath = QStringLiteral(FAKE_ENGINE_PATH);
    return h;
  }
  ClusterSpec cluster(int hosts = 2) const {
    ClusterSpec c;
    for (int i = 0; i < hosts; ++i) c.hosts << host(i);
    c.procsPerHost = 1;
    c.devices = {QStringLiteral("cpu")};
    c.knownHostsFile = m_knownHosts;
    return c;
  }
  LaunchSpec spec(const QStringList& overrides, const QString& name = QStringLiteral("ssh")) const {
    LaunchSpec s;
    s.name = name;
    s.configPath = m_config;
    s.overrides = overrides;
    s.engineBinary = QStringLiteral(FAKE_ENGINE_PATH);
    return s;
  }
  QString openWorkspace(Workspace& ws) {
    QString err;
    const QString dir = m_tmp.filePath(QStringLiteral("ws%1").arg(++m_wsCount));
    if (!ws.open(dir, &err)) return err;
    return {};
  }
  static QString status(Workspace& ws, const QString& id) { return ws.runs().get(id).value_or(RunRecord{}).status; }
  static QByteArray readFile(const QString& path) {
    QFile f(path);
    return f.open(QIODevice::ReadOnly) ? f.readAll() : QByteArray();
  }
  // Records of `rank` in the local mirror: (count, duplicates of (rank, seq)).
  static QPair<int, int> mirrored(const QString& runDir, int rank) {
    int n = 0, dup = 0;
    QSet<qint64> seen;
    for (const QByteArray& line : readFile(runDir + QStringLiteral("/events.jsonl")).split('\n')) {
      const QJsonObject o = QJsonDocument::fromJson(line).object();
      if (o.isEmpty() || o.value(QStringLiteral("rank")).toInt() != rank) continue;
      ++n;
      const qint64 seq = static_cast<qint64>(o.value(QStringLiteral("seq")).toDouble());
      if (seen.contains(seq)) ++dup;
      seen.insert(seq);
    }
    return {n, dup};
  }

 private Q_SLOTS:
  void initTestCase() {
    if (const QString why = ssh_test::canUseNetns(); !why.isEmpty()) QSKIP(qPrintable(why));
    m_net = std::make_unique<ssh_test::SshNetwork>(2);
    QVERIFY2(m_net->error().isEmpty(), qPrintable(m_net->error()));
    m_key = std::make_unique<ssh_test::ClientKey>();
    QStringList lines;
    for (int i = 0; i < 2; ++i) {
      m_sshd.push_back(std::make_unique<ssh_test::TestSshd>(m_net->addresses().at(i), m_key->publicKey, m_net->names().at(i), 22));
      QString err;
      QVERIFY2(m_sshd.back()->start(&err), qPrintable(err));
      lines << QStringLiteral("%1 %2").arg(m_net->addresses().at(i), m_sshd.back()->knownHostsLine().section(QLatin1Char(' '), 1));
    }
    m_knownHosts = m_tmp.filePath(QStringLiteral("known_hosts"));
    QFile kh(m_knownHosts);
    QVERIFY(kh.open(QIODevice::WriteOnly));
    kh.write(lines.join(QLatin1Char('\n')).toUtf8() + '\n');
    kh.close();
    m_config = m_tmp.filePath(QStringLiteral("fake.yaml"));
    QFile f(m_config);
    QVERIFY(f.open(QIODevice::WriteOnly));
    f.write("extends: debug-tiny\n");
  }

  void cleanupTestCase() {
    m_sshd.clear();
    m_net.reset();  // kills whatever the tests left in the namespaces
  }

  void probeProvisionAndRegistry() {
    HostConfig h = host(1, m_tmp.filePath(QStringLiteral("prov work")));
    h.enginePath.clear();  // -> <workDir>/bin/fathom-engine
    SshSession s;
    s.setKnownHostsFile(m_knownHosts);
    QVERIFY2(s.connect(h), qPrintable(s.lastError()));
    HostProbeResult p = probeHost(s, h);
    QVERIFY2(p.ok, qPrintable(p.error));
    QVERIFY(p.cpus >= 1);
    QVERIFY(p.memoryBytes > 0);
    QVERIFY(p.diskFreeBytes > 0);
    QVERIFY(!p.os.isEmpty());
    QVERIFY(p.gpus.isEmpty() || !p.gpus.first().name.isEmpty());
    bool sawOwnAddress = false;
    for (const NetInterface& n : p.interfaces) sawOwnAddress = sawOwnAddress || n.address.startsWith(h.address + QLatin1Char('/'));
    QVERIFY2(sawOwnAddress, "the namespace's own address is among the interfaces");
    QVERIFY(p.engineVersion.isEmpty());
    QVERIFY(!p.engineError.isEmpty());

    Provisioner prov(s, h, QStringLiteral(FAKE_ENGINE_PATH));
    ProvisionResult r = prov.provisionEngine();
    QVERIFY2(r.ok, qPrintable(r.error));
    QVERIFY(!r.engineSkipped);
    r = prov.provisionEngine();
    QVERIFY2(r.ok && r.engineSkipped, qPrintable(r.error));  // same version, same sha256
    p = probeHost(s, h);
    QVERIFY2(p.engineVersion.startsWith(QStringLiteral("fathom-engine 0.0.0-fake")), qPrintable(p.engineVersion + p.engineError));

    const ProvisionResult run = prov.provisionRun(m_config, h.workDir + QStringLiteral("/runs/x/launch-config.yaml"), false);
    QVERIFY2(run.ok, qPrintable(run.error));
    QCOMPARE(readFile(h.workDir + QStringLiteral("/runs/x/launch-config.yaml")), readFile(m_config));
    PreflightOptions po;
    po.knownHostsFile = m_knownHosts;
    const PreflightResult pf = Provisioner::preflight({h}, po);  // the real one: test_ssh_engine.cpp
    QVERIFY(!pf.ok);
    QVERIFY2(pf.error.contains(QStringLiteral("at least two")), qPrintable(pf.error));

    Workspace ws;
    QCOMPARE(openWorkspace(ws), QString());
    HostRepository repo(ws);
    h.groups = {QStringLiteral("lab")};
    h.probe = p;
    QVERIFY2(repo.upsert(h), qPrintable(repo.lastError()));
    HostConfig h0 = host(0);
    h0.groups = {QStringLiteral("lab"), QStringLiteral("solo")};
    QVERIFY2(repo.upsert(h0), qPrintable(repo.lastError()));
    QCOMPARE(repo.list().size(), 2);
    QCOMPARE(repo.groups(), (QStringList{QStringLiteral("lab"), QStringLiteral("solo")}));
    QCOMPARE(repo.groupMembers(QStringLiteral("lab")), (QStringList{QStringLiteral("node0"), QStringLiteral("node1")}));
    const auto back = repo.get(QStringLiteral("node1"));
    QVERIFY(back);
    QCOMPARE(back->probe.engineVersion, p.engineVersion);
    QCOMPARE(back->probe.interfaces.size(), p.interfaces.size());
    QCOMPARE(back->workDir, h.workDir);
    QVERIFY(repo.remove(QStringLiteral("node1")));
    QCOMPARE(repo.groupMembers(QStringLiteral("lab")), QStringList{QStringLiteral("node0")});
    HostConfig bad = h0;
    bad.id = QStringLiteral("x; rm -rf /");
    QVERIFY(!repo.upsert(bad));
  }

  void twoNodesRunAndMirror() {
    Workspace ws;
    QCOMPARE(openWorkspace(ws), QString());
    JobQueue q(&ws);
    QSignalSpy finished(&q, &JobQueue::runFinished);
    const QString id = q.enqueueCluster(spec({QStringLiteral("fake.steps=25")}), cluster());
    QVERIFY2(!id.isEmpty(), qPrintable(q.lastError()));
    QCOMPARE(status(ws, id), QStringLiteral("running"));
    QTRY_VERIFY_WITH_TIMEOUT(finished.size() == 1, 120000);  // (56 s seen with ctest -j2 on 2 loaded cores)
    const RunRecord run = *ws.runs().get(id);
    QVERIFY2(run.status == QStringLiteral("completed"), qPrintable(run.status + QStringLiteral(": ") + run.error));
    QCOMPARE(run.host, QStringLiteral("cluster"));
    QCOMPARE(run.nprocs, 2);
    QCOMPARE(run.lastStep, 25);
    const QList<RankRecord> ranks = ws.runs().ranks(id);
    QCOMPARE(ranks.size(), 2);
    QCOMPARE(ranks[0].host, QStringLiteral("node0"));
    QCOMPARE(ranks[1].host, QStringLiteral("node1"));
    // Both ranks' records came back through SSH into the local events.jsonl, once each.
    for (int r = 0; r < 2; ++r) {
      const auto [n, dup] = mirrored(run.runDir, r);
      QCOMPARE(n, 27);  // hello + 25 metrics + exit
      QCOMPARE(dup, 0);
    }
    // Rendezvous environment, per host, in the remote run directories.
    const QString remote1 = m_tmp.filePath(QStringLiteral("work1/runs/")) + id;
    const QList<QByteArray> env = readFile(remote1 + QStringLiteral("/env.1.txt")).split('\n');
    QVERIFY(env.contains("MASTER_ADDR=" + m_net->addresses().at(0).toUtf8()));
    QVERIFY(env.contains("RANK=1"));
    QVERIFY(env.contains("WORLD_SIZE=2"));
    QVERIFY(env.contains("LOCAL_RANK=0"));
    QVERIFY(env.contains("FATHOM_WORKSPACE=" + m_tmp.filePath(QStringLiteral("work1")).toUtf8()));
    const QByteArray port = [&] {
      for (const QByteArray& e : env)
        if (e.startsWith("MASTER_PORT=")) return e.mid(12);
      return QByteArray();
    }();
    QVERIFY(port.toInt() >= 29500);
    const QList<QByteArray> argv = readFile(remote1 + QStringLiteral("/argv.1.txt")).split('\n');
    QVERIFY(argv.contains("distributed.rank=1"));
    QVERIFY(argv.contains(remote1.toUtf8()));
    QVERIFY(argv.contains((remote1 + QStringLiteral("/launch-config.yaml")).toUtf8()));
    QVERIFY(QFileInfo::exists(run.runDir + QStringLiteral("/cluster.json")));
    QVERIFY(readFile(run.runDir + QStringLiteral("/stderr.rank1.log")).contains("fake engine rank 1 started"));
    // Exports of the same launch.
    LaunchSpec s = spec({});
    s.runId = id;
    const QString slurm = SshLauncher::slurmScript(s, cluster());
    QVERIFY(slurm.contains(QStringLiteral("#SBATCH --nodes=2")));
    QVERIFY(slurm.contains(QStringLiteral("srun")));
    const QString torchrun = SshLauncher::torchrunCommand(s, cluster());
    QVERIFY(torchrun.contains(QStringLiteral("--nnodes=2")));
    QVERIFY(torchrun.contains(QStringLiteral("--rdzv-endpoint=%1:").arg(m_net->addresses().at(0))));
  }

  void killedRankFailsTheJob() {
    Workspace ws;
    QCOMPARE(openWorkspace(ws), QString());
    JobQueue q(&ws);
    QSignalSpy finished(&q, &JobQueue::runFinished);
    const QString id = q.enqueueCluster(spec({}), cluster());
    QVERIFY2(!id.isEmpty(), qPrintable(q.lastError()));
    // Both ranks said hello (the mirror has their records).
    QTRY_VERIFY_WITH_TIMEOUT(mirrored(ws.runs().get(id)->runDir, 1).first > 2 && mirrored(ws.runs().get(id)->runDir, 0).first > 2, 20000);
    const QString remote1 = m_tmp.filePath(QStringLiteral("work1/runs/")) + id;
    qint64 enginePid = 0;
    for (const QByteArray& line : readFile(remote1 + QStringLiteral("/events.jsonl")).split('\n')) {
      const QJsonObject o = QJsonDocument::fromJson(line).object();
      if (o.value(QStringLiteral("type")).toString() == QStringLiteral("hello") && o.value(QStringLiteral("rank")).toInt() == 1)
        enginePid = static_cast<qint64>(o.value(QStringLiteral("data")).toObject().value(QStringLiteral("pid")).toDouble());
    }
    QVERIFY(enginePid > 0);
    QCOMPARE(::kill(static_cast<pid_t>(enginePid), SIGKILL), 0);
    QTRY_VERIFY_WITH_TIMEOUT(finished.size() == 1, 30000);
    const RunRecord run = *ws.runs().get(id);
    QCOMPARE(run.status, QStringLiteral("failed"));
    QVERIFY2(run.error.contains(QStringLiteral("rank 1 on host node1")), qPrintable(run.error));
    QVERIFY2(run.error.contains(QStringLiteral("signal 9")), qPrintable(run.error));
    QVERIFY2(run.error.contains(QStringLiteral("other ranks were stopped")), qPrintable(run.error));
    // Rank 0 on the other host was stopped (its exit record says so).
    QVERIFY(readFile(run.runDir + QStringLiteral("/events.jsonl")).contains("\"stopped\""));
    QVERIFY(readFile(run.runDir + QStringLiteral("/exit_status")).contains("rank=1"));
  }

  void failingRankReportsItsStderr() {
    Workspace ws;
    QCOMPARE(openWorkspace(ws), QString());
    JobQueue q(&ws);
    QSignalSpy finished(&q, &JobQueue::runFinished);
    const QString id = q.enqueueCluster(spec({QStringLiteral("fake.exit=3"), QStringLiteral("fake.exit_rank=1")}), cluster());
    QVERIFY2(!id.isEmpty(), qPrintable(q.lastError()));
    QTRY_VERIFY_WITH_TIMEOUT(finished.size() == 1, 30000);
    const RunRecord run = *ws.runs().get(id);
    QCOMPARE(run.status, QStringLiteral("failed"));
    QVERIFY2(run.error.contains(QStringLiteral("rank 1 on host node1")), qPrintable(run.error));
    QVERIFY2(run.error.contains(QStringLiteral("exited with code 3")), qPrintable(run.error));
    QVERIFY2(run.error.contains(QStringLiteral("fake engine rank 1 exits with 3")), qPrintable(run.error));
  }

  void stderrStreamsLive() {
    Workspace ws;
    QCOMPARE(openWorkspace(ws), QString());
    JobQueue q(&ws);
    QSignalSpy finished(&q, &JobQueue::runFinished);
    const QString id = q.enqueueCluster(spec({}), cluster());
    QVERIFY2(!id.isEmpty(), qPrintable(q.lastError()));
    const QString runDir = ws.runs().get(id)->runDir;
    // While the ranks run (no end in sight: the fake engine's default is 10^6 steps), each rank's
    // stderr is already in the local run directory.
    QTRY_VERIFY_WITH_TIMEOUT(readFile(runDir + QStringLiteral("/stderr.rank1.log")).contains("fake engine rank 1 started"), 20000);
    QTRY_VERIFY_WITH_TIMEOUT(readFile(runDir + QStringLiteral("/stderr.log")).contains("fake engine rank 0 started"), 20000);
    // ... and in the run's log view (the session's Logs lines, rank-prefixed).
    QTRY_VERIFY_WITH_TIMEOUT(q.session(id) && q.session(id)->logs().join(QLatin1Char('\n')).contains(QStringLiteral("fake engine rank 1 started")), 20000);
    QCOMPARE(finished.size(), 0);
    QCOMPARE(status(ws, id), QStringLiteral("running"));
    QVERIFY2(q.stop(id), qPrintable(q.lastError()));
    QTRY_VERIFY_WITH_TIMEOUT(finished.size() == 1, 30000);
    // What came after (the SIGTERM line) followed, once: the mirror continues from its offset.
    const QByteArray err1 = readFile(runDir + QStringLiteral("/stderr.rank1.log"));
    QVERIFY2(err1.contains("rank 1: SIGTERM"), err1.constData());
    QCOMPARE(err1.count("fake engine rank 1 started"), 1);
    const QString remote1 = m_tmp.filePath(QStringLiteral("work1/runs/")) + id;
    QCOMPARE(err1, readFile(remote1 + QStringLiteral("/stderr.rank1.log")));
  }

  // A host whose network goes away mid-run: after the grace period the job fails, naming the host
  // and its rank, and the rank on the host still reachable is stopped.
  void lostLinkFailsTheJob() {
    Workspace ws;
    QCOMPARE(openWorkspace(ws), QString());
    JobQueue q(&ws);
    const int graceMs = 8000;
    q.sshLauncher()->setLostHostGraceMs(graceMs);
    QSignalSpy finished(&q, &JobQueue::runFinished);
    const QString id = q.enqueueCluster(spec({}), cluster());
    QVERIFY2(!id.isEmpty(), qPrintable(q.lastError()));
    const QString runDir = ws.runs().get(id)->runDir;
    QTRY_VERIFY_WITH_TIMEOUT(mirrored(runDir, 1).first > 2 && mirrored(runDir, 0).first > 2, 20000);
    QVERIFY(m_net->setLinkUp(1, false));
    QElapsedTimer t;
    t.start();
    const bool done = QTest::qWaitFor([&] { return finished.size() == 1; }, graceMs + 15000);
    const qint64 took = t.elapsed();
    QVERIFY(m_net->setLinkUp(1, true));
    m_net->killMatching(1, id.toUtf8());  // the cut-off rank never heard of any of this
    QVERIFY2(done, "the job did not end after its host was cut off");
    qInfo("host cut off: the job failed after %lld ms (grace %d ms)", took, graceMs);
    QVERIFY2(took >= graceMs - 500, qPrintable(QStringLiteral("failed after %1 ms, before the grace period").arg(took)));
    QVERIFY2(took <= graceMs + 5000, qPrintable(QStringLiteral("failed only after %1 ms").arg(took)));
    const RunRecord run = *ws.runs().get(id);
    QCOMPARE(run.status, QStringLiteral("failed"));
    QVERIFY2(run.error.contains(QStringLiteral("host node1")) && run.error.contains(QStringLiteral("rank 1")), qPrintable(run.error));
    QVERIFY2(run.error.contains(QStringLiteral("unreachable")), qPrintable(run.error));
    // Rank 0 on the reachable host was stopped, not left running.
    QVERIFY(readFile(run.runDir + QStringLiteral("/events.jsonl")).contains("\"stopped\""));
    QVERIFY(readFile(run.runDir + QStringLiteral("/exit_status")).contains("rank=0"));
  }

  void stopReachesEveryRank() {
    Workspace ws;
    QCOMPARE(openWorkspace(ws), QString());
    JobQueue q(&ws);
    QSignalSpy finished(&q, &JobQueue::runFinished);
    const QString id = q.enqueueCluster(spec({}), cluster());
    QVERIFY2(!id.isEmpty(), qPrintable(q.lastError()));
    QTRY_VERIFY_WITH_TIMEOUT(mirrored(ws.runs().get(id)->runDir, 1).first > 2 && mirrored(ws.runs().get(id)->runDir, 0).first > 2, 20000);
    QVERIFY2(q.stop(id), qPrintable(q.lastError()));
    QTRY_VERIFY_WITH_TIMEOUT(finished.size() == 1, 30000);
    const RunRecord run = *ws.runs().get(id);
    QVERIFY2(run.status == QStringLiteral("stopped"), qPrintable(run.status + QStringLiteral(": ") + run.error));
  }

  void killReachesEveryRank() {
    Workspace ws;
    QCOMPARE(openWorkspace(ws), QString());
    JobQueue q(&ws);
    QSignalSpy finished(&q, &JobQueue::runFinished);
    const QString id = q.enqueueCluster(spec({}), cluster());
    QVERIFY2(!id.isEmpty(), qPrintable(q.lastError()));
    QTRY_VERIFY_WITH_TIMEOUT(mirrored(ws.runs().get(id)->runDir, 1).first > 2, 20000);
    QVERIFY2(q.kill(id), qPrintable(q.lastError()));
    QTRY_VERIFY_WITH_TIMEOUT(finished.size() == 1, 30000);
    QCOMPARE(status(ws, id), QStringLiteral("killed"));
    // Nothing of the run is left on either host.
    for (int i = 0; i < 2; ++i) {
      int rc = 0;
      const QString out = ssh_test::run(QStringLiteral("ip"), {QStringLiteral("netns"), QStringLiteral("pids"), m_net->names().at(i)}, &rc);
      for (const QString& pid : out.split(QLatin1Char('\n'), Qt::SkipEmptyParts)) {
        const QByteArray cmd = readFile(QStringLiteral("/proc/%1/cmdline").arg(pid));
        QVERIFY2(!cmd.contains(id.toUtf8()), cmd.constData());
      }
    }
  }

  void reattachAfterTheWorkbenchWentAway() {
    Workspace ws;
    QCOMPARE(openWorkspace(ws), QString());
    QString id;
    {
      JobQueue q(&ws);
      id = q.enqueueCluster(spec({QStringLiteral("fake.steps=150")}), cluster());
      QVERIFY2(!id.isEmpty(), qPrintable(q.lastError()));
      QTRY_VERIFY_WITH_TIMEOUT(mirrored(ws.runs().get(id)->runDir, 1).first > 5, 20000);
    }  // the workbench quits: the ranks go on
    QCOMPARE(status(ws, id), QStringLiteral("running"));
    QTest::qWait(800);  // records the mirror misses meanwhile
    JobQueue q(&ws);
    QSignalSpy finished(&q, &JobQueue::runFinished);
    QVERIFY(q.runningIds().contains(id));
    QTRY_VERIFY_WITH_TIMEOUT(finished.size() == 1, 30000);
    const RunRecord run = *ws.runs().get(id);
    QVERIFY2(run.status == QStringLiteral("completed"), qPrintable(run.status + QStringLiteral(": ") + run.error));
    for (int r = 0; r < 2; ++r) {
      const auto [n, dup] = mirrored(run.runDir, r);
      QCOMPARE(dup, 0);
      QCOMPARE(n, 152);
    }
    QCOMPARE(run.lastStep, 150);
  }

  void metacharactersDoNotInject() {
    const QString marker = m_tmp.filePath(QStringLiteral("pwned"));
    const QString evil = QStringLiteral("x $(touch %1) `touch %1` ' \" ; touch %1 ;\nnew line & |").arg(marker);
    // Config path, work directory, run name and an override value all carry it.
    const QString cfgDir = m_tmp.filePath(QStringLiteral("cfg ") + evil);
    QVERIFY(QDir().mkpath(cfgDir));
    const QString cfg = cfgDir + QStringLiteral("/run $(touch x).yaml");
    QVERIFY(QFile::copy(m_config, cfg));
    ClusterSpec c = cluster();
    c.hosts[0].workDir = m_tmp.filePath(QStringLiteral("w0 ") + evil);
    c.hosts[1].workDir = m_tmp.filePath(QStringLiteral("w1 ") + evil);
    Workspace ws;
    QCOMPARE(openWorkspace(ws), QString());
    JobQueue q(&ws);
    QSignalSpy finished(&q, &JobQueue::runFinished);
    LaunchSpec s = spec({QStringLiteral("fake.steps=3"), QStringLiteral("fake.note=") + evil}, QStringLiteral("name ") + evil);
    s.configPath = cfg;
    const QString id = q.enqueueCluster(s, c);
    QVERIFY2(!id.isEmpty(), qPrintable(q.lastError()));
    QTRY_VERIFY_WITH_TIMEOUT(finished.size() == 1, 30000);
    const RunRecord run = *ws.runs().get(id);
    QVERIFY2(run.status == QStringLiteral("completed"), qPrintable(run.status + QStringLiteral(": ") + run.error));
    QVERIFY(!QFileInfo::exists(marker));
    QVERIFY(!QFileInfo::exists(QDir::home().filePath(QStringLiteral("x"))));
    // The values arrived intact, as single arguments.
    const QString remote1 = c.hosts[1].workDir + QStringLiteral("/runs/") + id;
    const QByteArray argv = readFile(remote1 + QStringLiteral("/argv.1.txt"));
    QVERIFY2(argv.contains(("fake.note=" + evil).toUtf8()), argv.constData());
    QCOMPARE(readFile(remote1 + QStringLiteral("/launch-config.yaml")), readFile(m_config));
    // The command preview quotes them too.
    for (const QString& line : SshLauncher::commandPreview(s, c)) QVERIFY(line.contains(shellQuote(QStringLiteral("fake.note=") + evil)));
  }

  void unreachableHostFailsClearly() {
    ClusterSpec c = cluster();
    c.hosts[1].address = QStringLiteral("10.255.255.1");  // nobody there
    c.hosts[1].id = QStringLiteral("ghost");
    Workspace ws;
    QCOMPARE(openWorkspace(ws), QString());
    JobQueue q(&ws);
    q.sshLauncher()->setConnectTimeoutMs(2000);
    QSignalSpy finished(&q, &JobQueue::runFinished);
    const QString id = q.enqueueCluster(spec({}), c);
    QVERIFY2(!id.isEmpty(), qPrintable(q.lastError()));
    QTRY_VERIFY_WITH_TIMEOUT(finished.size() == 1, 30000);
    const RunRecord run = *ws.runs().get(id);
    QCOMPARE(run.status, QStringLiteral("failed"));
    QVERIFY2(run.error.contains(QStringLiteral("ghost")) && run.error.contains(QStringLiteral("10.255.255.1")), qPrintable(run.error));
    // node0 was connected first but no rank started anywhere.
    QVERIFY(!QFileInfo::exists(m_tmp.filePath(QStringLiteral("work0/runs/")) + id + QStringLiteral("/rank0.pid")));
  }
};

QTEST_GUILESS_MAIN(TestSshLaunch)
#include "test_ssh_launch.moc"
