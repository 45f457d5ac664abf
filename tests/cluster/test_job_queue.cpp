// JobQueue scheduling and bookkeeping against the stand-in engine (fake_engine.cpp: real processes
// and real protocol records, no torch, starts in milliseconds): GPU devices are exclusive, the CPU
// admits maxConcurrentCpuRuns, stop falls back to SIGTERM when the engine has no control FIFO, a
// crashing engine is failed with its exit code and stderr tail, a launch that cannot start fails
// with the reason, a second queue on the same workspace only observes, bad specs are refused.
#include <QtTest>

#include <signal.h>

#include "cluster/jobs/JobQueue.h"

using namespace fathom::cluster;

class JobQueueTest : public QObject {
  Q_OBJECT

 private:
  QTemporaryDir m_tmp;
  QString m_config;
  QList<qint64> m_groups;

  LaunchSpec spec(const QStringList& devices, const QStringList& overrides = {}) const {
    LaunchSpec s;
    s.configPath = m_config;
    s.devices = devices;
    s.overrides = overrides;
    s.engineBinary = QStringLiteral(FAKE_ENGINE_PATH);
    return s;
  }

  void track(Workspace& ws) {
    for (const RunRecord& r : ws.runs().list())
      if (r.pgid > 0 && !m_groups.contains(r.pgid)) m_groups << r.pgid;
  }

  QString status(Workspace& ws, const QString& id) { return ws.runs().get(id).value_or(RunRecord{}).status; }

 private Q_SLOTS:
  void initTestCase() {
    m_config = m_tmp.filePath(QStringLiteral("fake.yaml"));
    QFile f(m_config);
    QVERIFY(f.open(QIODevice::WriteOnly));
    f.write("extends: debug-tiny\n");
  }

  void cleanupTestCase() {
    for (qint64 g : m_groups) ::kill(-static_cast<pid_t>(g), SIGKILL);
  }

  void gpusAreExclusiveAndStopFallsBackToSigterm() {
    Workspace ws;
    QString err;
    QVERIFY2(ws.open(m_tmp.filePath(QStringLiteral("ws1")), &err), qPrintable(err));
    JobQueue q(&ws);
    QSignalSpy finished(&q, &JobQueue::runFinished);
    const QString a = q.enqueue(spec({QStringLiteral("cuda:0")}));
    const QString b = q.enqueue(spec({QStringLiteral("cuda:0")}));
    const QString c = q.enqueue(spec({QStringLiteral("cuda:1")}));
    track(ws);
    QCOMPARE(status(ws, a), QStringLiteral("running"));
    QCOMPARE(status(ws, b), QStringLiteral("queued"));
    QCOMPARE(status(ws, c), QStringLiteral("running"));
    QCOMPARE(q.busyDevices(), (QStringList{QStringLiteral("cuda:0"), QStringLiteral("cuda:1")}));
    QVERIFY(q.runningIds().contains(a) && q.runningIds().contains(c));
    // The launcher passed the devices on.
    QTRY_VERIFY_WITH_TIMEOUT(QFileInfo::exists(ws.runs().get(a)->runDir + QStringLiteral("/argv.0.txt")), 10000);
    QFile argv(ws.runs().get(a)->runDir + QStringLiteral("/argv.0.txt"));
    QVERIFY(argv.open(QIODevice::ReadOnly));
    const QByteArray args = argv.readAll();
    QVERIFY(args.contains("run.device=cuda\n"));
    QVERIFY(args.contains("distributed.gpu_ids=[0]\n"));
    QFile env(ws.runs().get(a)->runDir + QStringLiteral("/env.0.txt"));
    QVERIFY(env.open(QIODevice::ReadOnly));
    QVERIFY(env.readAll().split('\n').contains("FATHOM_WORKSPACE=" + ws.dir().toUtf8()));

    // The fake engine opens no control FIFO: stop must fall back to SIGTERM (after its hello).
    QTRY_VERIFY_WITH_TIMEOUT(q.session(a)->lastStep() >= 2, 10000);
    QVERIFY2(q.stop(a), qPrintable(q.lastError()));
    QTRY_VERIFY_WITH_TIMEOUT(finished.size() == 1, 10000);
    QCOMPARE(status(ws, a), QStringLiteral("stopped"));
    QCOMPARE(finished.at(0).at(0).toString(), a);
    // cuda:0 is free again: b starts; c was never affected.
    QTRY_COMPARE_WITH_TIMEOUT(status(ws, b), QStringLiteral("running"), 10000);
    track(ws);
    QCOMPARE(status(ws, c), QStringLiteral("running"));
    QVERIFY(q.kill(b));
    QVERIFY(q.kill(c));
    QTRY_VERIFY_WITH_TIMEOUT(finished.size() == 3, 10000);
    QCOMPARE(status(ws, b), QStringLiteral("killed"));
    QCOMPARE(status(ws, c), QStringLiteral("killed"));
    QCOMPARE(ws.runs().get(c)->exitCode, 128 + SIGKILL);
    QVERIFY(q.busyDevices().isEmpty());
  }

  void cpuSlotsFailuresAndCancellation() {
    Workspace ws;
    QString err;
    QVERIFY2(ws.open(m_tmp.filePath(QStringLiteral("ws2")), &err), qPrintable(err));
    JobQueue q(&ws);
    QSignalSpy finished(&q, &JobQueue::runFinished);
    QCOMPARE(q.maxConcurrentCpuRuns(), 1);
    q.setMaxConcurrentCpuRuns(2);
    const QString a = q.enqueue(spec({}));  // no devices: the CPU
    const QString b = q.enqueue(spec({QStringLiteral("cpu")}, {QStringLiteral("fake.exit=3")}));
    const QString c = q.enqueue(spec({QStringLiteral("cpu")}, {QStringLiteral("fake.steps=3")}));
    track(ws);
    QCOMPARE(ws.runs().get(a)->devices, QStringList{QStringLiteral("cpu")});
    QCOMPARE(status(ws, a), QStringLiteral("running"));
    QCOMPARE(status(ws, b), QStringLiteral("running"));
    QCOMPARE(status(ws, c), QStringLiteral("queued"));
    // b crashes at once: failed, with its exit code and stderr; then c gets the slot and completes.
    QTRY_COMPARE_WITH_TIMEOUT(status(ws, b), QStringLiteral("failed"), 10000);
    const RunRecord rb = *ws.runs().get(b);
    QCOMPARE(rb.exitCode, 3);
    QVERIFY2(rb.error.contains(QStringLiteral("exit code 3")), qPrintable(rb.error));
    QVERIFY2(rb.error.contains(QStringLiteral("fake engine rank 0 exits with 3")), qPrintable(rb.error));
    QTRY_COMPARE_WITH_TIMEOUT(status(ws, c), QStringLiteral("completed"), 10000);
    track(ws);
    QCOMPARE(ws.runs().get(c)->lastStep, 3);
    QCOMPARE(ws.metrics().series(c, QStringLiteral("loss")).size(), 3);

    // Cancelling queued runs: fill both slots, queue two more, stop one and kill the other.
    const QString d = q.enqueue(spec({QStringLiteral("cpu")}));
    track(ws);
    QCOMPARE(status(ws, d), QStringLiteral("running"));
    const QString e = q.enqueue(spec({QStringLiteral("cpu")}));
    const QString f = q.enqueue(spec({QStringLiteral("cpu")}));
    QCOMPARE(status(ws, e), QStringLiteral("queued"));
    QVERIFY(q.stop(e));
    QVERIFY(q.kill(f));
    QCOMPARE(status(ws, e), QStringLiteral("stopped"));
    QCOMPARE(status(ws, f), QStringLiteral("killed"));
    QVERIFY(ws.runs().get(e)->error.contains(QStringLiteral("cancelled")));
    QVERIFY(!q.resume(a));  // running: only ended runs resume
    QVERIFY(q.lastError().contains(QStringLiteral("only an ended run")));
    QVERIFY(!q.remove(a));
    QVERIFY(q.lastError().contains(QStringLiteral("stop or kill it first")));

    // A launch that cannot start (its config vanished while queued) fails with the reason.
    QVERIFY(q.kill(a));
    QVERIFY(q.kill(d));
    QTRY_VERIFY_WITH_TIMEOUT(q.runningIds().isEmpty(), 10000);
    const QString gone = m_tmp.filePath(QStringLiteral("vanishing.yaml"));
    QFile::copy(m_config, gone);
    q.setMaxConcurrentCpuRuns(1);
    const QString blocker = q.enqueue(spec({QStringLiteral("cpu")}));
    LaunchSpec s = spec({QStringLiteral("cpu")});
    s.configPath = gone;
    const QString g = q.enqueue(s);
    track(ws);
    QCOMPARE(status(ws, g), QStringLiteral("queued"));
    QFile::remove(gone);
    QVERIFY(q.kill(blocker));
    QTRY_COMPARE_WITH_TIMEOUT(status(ws, g), QStringLiteral("failed"), 10000);
    QVERIFY2(ws.runs().get(g)->error.contains(QStringLiteral("vanishing.yaml")), qPrintable(ws.runs().get(g)->error));
  }

  void badSpecsAreRefusedAndASecondQueueOnlyObserves() {
    Workspace ws;
    QString err;
    QVERIFY2(ws.open(m_tmp.filePath(QStringLiteral("ws3")), &err), qPrintable(err));
    JobQueue q(&ws);
    QVERIFY(q.isManager());
    QVERIFY(q.enqueue(spec({QStringLiteral("gpu0")})).isEmpty());
    QVERIFY2(q.lastError().contains(QStringLiteral("unknown device 'gpu0'")), qPrintable(q.lastError()));
    LaunchSpec s = spec({});
    s.configPath = m_tmp.filePath(QStringLiteral("nope.yaml"));
    QVERIFY(q.enqueue(s).isEmpty());
    QVERIFY(q.lastError().contains(QStringLiteral("nope.yaml")));
    s = spec({});
    s.runId = QStringLiteral("fixed-id");
    QCOMPARE(q.enqueue(s), QStringLiteral("fixed-id"));
    track(ws);
    QVERIFY(q.enqueue(s).isEmpty());
    QVERIFY(q.lastError().contains(QStringLiteral("already exists")));
    const QString queued = q.enqueue(spec({}));
    QCOMPARE(status(ws, queued), QStringLiteral("queued"));

    Workspace ws2;
    QVERIFY(ws2.open(ws.dir(), &err));
    JobQueue observer(&ws2);
    QVERIFY(!observer.isManager());
    QVERIFY2(observer.lastError().contains(QStringLiteral("manages the queue")), qPrintable(observer.lastError()));
    observer.schedule();
    QCOMPARE(status(ws2, queued), QStringLiteral("queued"));  // not started by the observer
    QVERIFY(observer.session(QStringLiteral("fixed-id")));
    QVERIFY(q.kill(QStringLiteral("fixed-id")));
    QTRY_COMPARE_WITH_TIMEOUT(status(ws, queued), QStringLiteral("running"), 10000);
    track(ws);
    QVERIFY(q.kill(queued));
    QTRY_VERIFY_WITH_TIMEOUT(q.runningIds().isEmpty(), 10000);

    Workspace closed;
    JobQueue none(&closed);
    QVERIFY(!none.isManager());
    QVERIFY(none.enqueue(spec({})).isEmpty());
    QVERIFY2(none.lastError().contains(QStringLiteral("not open")), qPrintable(none.lastError()));
    QVERIFY(!none.session(QStringLiteral("fixed-id")));
  }
};

QTEST_GUILESS_MAIN(JobQueueTest)
#include "test_job_queue.moc"
