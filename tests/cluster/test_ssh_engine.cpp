// The real fathom-engine over SSH: two "hosts" in network namespaces of their own (own addresses,
// own sshd), one CPU process each, data parallel over Gloo. The loss of every step equals the one
// of a single local process with the same global batch (micro 4 × accumulation 2 × 1 rank =
// micro 4 × accumulation 1 × 2 ranks). Preflight (`fathom-engine bench comm` across the hosts)
// reports the bus bandwidth between them. Needs root (sshd, ip netns) and an engine with the
// distributed code (issue 8): $FATHOM_ENGINE_BIN (ctest sets it), else <source>/build/bin.
#include <QtTest>

#include "cluster/hosts/Provisioner.h"
#include "cluster/jobs/JobQueue.h"
#include "cluster/workspace/RunFiles.h"
#include "test_ssh_fixture.h"

using namespace fathom::cluster;

namespace {

// An engine that knows `bench comm` (the distributed engine), or "".
QString findEngine(QString* tried) {
  const QStringList candidates{qEnvironmentVariable("FATHOM_ENGINE_BIN"), QStringLiteral(FATHOM_SOURCE_DIR "/build/bin/fathom-engine")};
  for (const QString& c : candidates) {
    const QFileInfo fi(c);
    *tried += c + QLatin1Char(' ');
    if (c.isEmpty() || !fi.isFile() || !fi.isExecutable() || fi.size() == 0) continue;
    QProcess p;
    p.start(c, {QStringLiteral("bench"), QStringLiteral("comm"), QStringLiteral("--help")});
    if (p.waitForFinished(20000) && p.exitCode() == 0) return fi.absoluteFilePath();
  }
  return {};
}

// step -> loss of `rank`'s metric records.
QMap<int, double> losses(const QString& eventsFile, int rank) {
  QMap<int, double> out;
  QFile f(eventsFile);
  if (!f.open(QIODevice::ReadOnly)) return out;
  for (const QByteArray& line : f.readAll().split('\n')) {
    const QJsonObject o = QJsonDocument::fromJson(line).object();
    if (o.value(QStringLiteral("type")).toString() != QStringLiteral("metric") || o.value(QStringLiteral("rank")).toInt() != rank) continue;
    const QJsonObject d = o.value(QStringLiteral("data")).toObject();
    if (d.contains(QStringLiteral("loss"))) out.insert(d.value(QStringLiteral("step")).toInt(), d.value(QStringLiteral("loss")).toDouble());
  }
  return out;
}

}  // namespace

class TestSshEngine : public QObject {
  Q_OBJECT

  QString m_engine;
  QTemporaryDir m_tmp;
  std::unique_ptr<ssh_test::SshNetwork> m_net;
  std::unique_ptr<ssh_test::ClientKey> m_key;
  std::vector<std::unique_ptr<ssh_test::TestSshd>> m_sshd;
  QString m_knownHosts, m_config;

  HostConfig host(int i) const {
    HostConfig h;
    h.id = QStringLiteral("node%1").arg(i);
    h.address = m_net->addresses().at(i);
    h.port = 22;
    h.user = QStringLiteral("root");
    h.auth = ssh_auth::key;
    h.identityFile = m_key->privateKey;
    h.workDir = m_tmp.filePath(QStringLiteral("work%1").arg(i));
    h.enginePath = m_engine;  // the hosts share this file system
    return h;
  }
  ClusterSpec cluster() const {
    ClusterSpec c;
    for (int i = 0; i < 2; ++i) c.hosts << host(i);
    c.procsPerHost = 1;
    c.devices = {QStringLiteral("cpu")};
    c.knownHostsFile = m_knownHosts;
    return c;
  }

 private Q_SLOTS:
  void initTestCase() {
    if (const QString why = ssh_test::canUseNetns(); !why.isEmpty()) QSKIP(qPrintable(why));
    QString tried;
    m_engine = findEngine(&tried);
    if (m_engine.isEmpty())
      QSKIP(qPrintable(QStringLiteral("no fathom-engine with `bench comm` (issue 8) among: %1; build the fathom-engine target").arg(tried)));
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
    // debug-tiny on the test corpus, small and short; the data and tokenizer are prepared once by
    // rank 0 into an absolute shards_dir both hosts see (one file system).
    m_config = m_tmp.filePath(QStringLiteral("tiny.yaml"));
    QFile f(m_config);
    QVERIFY(f.open(QIODevice::WriteOnly));
    f.write(QStringLiteral("extends: debug-tiny\n"
                           "run: {name: ssh-dp, seed: 7, device: cpu, threads: 1}\n"
                           "data: {train: [%1/corpus], seq_len: 32, shards_dir: %2, validation_fraction: 0.25}\n"
                           "tokenizer: {kind: bpe, vocab_size: 384, path: ''}\n"
                           "train: {micro_batch_size: 4, gradient_accumulation_steps: 1, max_steps: 8, log_interval: 1,"
                           " eval_interval: 0, sample_interval: 0, precision: fp32, grad_clip: 1.0}\n"
                           "optimizer: {lr: 3.0e-3, min_lr: 3.0e-4, warmup_steps: 2, schedule: cosine}\n"
                           "checkpoint: {save_every_steps: 0, save_interval: 0, keep_n_latest: 1}\n"
                           "distributed: {backend: gloo, timeout_s: 60}\n")
                .arg(QStringLiteral(FATHOM_FIXTURES_DIR), m_tmp.filePath(QStringLiteral("shards")))
                .toUtf8());
  }

  void cleanupTestCase() {
    m_sshd.clear();
    m_net.reset();
  }

  void twoNodesGlooEqualsOneProcess() {
    // The reference: one local process, the same global batch through gradient accumulation.
    const QString single = m_tmp.filePath(QStringLiteral("single"));
    {
      QProcess p;
      p.setProcessChannelMode(QProcess::MergedChannels);
      p.start(m_engine, {QStringLiteral("train"), m_config, QStringLiteral("--run-dir"), single, QStringLiteral("--set"),
                         QStringLiteral("train.gradient_accumulation_steps=2"), QStringLiteral("--set"),
                         QStringLiteral("run.workspace=") + m_tmp.filePath(QStringLiteral("ws-single"))});
      QVERIFY(p.waitForFinished(120000));
      QVERIFY2(p.exitCode() == 0, p.readAll().right(3000).constData());
    }
    const QMap<int, double> ref = losses(single + QStringLiteral("/events.jsonl"), 0);
    QCOMPARE(ref.size(), 8);

    Workspace ws;
    QString err;
    QVERIFY2(ws.open(m_tmp.filePath(QStringLiteral("ws")), &err), qPrintable(err));
    JobQueue q(&ws);
    QSignalSpy finished(&q, &JobQueue::runFinished);
    LaunchSpec s;
    s.name = QStringLiteral("ssh-dp");
    s.configPath = m_config;
    s.engineBinary = m_engine;
    const QString id = q.enqueueCluster(s, cluster());
    QVERIFY2(!id.isEmpty(), qPrintable(q.lastError()));
    QTRY_VERIFY_WITH_TIMEOUT(finished.size() == 1, 180000);
    const RunRecord run = *ws.runs().get(id);
    QVERIFY2(run.status == QStringLiteral("completed"),
             qPrintable(run.status + QStringLiteral(": ") + run.error + QStringLiteral("\n") +
                        run_files::tailOfFile(run.runDir + QStringLiteral("/stderr.log"), 30) + QStringLiteral("\n--- events ---\n") +
                        run_files::tailOfFile(run.runDir + QStringLiteral("/events.jsonl"), 6)));
    QCOMPARE(run.nprocs, 2);
    QCOMPARE(run.lastStep, 8);

    // Both ranks trained (their records came back over SSH) and report the global mean loss,
    // equal to the single process's step by step.
    const QString events = run.runDir + QStringLiteral("/events.jsonl");
    for (int rank = 0; rank < 2; ++rank) {
      const QMap<int, double> got = losses(events, rank);
      QCOMPARE(got.size(), ref.size());
      for (auto it = ref.cbegin(); it != ref.cend(); ++it) {
        const double a = it.value(), b = got.value(it.key(), -1);
        QVERIFY2(std::abs(a - b) <= 1e-5 * std::max(1.0, std::abs(a)),
                 qPrintable(QStringLiteral("rank %1 step %2: loss %3 over SSH, %4 in one process").arg(rank).arg(it.key()).arg(b, 0, 'g', 10).arg(a, 0, 'g', 10)));
      }
    }
    // The world really spanned the two namespaces: each host found its own interface for Gloo.
    ClusterSpec c;
    QVERIFY(ClusterSpec::load(run.runDir, &c));
    QCOMPARE(c.state.size(), 2);
    QCOMPARE(c.masterAddr, m_net->addresses().at(0));
    for (const RemoteHostState& st : c.state) QVERIFY2(!st.socketIfname.isEmpty() && st.socketIfname != QStringLiteral("lo"), qPrintable(st.socketIfname));
    QVERIFY(c.state.at(0).socketIfname != c.state.at(1).socketIfname);  // fp<tag>h0 / fp<tag>h1
    // Rank 1's stderr was mirrored live into the local run directory.
    QVERIFY(QFileInfo(run.runDir + QStringLiteral("/stderr.rank1.log")).size() > 0);
  }

  void preflightMeasuresTheLinks() {
    QList<HostConfig> hosts{host(0), host(1)};
    PreflightOptions o;
    o.knownHostsFile = m_knownHosts;
    o.sizes = QStringLiteral("4K..256K");
    o.iters = 3;
    PreflightResult r = Provisioner::preflight(hosts, o);
    QVERIFY2(r.ok, qPrintable(r.error + QStringLiteral("\n") + r.report));
    QCOMPARE(r.worldSize, 2);
    QVERIFY(!r.rows.isEmpty());
    bool sawAllReduce = false;
    for (const PreflightRow& row : r.rows) {
      QVERIFY(row.bytes >= 4096 && row.bytes <= 262144);
      QVERIFY2(row.busbwGBps > 0, qPrintable(row.op));
      sawAllReduce = sawAllReduce || row.op == QStringLiteral("all_reduce");
    }
    QVERIFY(sawAllReduce);
    QVERIFY(r.report.contains(QStringLiteral("all_reduce")));
    // Nothing of the preflight is left running on the hosts.
    for (int i = 0; i < 2; ++i) {
      const QString out = ssh_test::run(QStringLiteral("ip"), {QStringLiteral("netns"), QStringLiteral("pids"), m_net->names().at(i)});
      for (const QString& pid : out.split(QLatin1Char('\n'), Qt::SkipEmptyParts)) {
        QFile f(QStringLiteral("/proc/%1/cmdline").arg(pid));
        if (f.open(QIODevice::ReadOnly)) QVERIFY2(!f.readAll().contains("bench"), qPrintable(pid));
      }
    }
    // A host that cannot be reached makes the preflight fail, naming it.
    HostConfig ghost = host(1);
    ghost.id = QStringLiteral("ghost");
    ghost.address = QStringLiteral("10.255.255.1");
    o.connectTimeoutMs = 1500;
    r = Provisioner::preflight({host(0), ghost}, o);
    QVERIFY(!r.ok);
    QVERIFY2(r.error.contains(QStringLiteral("ghost")), qPrintable(r.error));
  }
};

QTEST_GUILESS_MAIN(TestSshEngine)
#include "test_ssh_engine.moc"
