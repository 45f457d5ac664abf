// The workspace registry: WAL, numbered migrations (an old database is migrated, a newer one is
// refused), repository round trips, metric downsampling and idempotent ingest, rescan from run
// directories written with fathom_protocol's Emitter, and reopening after a writer was SIGKILLed
// mid-transaction.
// fathom_protocol's Emitter has a member named emit(): keep Qt's keyword macros out of this file.
#define QT_NO_KEYWORDS
#include <QtTest>

#include <sqlite3.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmath>

#include "cluster/workspace/Migrations.h"
#include "cluster/workspace/Sqlite.h"
#include "cluster/workspace/Workspace.h"
#include "engine/config/config.h"
#include "engine/protocol/protocol.h"

using namespace fathom::cluster;
namespace proto = fathom::protocol;

namespace {

QString pragma(const QString& dbPath, const char* sql) {
  sqlite3* db = nullptr;
  sqlite3_open_v2(dbPath.toUtf8().constData(), &db, SQLITE_OPEN_READONLY, nullptr);
  sqlite3_stmt* st = nullptr;
  QString out;
  if (sqlite3_prepare_v2(db, sql, -1, &st, nullptr) == SQLITE_OK && sqlite3_step(st) == SQLITE_ROW)
    out = QString::fromUtf8(reinterpret_cast<const char*>(sqlite3_column_text(st, 0)));
  sqlite3_finalize(st);
  sqlite3_close(db);
  return out;
}

void writeFile(const QString& path, const QByteArray& content) {
  QDir().mkpath(QFileInfo(path).path());
  QFile f(path);
  QVERIFY(f.open(QIODevice::WriteOnly));
  f.write(content);
}

// A checkpoint directory as the engine's CheckpointManager leaves it.
void writeCheckpoint(const QString& dir, qint64 step, double valLoss) {
  const QByteArray model(1000, 'm'), optim(2000, 'o');
  const QByteArray state = QStringLiteral("{\"step\": %1, \"tokens\": 4096}").arg(step).toUtf8();
  writeFile(dir + "/model.safetensors", model);
  writeFile(dir + "/optimizer.safetensors", optim);
  writeFile(dir + "/state.json", state);
  const QString manifest = QStringLiteral(
                               "{\"format\":\"fathom-checkpoint-manifest\",\"version\":1,\"step\":%1,\"val_loss\":%2,"
                               "\"created_unix_ms\":1700000000000,\"files\":[{\"name\":\"model.safetensors\",\"bytes\":1000,"
                               "\"sha256\":\"00\"},{\"name\":\"optimizer.safetensors\",\"bytes\":2000,\"sha256\":\"00\"},"
                               "{\"name\":\"state.json\",\"bytes\":%3,\"sha256\":\"00\"}]}")
                               .arg(step)
                               .arg(valLoss)
                               .arg(state.size());
  writeFile(dir + "/MANIFEST.json", manifest.toUtf8());
}

RunRecord sampleRun(const QString& id) {
  RunRecord r;
  r.id = id;
  r.name = QStringLiteral("demo");
  r.configPath = QStringLiteral("/ws/projects/demo.yaml");
  r.runDir = QStringLiteral("/ws/runs/") + id;
  r.status = run_status::running;
  r.error = QStringLiteral("line1\nline2 ünïcödé");
  r.pid = 4242;
  r.pgid = 4242;
  r.nprocs = 2;
  r.devices = {QStringLiteral("cuda:0"), QStringLiteral("cuda:1")};
  r.overrides = {QStringLiteral("train.max_steps=10"), QStringLiteral("train.sample_prompt=a, b \"c\"")};
  r.createdAt = QDateTime::fromMSecsSinceEpoch(1700000000123);
  r.startedAt = QDateTime::fromMSecsSinceEpoch(1700000001000);
  r.lastStep = 77;
  r.lastLoss = 3.25;
  r.exitCode = 0;
  r.parentRunId = QStringLiteral("parent-1");
  r.resume = QStringLiteral("auto");
  return r;
}

}  // namespace

class WorkspaceTest : public QObject {
  Q_OBJECT

 private Q_SLOTS:
  void opensWithWalAndLatestSchema() {
    QTemporaryDir tmp;
    Workspace ws;
    QString err;
    QVERIFY2(ws.open(tmp.filePath("ws"), &err), qPrintable(err));
    QVERIFY(QFileInfo(ws.runsDir()).isDir());
    QVERIFY(QFileInfo(ws.projectsDir()).isDir());
    QCOMPARE(ws.schemaVersion(), latestSchemaVersion());
    QCOMPARE(pragma(ws.databasePath(), "PRAGMA journal_mode").toLower(), QStringLiteral("wal"));
    for (const char* table : {"hosts", "runs", "run_ranks", "checkpoints", "metrics", "events", "schema_version",
                              "metric_series", "ingest_state"}) {
      const QString q = QStringLiteral("SELECT name FROM sqlite_master WHERE type='table' AND name='%1'").arg(table);
      QCOMPARE(pragma(ws.databasePath(), q.toUtf8().constData()), QString::fromLatin1(table));
    }
    QString report;
    QVERIFY2(ws.integrityCheck(&report), qPrintable(report));
  }

  void migratesAnOldDatabaseAndRefusesANewerOne() {
    QTemporaryDir tmp;
    const QString dir = tmp.filePath("ws");
    QDir().mkpath(dir);
    {
      // A workspace written by a build that knew only migration 1, holding one run.
      sql::Database db;
      QString err;
      QVERIFY(db.open(dir + "/workspace.db", &err));
      QStringList applied;
      QVERIFY2(migrateDatabase(db, 1, &err, &applied), qPrintable(err));
      QCOMPARE(applied, QStringList{QStringLiteral("1: hosts, runs, run_ranks, checkpoints, metrics, events")});
      QVERIFY(db.exec("INSERT INTO runs (id, name, run_dir, status, created_at) VALUES ('old-run', 'old', '/x', 'completed', 5)", &err));
      QVERIFY(db.exec("INSERT INTO metrics (run_id, key, rank, idx, step, value) VALUES ('old-run', 'loss', 0, 0, 1, 2.5)", &err));
      QCOMPARE(schemaVersionOf(db, &err), 1);
    }
    Workspace ws;
    QString err;
    QVERIFY2(ws.open(dir, &err), qPrintable(err));
    QCOMPARE(ws.schemaVersion(), latestSchemaVersion());  // every migration after 1 applied
    const auto run = ws.runs().get(QStringLiteral("old-run"));
    QVERIFY(run);
    QCOMPARE(run->status, QStringLiteral("completed"));
    QVERIFY(run->resume.isEmpty());  // the column migration 2 added
    QCOMPARE(ws.metrics().series(QStringLiteral("old-run"), QStringLiteral("loss")).size(), 1);
    QVERIFY(ws.metrics().ingest(QStringLiteral("old-run"), {MetricPoint{2, 0, 0, QStringLiteral("lr"), 1e-3, 0, 9}}));
    QCOMPARE(ws.metrics().ingestedSeq(QStringLiteral("old-run"), 0), 9);
    ws.close();

    {
      sql::Database db;
      QVERIFY(db.open(dir + "/workspace.db", &err));
      QVERIFY(db.exec("INSERT INTO schema_version (version, description) VALUES (99, 'from the future')", &err));
    }
    Workspace newer;
    QVERIFY(!newer.open(dir, &err));
    QVERIFY2(err.contains(QStringLiteral("schema version 99")) && err.contains(QStringLiteral("newer")), qPrintable(err));
    QVERIFY(!newer.isOpen());
  }

  void runRepositoryRoundTrip() {
    QTemporaryDir tmp;
    Workspace ws;
    QString err;
    QVERIFY2(ws.open(tmp.path(), &err), qPrintable(err));
    QSignalSpy changed(&ws, &Workspace::runsChanged);
    const RunRecord a = sampleRun(QStringLiteral("run-a"));
    QVERIFY2(ws.runs().upsert(a), qPrintable(ws.runs().lastError()));
    QCOMPARE(changed.size(), 1);
    QCOMPARE(changed.at(0).at(0).toStringList(), QStringList{QStringLiteral("run-a")});
    auto got = ws.runs().get(QStringLiteral("run-a"));
    QVERIFY(got);
    QCOMPARE(got->name, a.name);
    QCOMPARE(got->configPath, a.configPath);
    QCOMPARE(got->runDir, a.runDir);
    QCOMPARE(got->status, a.status);
    QCOMPARE(got->host, QStringLiteral("local"));
    QCOMPARE(got->error, a.error);
    QCOMPARE(got->pid, a.pid);
    QCOMPARE(got->pgid, a.pgid);
    QCOMPARE(got->nprocs, 2);
    QCOMPARE(got->devices, a.devices);
    QCOMPARE(got->overrides, a.overrides);
    QCOMPARE(got->createdAt, a.createdAt);
    QCOMPARE(got->startedAt, a.startedAt);
    QVERIFY(!got->endedAt.isValid());
    QCOMPARE(got->lastStep, 77);
    QCOMPARE(got->lastLoss, 3.25);
    QCOMPARE(got->parentRunId, a.parentRunId);
    QCOMPARE(got->resume, a.resume);

    RunRecord b = sampleRun(QStringLiteral("run-b"));
    b.createdAt = a.createdAt.addSecs(60);
    b.lastLoss = NAN;
    b.status = run_status::queued;
    QVERIFY(ws.runs().upsert(b));
    QVERIFY(std::isnan(ws.runs().get(QStringLiteral("run-b"))->lastLoss));
    const auto all = ws.runs().list();
    QCOMPARE(all.size(), 2);
    QCOMPARE(all[0].id, QStringLiteral("run-b"));  // newest first
    QCOMPARE(ws.runs().listByStatus(run_status::queued).size(), 1);

    QVERIFY(ws.runs().setRanks(QStringLiteral("run-a"), {RankRecord{0, 10, 10, "local"}, RankRecord{1, 11, 10, "local"}}));
    QCOMPARE(ws.runs().ranks(QStringLiteral("run-a")).size(), 2);
    QCOMPARE(ws.runs().ranks(QStringLiteral("run-a"))[1].pid, 11);

    // Updating the run keeps its children (an UPSERT, not delete + insert).
    CheckpointRecord c{QStringLiteral("run-a"), QStringLiteral("/ws/runs/run-a/checkpoints/step-10"), 10, 123, NAN, true,
                       QDateTime::fromMSecsSinceEpoch(1700000005000)};
    QVERIFY(ws.checkpoints().upsert(c));
    got->status = run_status::completed;
    QVERIFY(ws.runs().upsert(*got));
    QCOMPARE(ws.checkpoints().listForRun(QStringLiteral("run-a")).size(), 1);
    QCOMPARE(ws.runs().ranks(QStringLiteral("run-a")).size(), 2);

    // Removing a run cascades to its ranks, checkpoints, metrics and events.
    QVERIFY(ws.metrics().append(QStringLiteral("run-a"), 0, {MetricPoint{1, 0, 0, QStringLiteral("loss"), 1, 0, 1}}));
    QVERIFY(ws.events().ingest(QStringLiteral("run-a"), {EventItem{1, QStringLiteral("eval"), QStringLiteral("{}"), 0, 5, 0}}));
    QVERIFY(ws.runs().remove(QStringLiteral("run-a")));
    QVERIFY(!ws.runs().get(QStringLiteral("run-a")));
    QVERIFY(ws.checkpoints().listForRun(QStringLiteral("run-a")).isEmpty());
    QVERIFY(ws.runs().ranks(QStringLiteral("run-a")).isEmpty());
    QVERIFY(ws.metrics().series(QStringLiteral("run-a"), QStringLiteral("loss")).isEmpty());
    QVERIFY(ws.events().list(QStringLiteral("run-a")).isEmpty());
  }

  void checkpointRepositoryRoundTrip() {
    QTemporaryDir tmp;
    Workspace ws;
    QString err;
    QVERIFY2(ws.open(tmp.path(), &err), qPrintable(err));
    QVERIFY(ws.runs().upsert(sampleRun(QStringLiteral("r1"))));
    QVERIFY(ws.runs().upsert(sampleRun(QStringLiteral("r2"))));
    QSignalSpy changed(&ws, &Workspace::checkpointsChanged);
    for (int step : {20, 10}) {
      QVERIFY(ws.checkpoints().upsert(CheckpointRecord{QStringLiteral("r1"), QStringLiteral("/c/r1/step-%1").arg(step), step,
                                                       step * 100, step == 20 ? 2.5 : NAN, step == 20,
                                                       QDateTime::fromMSecsSinceEpoch(1700000000000 + step)}));
    }
    QVERIFY(ws.checkpoints().upsert(CheckpointRecord{QStringLiteral("r2"), QStringLiteral("/c/r2/step-5"), 5, 1, NAN, false,
                                                     QDateTime::fromMSecsSinceEpoch(1800000000000)}));
    QCOMPARE(changed.size(), 3);
    const auto r1 = ws.checkpoints().listForRun(QStringLiteral("r1"));
    QCOMPARE(r1.size(), 2);
    QCOMPARE(r1[0].step, 10);  // by step
    QVERIFY(std::isnan(r1[0].valLoss));
    QCOMPARE(r1[1].valLoss, 2.5);
    QVERIFY(r1[1].verified);
    QCOMPARE(r1[1].bytes, 2000);
    const auto all = ws.checkpoints().listAll();
    QCOMPARE(all.size(), 3);
    QCOMPARE(all[0].runId, QStringLiteral("r2"));  // newest first
    QVERIFY(ws.checkpoints().remove(QStringLiteral("r1"), QStringLiteral("/c/r1/step-10")));
    QCOMPARE(ws.checkpoints().listForRun(QStringLiteral("r1")).size(), 1);

    // inspect() reads what the engine writes; a size mismatch is not verified.
    const QString dir = tmp.filePath("runs/r1/checkpoints/step-30");
    writeCheckpoint(dir, 30, 1.75);
    auto c = CheckpointRepository::inspect(QStringLiteral("r1"), dir);
    QVERIFY(c);
    QCOMPARE(c->step, 30);
    QCOMPARE(c->valLoss, 1.75);
    QVERIFY(c->verified);
    QVERIFY(c->bytes > 3000);
    QCOMPARE(c->createdAt.toMSecsSinceEpoch(), 1700000000000);
    writeFile(dir + "/model.safetensors", QByteArray(999, 'm'));
    QVERIFY(!CheckpointRepository::inspect(QStringLiteral("r1"), dir)->verified);
    QVERIFY(!CheckpointRepository::inspect(QStringLiteral("r1"), tmp.filePath("runs/r1")));
  }

  void metricsAreDownsampledAndIngestIsIdempotent() {
    QTemporaryDir tmp;
    Workspace ws;
    QString err;
    QVERIFY2(ws.open(tmp.path(), &err), qPrintable(err));
    QVERIFY(ws.runs().upsert(sampleRun(QStringLiteral("m"))));
    ws.metrics().setMaxPointsPerSeries(100);
    // 1000 points in ragged batches, two keys interleaved.
    int step = 0;
    while (step < 1000) {
      QVector<MetricPoint> batch;
      for (int i = 0; i < 7 && step < 1000; ++i, ++step) {
        batch.append(MetricPoint{step, step * 10, step * 0.5, QStringLiteral("loss"), 1000.0 - step, 0, step + 1});
        batch.append(MetricPoint{step, step * 10, step * 0.5, QStringLiteral("lr"), 1e-3, 0, step + 1});
      }
      QVERIFY2(ws.metrics().append(QStringLiteral("m"), 0, batch), qPrintable(ws.metrics().lastError()));
    }
    const auto loss = ws.metrics().series(QStringLiteral("m"), QStringLiteral("loss"));
    QVERIFY2(loss.size() > 50 && loss.size() <= 101, qPrintable(QString::number(loss.size())));
    QCOMPARE(loss.first().step, 0);
    QCOMPARE(loss.last().step, 999);  // the newest point is always kept
    QCOMPARE(loss.last().value, 1.0);
    QCOMPARE(loss.last().tokens, 9990);
    // Evenly spread: every gap but the last is the same stride.
    const qint64 stride = loss[1].step - loss[0].step;
    QVERIFY(stride >= 10);
    for (int i = 1; i + 1 < loss.size(); ++i) QCOMPARE(loss[i].step - loss[i - 1].step, stride);
    QCOMPARE(ws.metrics().series(QStringLiteral("m"), QStringLiteral("lr")).size(), loss.size());
    QCOMPARE(ws.metrics().seriesKeys(QStringLiteral("m")).size(), 2);
    QCOMPARE(ws.metrics().series(QStringLiteral("m"), QStringLiteral("loss"), 1).size(), 0);

    // ingest(): seq watermarks per rank; the same records again add nothing.
    QVERIFY(ws.runs().upsert(sampleRun(QStringLiteral("i"))));
    QVector<MetricPoint> pts;
    for (int s = 1; s <= 50; ++s) {
      pts.append(MetricPoint{s, 0, 0, QStringLiteral("loss"), double(s), 0, s});
      pts.append(MetricPoint{s, 0, 0, QStringLiteral("loss"), double(s), 1, s});
    }
    QVERIFY(ws.metrics().ingest(QStringLiteral("i"), pts));
    QVERIFY(ws.metrics().ingest(QStringLiteral("i"), pts));
    QVERIFY(ws.metrics().ingest(QStringLiteral("i"), pts.mid(0, 40)));
    QCOMPARE(ws.metrics().series(QStringLiteral("i"), QStringLiteral("loss"), 0).size(), 50);
    QCOMPARE(ws.metrics().series(QStringLiteral("i"), QStringLiteral("loss"), 1).size(), 50);
    QCOMPARE(ws.metrics().ingestedSeq(QStringLiteral("i"), 1), 50);
    QVERIFY(ws.metrics().clearRun(QStringLiteral("i")));
    QCOMPARE(ws.metrics().ingestedSeq(QStringLiteral("i"), 1), 0);

    // events: (run, rank, seq) dedupes.
    QVector<EventItem> ev{EventItem{5, QStringLiteral("checkpoint_saved"), QStringLiteral("{\"step\":5}"), 0, 3, 1.5},
                          EventItem{6, QStringLiteral("eval"), QStringLiteral("{\"step\":6}"), 0, 4, 2.0}};
    QVERIFY(ws.events().ingest(QStringLiteral("i"), ev));
    QVERIFY(ws.events().ingest(QStringLiteral("i"), ev));
    QCOMPARE(ws.events().list(QStringLiteral("i")).size(), 2);
    QCOMPARE(ws.events().list(QStringLiteral("i"), QStringLiteral("eval")).size(), 1);
    QCOMPARE(ws.events().list(QStringLiteral("i"), QStringLiteral("eval"))[0].json, QStringLiteral("{\"step\":6}"));
  }

  void rescanRebuildsTheIndexFromRunDirectories() {
    QTemporaryDir tmp;
    Workspace ws;
    QString err;
    QVERIFY2(ws.open(tmp.path(), &err), qPrintable(err));
    const QString runsDir = ws.runsDir();

    // Run "done": completed, two checkpoints (one pruned from disk), resolved config.yaml.
    {
      const QString dir = runsDir + "/done";
      QDir().mkpath(dir);
      fathom::config::RunConfig cfg;
      cfg.run.name = "tiny-demo";
      writeFile(dir + "/config.yaml", QByteArray::fromStdString(fathom::config::config_to_yaml(cfg)));
      proto::Emitter em("done", 0, (dir + "/events.jsonl").toStdString(), false);
      proto::HelloData hello;
      hello.pid = 999999;
      em.emit(hello);
      for (int s = 1; s <= 30; ++s) {
        proto::MetricData m;
        m.step = s;
        m.tokens = s * 512;
        m.loss = 5.0 - s * 0.1;
        if (s == 30) m.val_loss = 2.0;
        em.emit(m);
      }
      proto::SystemData sys;
      sys.cpu_util_pct = 50;
      proto::GpuSample g;
      g.index = 0;
      g.util_pct = 97;
      g.mem_used = int64_t{1} << 30;
      sys.gpus.push_back(g);
      em.emit(sys);
      em.emit(proto::EventData{"checkpoint_saved", {{"step", 10}, {"path", (dir + "/checkpoints/step-10").toStdString()}}});
      em.emit(proto::EventData{"checkpoint_saved", {{"step", 30}, {"path", (dir + "/checkpoints/step-30").toStdString()}}});
      em.emit(proto::ExitData{"completed", 0, ""});
      writeCheckpoint(dir + "/checkpoints/step-30", 30, 2.0);
      QDir().mkpath(dir + "/checkpoints/step-40.tmp");  // an unfinished write: not a checkpoint
    }
    // Run "crashed": no exit record, its process (hello's pid) is gone; stderr says why.
    {
      const QString dir = runsDir + "/crashed";
      QDir().mkpath(dir);
      proto::Emitter em("crashed", 0, (dir + "/events.jsonl").toStdString(), false);
      proto::HelloData hello;
      hello.pid = getpid();  // alive, but not a fathom-engine for this directory
      em.emit(hello);
      proto::MetricData m;
      m.step = 7;
      m.loss = 4.5;
      em.emit(m);
      QByteArray err;
      for (int i = 0; i < 40; ++i) err += "progress line " + QByteArray::number(i) + "\n";
      err += "terminate called after throwing an instance of 'c10::Error'\n";
      writeFile(dir + "/stderr.log", err);
      // A garbage line is counted and reported; a torn last line (the writer died mid-line) is
      // left alone; neither breaks the scan.
      QFile f(dir + "/events.jsonl");
      QVERIFY(f.open(QIODevice::Append));
      f.write("garbage from a stray printf\n");
      f.write("{\"v\":1,\"type\":\"metric\",\"run\":\"crashed\",\"ra");
    }
    // An index row whose directory was deleted by hand, and a queued run (no directory yet).
    RunRecord gone = sampleRun(QStringLiteral("gone"));
    gone.runDir = runsDir + "/gone";
    gone.status = run_status::completed;
    QVERIFY(ws.runs().upsert(gone));
    RunRecord queued = sampleRun(QStringLiteral("queued"));
    queued.runDir = runsDir + "/queued";
    queued.status = run_status::queued;
    QVERIFY(ws.runs().upsert(queued));
    QDir().mkpath(runsDir + "/not-a-run");  // neither config.yaml nor events.jsonl

    QSignalSpy reloaded(&ws, &Workspace::reloaded);
    QString report;
    QCOMPARE(ws.rescan(&report), 2);
    QCOMPARE(reloaded.size(), 1);
    QVERIFY2(report.contains(QStringLiteral("removed gone")), qPrintable(report));

    const auto done = ws.runs().get(QStringLiteral("done"));
    QVERIFY(done);
    QCOMPARE(done->status, QStringLiteral("completed"));
    QCOMPARE(done->name, QStringLiteral("tiny-demo"));
    QCOMPARE(done->lastStep, 30);
    QCOMPARE(done->lastLoss, 5.0 - 30 * 0.1);
    QVERIFY(done->createdAt.isValid() && done->startedAt.isValid() && done->endedAt.isValid());
    QVERIFY(done->error.isEmpty());
    const auto cks = ws.checkpoints().listForRun(QStringLiteral("done"));
    QCOMPARE(cks.size(), 1);  // step-10 was pruned (not on disk), step-40.tmp unfinished
    QCOMPARE(cks[0].step, 30);
    QVERIFY(cks[0].verified);
    QCOMPARE(cks[0].valLoss, 2.0);
    QCOMPARE(ws.metrics().series(QStringLiteral("done"), QStringLiteral("loss")).size(), 30);
    QCOMPARE(ws.metrics().series(QStringLiteral("done"), QStringLiteral("val_loss")).size(), 1);
    QCOMPARE(ws.metrics().series(QStringLiteral("done"), QStringLiteral("gpu0.util_pct")).value(0).value, 97.0);
    QCOMPARE(ws.metrics().series(QStringLiteral("done"), QStringLiteral("gpu0.util_pct")).value(0).step, 30);
    QCOMPARE(ws.events().list(QStringLiteral("done"), QStringLiteral("checkpoint_saved")).size(), 2);

    const auto crashed = ws.runs().get(QStringLiteral("crashed"));
    QVERIFY(crashed);
    QCOMPARE(crashed->status, QStringLiteral("failed"));
    QCOMPARE(crashed->lastStep, 7);
    QVERIFY2(crashed->error.contains(QStringLiteral("without an exit record")), qPrintable(crashed->error));
    QVERIFY2(crashed->error.contains(QStringLiteral("c10::Error")), qPrintable(crashed->error));
    QVERIFY2(!crashed->error.contains(QStringLiteral("progress line 5\n")), "only the last 20 lines of stderr");
    QVERIFY2(report.contains(QStringLiteral("malformed")), qPrintable(report));

    QVERIFY(!ws.runs().get(QStringLiteral("gone")));
    QVERIFY(ws.runs().get(QStringLiteral("queued")));
    QVERIFY(!ws.runs().get(QStringLiteral("not-a-run")));

    // Rescan twice gives the same index (no duplicate points or events).
    QCOMPARE(ws.rescan(), 2);
    QCOMPARE(ws.metrics().series(QStringLiteral("done"), QStringLiteral("loss")).size(), 30);
    QCOMPARE(ws.events().list(QStringLiteral("done")).size(), 2);

    // From nothing: a fresh database over the same directories.
    ws.close();
    QFile::remove(tmp.filePath("workspace.db"));
    QFile::remove(tmp.filePath("workspace.db-wal"));
    QFile::remove(tmp.filePath("workspace.db-shm"));
    Workspace fresh;
    QVERIFY2(fresh.open(tmp.path(), &err), qPrintable(err));
    QCOMPARE(fresh.runs().list().size(), 0);
    QCOMPARE(fresh.rescan(), 2);
    QCOMPARE(fresh.runs().get(QStringLiteral("done"))->status, QStringLiteral("completed"));
    QCOMPARE(fresh.checkpoints().listAll().size(), 1);
  }

  void reopensAfterAWriterWasKilledMidTransaction() {
    QTemporaryDir tmp;
    {
      Workspace ws;
      QString err;
      QVERIFY2(ws.open(tmp.path(), &err), qPrintable(err));
      QVERIFY(ws.runs().upsert(sampleRun(QStringLiteral("before"))));
    }
    const pid_t child = fork();
    if (child == 0) {
      // A second process hammering the registry, killed at a random moment.
      Workspace ws;
      QString err;
      if (!ws.open(tmp.path(), &err)) _exit(3);
      for (int i = 0;; ++i) {
        RunRecord r = sampleRun(QStringLiteral("w%1").arg(i % 50));
        ws.runs().upsert(r);
        QVector<MetricPoint> pts;
        for (int k = 0; k < 200; ++k) pts.append(MetricPoint{i * 200 + k, 0, 0, QStringLiteral("loss"), 1.0, 0, i * 200 + k + 1});
        ws.metrics().ingest(r.id, pts);
      }
    }
    QTest::qWait(400 + QRandomGenerator::global()->bounded(300));
    ::kill(child, SIGKILL);
    int status = 0;
    waitpid(child, &status, 0);
    QVERIFY2(WIFSIGNALED(status), "the writer was still writing when it was killed");

    Workspace ws;
    QString err;
    QVERIFY2(ws.open(tmp.path(), &err), qPrintable(err));
    QString report;
    QVERIFY2(ws.integrityCheck(&report), qPrintable(report));
    QVERIFY(ws.runs().get(QStringLiteral("before")));
    QVERIFY(ws.runs().list().size() > 1);
    // Committed ingest batches are whole: every stored series holds a multiple of 200 points'
    // worth of watermark (all or nothing per transaction).
    for (const RunRecord& r : ws.runs().list()) QCOMPARE(ws.metrics().ingestedSeq(r.id, 0) % 200, 0);
    QVERIFY(ws.runs().upsert(sampleRun(QStringLiteral("after"))));
  }

  void defaultProjectAndDirectory() {
    QTemporaryDir tmp;
    qputenv("FATHOM_WORKSPACE", tmp.filePath("from-env").toUtf8());
    QCOMPARE(Workspace::defaultDir(), tmp.filePath("from-env"));
    qunsetenv("FATHOM_WORKSPACE");
    QVERIFY(Workspace::defaultDir().endsWith(QStringLiteral("/fathom")));

    Workspace ws;
    QString err;
    QVERIFY2(ws.open(tmp.filePath("ws"), &err), qPrintable(err));
    const QString path = ws.ensureDefaultProject();
    QCOMPARE(path, ws.projectsDir() + "/demo.yaml");
    QFile f(path);
    QVERIFY(f.open(QIODevice::ReadOnly));
    const QByteArray text = f.readAll();
    QVERIFY(text.contains("\nextends: demo\n"));
    QVERIFY(text.startsWith("#"));
    f.close();
    // It loads with the embedded preset: a new user can launch it as is.
    fathom::config::LoadOptions opts;
    opts.check_paths = false;
    const auto loaded = fathom::config::load_config_file(path.toStdString(), opts);
    QVERIFY2(loaded.ok(), loaded.errors.empty() ? "" : loaded.errors.front().message().c_str());
    // Never overwritten.
    writeFile(path, "extends: demo\ntrain: {max_steps: 5}\n");
    QCOMPARE(ws.ensureDefaultProject(), path);
    QVERIFY(f.open(QIODevice::ReadOnly));
    QVERIFY(f.readAll().contains("max_steps: 5"));
  }
};

QTEST_GUILESS_MAIN(WorkspaceTest)
#include "test_workspace.moc"
