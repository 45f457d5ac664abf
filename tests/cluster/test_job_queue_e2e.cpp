// JobQueue with the REAL fathom-engine (a tiny debug-tiny model on CPU): metrics arrive, stop
// checkpoints then exits 0 (status stopped, checkpoint in the registry), resume continues from that
// checkpoint, a queued second job starts only when the CPU slot frees, kill gives status killed;
// re-attach: a queue destroyed while its run runs is replaced by a new one that catches up and
// sees the run finish; a run killed while no queue existed is marked failed with its stderr tail.
// Exits 77 (skipped) when no engine binary with --control-fifo is available.
#include <QtTest>

#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include "cluster/jobs/HeadlessDemo.h"
#include "cluster/jobs/JobQueue.h"
#include "cluster/launch/ProcessInfo.h"
#include "cluster/workspace/RunFiles.h"

using namespace fathom::cluster;

namespace {

QString g_engine;

// $FATHOM_ENGINE_BIN (ctest sets it to this build's engine), else the lead's build; only an
// engine whose train command knows --control-fifo will do.
QString findEngine() {
  const QStringList candidates{qEnvironmentVariable("FATHOM_ENGINE_BIN"),
                               QStringLiteral(FATHOM_SOURCE_DIR "/build/bin/fathom-engine")};
  for (const QString& c : candidates) {
    const QFileInfo fi(c);
    if (c.isEmpty() || !fi.isFile() || !fi.isExecutable() || fi.size() == 0) continue;
    QProcess p;
    p.start(c, {QStringLiteral("train"), QStringLiteral("--help")});
    if (!p.waitForFinished(30000)) continue;
    if (p.readAll().contains("--control-fifo")) return fi.absoluteFilePath();
  }
  return {};
}

}  // namespace

class JobQueueE2E : public QObject {
  Q_OBJECT

 private:
  QTemporaryDir m_tmp;
  QString m_config;
  QList<qint64> m_groups;  // killed at the end whatever happens

  LaunchSpec spec(qint64 maxSteps) const {
    LaunchSpec s;
    s.configPath = m_config;
    s.name = QStringLiteral("e2e");
    s.overrides = {QStringLiteral("train.max_steps=%1").arg(maxSteps)};
    s.devices = {QStringLiteral("cpu")};
    return s;
  }

  void track(Workspace& ws, const QString& id) {
    if (const auto r = ws.runs().get(id); r && r->pgid > 0) m_groups << r->pgid;
  }

 private Q_SLOTS:
  void initTestCase() {
    QVERIFY(m_tmp.isValid());
    const QString tmp = m_tmp.path();
    m_config = m_tmp.filePath(QStringLiteral("tiny.yaml"));
    QFile f(m_config);
    QVERIFY(f.open(QIODevice::WriteOnly));
    f.write(QStringLiteral(
                "extends: debug-tiny\n"
                "run: {name: e2e, seed: 7, device: cpu, threads: 1, workspace: %1/ws}\n"
                "data: {train: [%2/corpus], seq_len: 32, shards_dir: %1/data, validation_fraction: 0.25}\n"
                "tokenizer: {kind: bpe, vocab_size: 384, path: ''}\n"
                "model: {d_model: 64, n_layers: 2, n_heads: 4, n_kv_heads: 2, d_ff: 0, max_seq_len: 64, vocab_size: 0}\n"
                "train: {micro_batch_size: 8, gradient_accumulation_steps: 1, max_steps: 100000, log_interval: 1,\n"
                "        eval_interval: 0, sample_interval: 0, precision: fp32}\n"
                "checkpoint: {save_every_steps: 0, save_interval: 0, keep_n_latest: 3, async: true}\n")
                .arg(tmp, QStringLiteral(FATHOM_FIXTURES_DIR))
                .toUtf8());
  }

  void cleanupTestCase() {
    for (qint64 g : m_groups) ::kill(-static_cast<pid_t>(g), SIGKILL);
  }

  void stopResumeQueueAndKill() {
    Workspace ws;
    QString err;
    QVERIFY2(ws.open(m_tmp.filePath(QStringLiteral("ws")), &err), qPrintable(err));
    JobQueue q(&ws);
    QVERIFY(q.isManager());
    q.setEngineBinary(g_engine);
    QSignalSpy started(&q, &JobQueue::runStarted);
    QSignalSpy finished(&q, &JobQueue::runFinished);

    const QString a = q.enqueue(spec(100000));
    QVERIFY2(!a.isEmpty(), qPrintable(q.lastError()));
    track(ws, a);
    QCOMPARE(ws.runs().get(a)->status, QStringLiteral("running"));
    QCOMPARE(started.size(), 1);
    // The CPU slot is taken: the second job waits.
    const QString b = q.enqueue(spec(5));
    QVERIFY(!b.isEmpty());
    QCOMPARE(ws.runs().get(b)->status, QStringLiteral("queued"));
    QCOMPARE(q.busyDevices(), QStringList{QStringLiteral("cpu")});

    RunSession* s = q.session(a);
    QVERIFY(s);
    QVERIFY(!s->isReadOnly());
    QTRY_VERIFY_WITH_TIMEOUT(s->series(QStringLiteral("loss")).size() >= 3, 120000);
    QVERIFY(!s->hello().isEmpty());
    QTRY_VERIFY_WITH_TIMEOUT(ws.runs().get(a)->lastStep >= 3, 10000);
    // The registry is written in batches (a flush timer), after the session has the points.
    QTRY_VERIFY_WITH_TIMEOUT(ws.metrics().series(a, QStringLiteral("loss")).size() >= 3, 10000);
    QCOMPARE(ws.runs().get(b)->status, QStringLiteral("queued"));

    // Stop: checkpoint, then exit 0.
    QVERIFY2(q.stop(a), qPrintable(q.lastError()));
    QTRY_VERIFY_WITH_TIMEOUT(!finished.isEmpty(), 60000);
    QCOMPARE(finished.at(0).at(0).toString(), a);
    auto runA = ws.runs().get(a);
    QCOMPARE(runA->status, QStringLiteral("stopped"));
    QCOMPARE(runA->exitCode, 0);
    QVERIFY(runA->endedAt.isValid());
    const auto cks = ws.checkpoints().listForRun(a);
    QCOMPARE(cks.size(), 1);
    QCOMPARE(cks[0].step, runA->lastStep);
    QVERIFY(cks[0].verified);
    QVERIFY(QFileInfo(cks[0].path).isDir());
    const qint64 stoppedAt = runA->lastStep;
    qInfo("stopped at step %lld, checkpoint %s", stoppedAt, qPrintable(cks[0].path));

    // The queued job takes the free slot, completes, and leaves its final checkpoint.
    QTRY_VERIFY_WITH_TIMEOUT(started.size() == 2, 10000);
    QCOMPARE(started.at(1).at(0).toString(), b);
    track(ws, b);
    QVERIFY(ws.runs().get(b)->startedAt >= runA->endedAt);
    QTRY_VERIFY_WITH_TIMEOUT(finished.size() == 2, 120000);
    auto runB = ws.runs().get(b);
    QCOMPARE(runB->status, QStringLiteral("completed"));
    QCOMPARE(runB->lastStep, 5);
    QCOMPARE(ws.checkpoints().listForRun(b).value(0).step, 5);

    // Resume A in its directory from its checkpoint, then kill it.
    QVERIFY2(q.resume(a), qPrintable(q.lastError()));
    QTRY_VERIFY_WITH_TIMEOUT(started.size() == 3, 10000);
    track(ws, a);
    QCOMPARE(ws.runs().get(a)->status, QStringLiteral("running"));
    QVERIFY(ws.runs().get(a)->resume.isEmpty());
    QTRY_VERIFY_WITH_TIMEOUT(s->lastStep() > stoppedAt + 2, 120000);
    bool resumedFrom = false;
    for (const EventItem& e : s->events())
      if (e.name == QLatin1String("resumed") && e.step == stoppedAt) resumedFrom = true;
    QVERIFY2(resumedFrom, "the resumed run continued from the stop checkpoint");
    // Points were not ingested twice although the session read the whole file again.
    const auto stored = ws.metrics().series(a, QStringLiteral("loss"));
    QSet<qint64> seen;
    for (const MetricPoint& p : stored) seen.insert(p.step);
    QCOMPARE(seen.size(), stored.size());

    QVERIFY2(q.kill(a), qPrintable(q.lastError()));
    QTRY_VERIFY_WITH_TIMEOUT(finished.size() == 3, 30000);
    QCOMPARE(ws.runs().get(a)->status, QStringLiteral("killed"));
    QCOMPARE(finished.at(2).at(1).toString(), QStringLiteral("killed"));
    QVERIFY(q.runningIds().isEmpty());

    // Duplicate makes a new run with the same settings; remove deletes it and its files.
    const QString c = q.duplicate(b);
    QVERIFY(!c.isEmpty() && c != b);
    QCOMPARE(ws.runs().get(c)->overrides, ws.runs().get(b)->overrides);
    track(ws, c);
    QTRY_VERIFY_WITH_TIMEOUT(finished.size() == 4, 120000);
    QCOMPARE(ws.runs().get(c)->status, QStringLiteral("completed"));
    const QString dirC = ws.runs().get(c)->runDir;
    QVERIFY2(q.remove(c), qPrintable(q.lastError()));
    QVERIFY(!ws.runs().get(c));
    QVERIFY(!QFileInfo::exists(dirC));
  }

  void reattachesAfterTheQueueWentAway() {
    Workspace ws;
    QString err;
    QVERIFY2(ws.open(m_tmp.filePath(QStringLiteral("ws2")), &err), qPrintable(err));
    QString id;
    qint64 pid = 0;
    {
      JobQueue q(&ws);
      q.setEngineBinary(g_engine);
      id = q.enqueue(spec(100000));
      QVERIFY2(!id.isEmpty(), qPrintable(q.lastError()));
      track(ws, id);
      QTRY_VERIFY_WITH_TIMEOUT(q.session(id)->series(QStringLiteral("loss")).size() >= 2, 120000);
      pid = ws.runs().get(id)->pid;
    }  // the workbench quits (or crashes): the run keeps going
    const QString runDir = ws.runs().get(id)->runDir;
    QVERIFY(LocalLauncher::isAlive(pid, runDir));
    QCOMPARE(ws.runs().get(id)->status, QStringLiteral("running"));
    const qint64 stepBefore = [&] {
      QTest::qWait(1500);  // it trains on while nobody watches
      return ws.runs().get(id)->lastStep;
    }();

    JobQueue q2(&ws);
    q2.setEngineBinary(g_engine);
    QCOMPARE(q2.runningIds(), QStringList{id});
    RunSession* s = q2.session(id);
    QVERIFY(s && !s->isReadOnly());
    // Caught up from events.jsonl: more steps than the registry knew when the first queue left.
    QVERIFY(s->lastStep() > stepBefore);
    QSignalSpy finished(&q2, &JobQueue::runFinished);
    QVERIFY2(q2.stop(id), qPrintable(q2.lastError()));
    QTRY_VERIFY_WITH_TIMEOUT(finished.size() == 1, 60000);
    QCOMPARE(ws.runs().get(id)->status, QStringLiteral("stopped"));
    QCOMPARE(ws.checkpoints().listForRun(id).size(), 1);
    // Every step's loss is in the registry exactly once.
    const auto loss = ws.metrics().series(id, QStringLiteral("loss"));
    QCOMPARE(loss.size(), static_cast<int>(ws.runs().get(id)->lastStep));
  }

  void aRunKilledWhileNoQueueExistedIsMarkedFailed() {
    Workspace ws;
    QString err;
    QVERIFY2(ws.open(m_tmp.filePath(QStringLiteral("ws3")), &err), qPrintable(err));
    QString id;
    {
      JobQueue q(&ws);
      q.setEngineBinary(g_engine);
      id = q.enqueue(spec(100000));
      QVERIFY2(!id.isEmpty(), qPrintable(q.lastError()));
      track(ws, id);
      QTRY_VERIFY_WITH_TIMEOUT(q.session(id)->series(QStringLiteral("loss")).size() >= 2, 120000);
    }
    const RunRecord run = *ws.runs().get(id);
    // Something outside the workbench (the OOM killer, a user) kills it while nobody watches.
    QVERIFY(LocalLauncher::kill(run.pgid));
    QTRY_VERIFY_WITH_TIMEOUT(!LocalLauncher::isAlive(run.pid, run.runDir), 10000);
    QTRY_VERIFY_WITH_TIMEOUT(!run_files::readExitStatus(run.runDir).isEmpty(), 10000);
    QCOMPARE(ws.runs().get(id)->status, QStringLiteral("running"));  // the registry does not know yet

    JobQueue q(&ws);
    const auto after = ws.runs().get(id);
    QCOMPARE(after->status, QStringLiteral("failed"));
    qInfo("error recorded: %s", qPrintable(after->error));
    QVERIFY2(after->error.contains(QStringLiteral("SIGKILL")), qPrintable(after->error));
    QVERIFY(after->endedAt.isValid());
    QCOMPARE(after->exitCode, 128 + SIGKILL);
    const QString tail = run_files::stderrTail(run.runDir, 20);
    if (!tail.isEmpty()) QVERIFY2(after->error.contains(tail), qPrintable(after->error));
    QVERIFY(after->lastStep >= 2);
    QVERIFY(q.runningIds().isEmpty());
    QVERIFY(q.session(id)->isReadOnly());
  }

  void headlessDemoRunsAndStopsOnCtrlC() {
    const QString dir = m_tmp.filePath(QStringLiteral("ws4"));
    const QString log = m_tmp.filePath(QStringLiteral("demo-stderr.txt"));
    // The demo talks on stderr: capture it.
    const int saved = ::dup(2);
    const int fd = ::open(QFile::encodeName(log).constData(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    QVERIFY(saved >= 0 && fd >= 0);
    ::dup2(fd, 2);
    ::close(fd);
    // A short demo that ends by itself; the device is probed through `fathom-engine devices`.
    const int code = HeadlessDemo::run({QStringLiteral("fathom"), QStringLiteral("--headless-demo"), QStringLiteral("--workspace"),
                                        dir, QStringLiteral("--config"), m_config, QStringLiteral("--steps"),
                                        QStringLiteral("4"), QStringLiteral("--engine"), g_engine});
    // Ctrl-C once the run trains: stop = checkpoint, then exit.
    QTimer poke;
    bool sent = false;
    connect(&poke, &QTimer::timeout, this, [&] {
      Workspace probe;
      QString e;
      if (sent || !probe.open(dir, &e)) return;
      for (const RunRecord& r : probe.runs().list())
        if (r.status == QLatin1String("running") && r.lastStep >= 2) {
          sent = true;
          ::raise(SIGINT);
        }
    });
    poke.start(200);
    const int code2 = HeadlessDemo::run({QStringLiteral("fathom"), QStringLiteral("--workspace"), dir, QStringLiteral("--config"),
                                         m_config, QStringLiteral("--device"), QStringLiteral("cpu"), QStringLiteral("--engine"),
                                         g_engine});
    poke.stop();
    ::dup2(saved, 2);
    ::close(saved);
    QFile f(log);
    QVERIFY(f.open(QIODevice::ReadOnly));
    const QString text = QString::fromUtf8(f.readAll());
    qInfo("%s", qPrintable(text));
    QCOMPARE(code, 0);
    QCOMPARE(code2, 0);
    QVERIFY(sent);

    Workspace ws;
    QString err;
    QVERIFY2(ws.open(dir, &err), qPrintable(err));
    QList<RunRecord> runs = ws.runs().list();
    QCOMPARE(runs.size(), 2);
    std::sort(runs.begin(), runs.end(), [](const RunRecord& a, const RunRecord& b) { return a.createdAt < b.createdAt; });
    QCOMPARE(runs[0].status, QStringLiteral("completed"));
    QCOMPARE(runs[0].lastStep, 4);
    QVERIFY(runs[0].overrides.contains(QStringLiteral("train.max_steps=4")));
    QCOMPARE(runs[1].status, QStringLiteral("stopped"));
    QCOMPARE(ws.checkpoints().listForRun(runs[1].id).size(), 1);
    QVERIFY(text.contains(QStringLiteral("[demo] step ")));
    QVERIFY(text.contains(QStringLiteral(" completed at step 4")));
    QVERIFY(text.contains(QStringLiteral("stopping ")));
    QVERIFY(text.contains(QStringLiteral(" stopped at step ")));
  }
};

int main(int argc, char** argv) {
  QCoreApplication app(argc, argv);
  g_engine = findEngine();
  if (g_engine.isEmpty()) {
    std::fprintf(stderr, "SKIP: no fathom-engine with `train --control-fifo` found ($FATHOM_ENGINE_BIN=%s, %s); build the "
                         "fathom-engine target first\n",
                 qgetenv("FATHOM_ENGINE_BIN").constData(), FATHOM_SOURCE_DIR "/build/bin/fathom-engine");
    return 77;
  }
  std::fprintf(stderr, "engine: %s\n", qPrintable(g_engine));
  JobQueueE2E test;
  return QTest::qExec(&test, argc, argv);
}

#include "test_job_queue_e2e.moc"
