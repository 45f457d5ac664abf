// CheckpointRepository on real checkpoints (the real fathom-engine, FATHOM_ENGINE_BIN, trains a
// tiny run into a temporary workspace): what inspect() reads from state.json and the run config,
// verification results and exports that survive a rescan (and are dropped when a checkpoint is
// rewritten), deletion with the running-run rule and `latest` rewritten, keep-rule plans, and a
// workspace of schema 2 migrated with its checkpoint rows intact.
#include <QProcess>
#include <QSignalSpy>
#include <QTemporaryDir>
#include <QtTest>

#include <cmath>

#include "cluster/workspace/Migrations.h"
#include "cluster/workspace/Sqlite.h"
#include "cluster/workspace/Workspace.h"

using namespace fathom::cluster;

class CheckpointRepositoryTest : public QObject {
  Q_OBJECT

 private:
  QTemporaryDir m_tmp;
  QString m_engine, m_config;

  QString readFile(const QString& path) {
    QFile f(path);
    return f.open(QIODevice::ReadOnly) ? QString::fromUtf8(f.readAll()) : QString();
  }

  // Trains `id` (a checkpoint every 5 steps, all kept) into `ws`, then rescans it.
  bool train(Workspace& ws, const QString& id, int maxSteps) {
    QProcess p;
    p.setProcessChannelMode(QProcess::MergedChannels);
    p.start(m_engine, {QStringLiteral("train"), m_config, QStringLiteral("--run-dir"), QDir(ws.runsDir()).filePath(id),
                       QStringLiteral("--run-id"), id, QStringLiteral("--no-stdout"), QStringLiteral("--set"),
                       QStringLiteral("train.max_steps=%1").arg(maxSteps)});
    if (!p.waitForFinished(120000) || p.exitCode() != 0) {
      qWarning("%s", p.readAll().constData());
      return false;
    }
    ws.rescan();
    return true;
  }

 private Q_SLOTS:
  void initTestCase() {
    m_engine = qEnvironmentVariable("FATHOM_ENGINE_BIN");
    QVERIFY2(QFileInfo(m_engine).isExecutable(), "FATHOM_ENGINE_BIN must name the built fathom-engine (ctest sets it)");
    QVERIFY(m_tmp.isValid());
    m_config = m_tmp.filePath(QStringLiteral("tiny.yaml"));
    QFile f(m_config);
    QVERIFY(f.open(QIODevice::WriteOnly));
    f.write(QStringLiteral(
                "extends: debug-tiny\n"
                "run: {name: tiny, seed: 7, device: cpu, threads: 1}\n"
                "data: {train: [%1/corpus], seq_len: 32, shards_dir: %2/data, validation_fraction: 0.25}\n"
                "tokenizer: {kind: bpe, vocab_size: 384, path: ''}\n"
                "model: {d_model: 64, n_layers: 2, n_heads: 4, n_kv_heads: 2, d_ff: 0, max_seq_len: 64, vocab_size: 0}\n"
                "train: {micro_batch_size: 8, max_steps: 20, log_interval: 5, eval_interval: 5, eval_batches: 2,\n"
                "        sample_interval: 0, precision: fp32}\n"
                "checkpoint: {save_every_steps: 5, keep_n_latest: 0, async: false}\n")
                .arg(QStringLiteral(FATHOM_FIXTURES_DIR), m_tmp.path())
                .toUtf8());
  }

  void inspectReadsStateAndRunConfig() {
    QTemporaryDir tmp;
    Workspace ws;
    QString err;
    QVERIFY2(ws.open(tmp.path(), &err), qPrintable(err));
    QVERIFY(train(ws, QStringLiteral("a"), 10));
    const auto list = ws.checkpoints().listForRun(QStringLiteral("a"));
    QCOMPARE(list.size(), 2);
    const CheckpointRecord& c = list[1];
    QCOMPARE(c.step, 10);
    QCOMPARE(c.tokens, 10 * 8 * 32);
    QVERIFY(c.verified && c.isWhole());
    QVERIFY(c.integrity.isEmpty());  // never hashed
    QVERIFY(!std::isnan(c.valLoss));
    QVERIFY(c.parentCheckpoint.isEmpty());
    QVERIFY(c.initFrom.isEmpty());
    // A run whose config names model.init_from (a fine-tune): its checkpoints carry it.
    const QString cfg = QDir(ws.runsDir()).filePath(QStringLiteral("a/config.yaml"));
    QFile f(cfg);
    QVERIFY(f.open(QIODevice::Append));
    f.write("\n");  // the resolved config loads; now add the key the way the engine would write it
    f.close();
    QString text = readFile(cfg);
    // The resolved config lists every key, init_from "" included: set it (or add it if absent).
    if (text.contains(QStringLiteral("init_from: \"\"")))
      text.replace(QStringLiteral("init_from: \"\""), QStringLiteral("init_from: \"/models/base/step-100\""));
    else
      text.replace(QStringLiteral("\nmodel:\n"), QStringLiteral("\nmodel:\n  init_from: \"/models/base/step-100\"\n"));
    QVERIFY(f.open(QIODevice::WriteOnly | QIODevice::Truncate));
    f.write(text.toUtf8());
    f.close();
    const auto again = CheckpointRepository::inspect(QStringLiteral("a"), c.path);
    QVERIFY(again);
    QCOMPARE(again->initFrom, QStringLiteral("/models/base/step-100"));
  }

  void verificationAndExportsSurviveRescan() {
    QTemporaryDir tmp;
    Workspace ws;
    QString err;
    QVERIFY2(ws.open(tmp.path(), &err), qPrintable(err));
    QVERIFY(train(ws, QStringLiteral("b"), 10));
    const CheckpointRecord c = ws.checkpoints().listForRun(QStringLiteral("b")).last();
    QSignalSpy changed(&ws, &Workspace::checkpointsChanged);
    QVERIFY(ws.checkpoints().setIntegrity(c.runId, c.path, checkpoint_integrity::damaged, QStringLiteral("model.safetensors: sha256 mismatch")));
    QVERIFY(ws.checkpoints().addExport(c.runId, c.path, tmp.filePath(QStringLiteral("hf1"))));
    QVERIFY(ws.checkpoints().addExport(c.runId, c.path, tmp.filePath(QStringLiteral("hf2"))));
    QCOMPARE(changed.size(), 3);
    auto got = ws.checkpoints().get(c.runId, c.path);
    QVERIFY(got);
    QCOMPARE(got->integrity, checkpoint_integrity::damaged);
    QVERIFY(got->isDamaged() && !got->isWhole());
    QCOMPARE(got->exports, (QStringList{tmp.filePath(QStringLiteral("hf1")), tmp.filePath(QStringLiteral("hf2"))}));
    ws.rescan();  // removes and re-reads every checkpoint row
    got = ws.checkpoints().get(c.runId, c.path);
    QVERIFY(got);
    QCOMPARE(got->integrity, checkpoint_integrity::damaged);
    QCOMPARE(got->exports.size(), 2);
    // A checkpoint written again under the same name (created after the check): the check no
    // longer applies; the exports record history and stay.
    CheckpointRecord newer = *got;
    newer.createdAt = got->checkedAt.addSecs(60);
    QVERIFY(ws.checkpoints().upsert(newer));
    got = ws.checkpoints().get(c.runId, c.path);
    QVERIFY(got->integrity.isEmpty());
    QCOMPARE(got->exports.size(), 2);
    // Removing the checkpoint removes both.
    QVERIFY(ws.checkpoints().remove(c.runId, c.path));
    QVERIFY(!ws.checkpoints().get(c.runId, c.path));
    QVERIFY(ws.checkpoints().upsert(newer));
    QVERIFY(ws.checkpoints().get(c.runId, c.path)->exports.isEmpty());
  }

  void deleteKeepsALiveRunResumableAndFixesLatest() {
    QTemporaryDir tmp;
    Workspace ws;
    QString err;
    QVERIFY2(ws.open(tmp.path(), &err), qPrintable(err));
    QVERIFY(train(ws, QStringLiteral("c"), 20));
    auto run = ws.runs().get(QStringLiteral("c"));
    run->status = run_status::running;
    QVERIFY(ws.runs().upsert(*run));
    QList<CheckpointRecord> all = ws.checkpoints().listForRun(QStringLiteral("c"));
    QCOMPARE(all.size(), 4);
    const QString saveDir = QFileInfo(all.first().path).absolutePath();
    // All four at once would leave the running run nothing to resume from.
    QVERIFY(ws.checkpoints().deletionRefusal(all).contains(QStringLiteral("last whole checkpoint")));
    QVERIFY(ws.checkpoints().deletionRefusal(all.mid(0, 3)).isEmpty());
    // Delete the newest: `latest` moves to step 15, the directory is moved aside first.
    QString trash;
    QVERIFY2(ws.checkpoints().deleteCheckpoint(all[3], &trash), qPrintable(ws.checkpoints().lastError()));
    QCOMPARE(trash, all[3].path + QStringLiteral(".deleting.tmp"));
    QVERIFY(!QFileInfo::exists(all[3].path));
    QVERIFY(CheckpointRepository::removeTree(trash));
    QVERIFY(!QFileInfo::exists(trash));
    QCOMPARE(readFile(saveDir + QStringLiteral("/latest")), QStringLiteral("step-15\n"));
    // Deleting an older one leaves `latest` alone.
    QVERIFY(ws.checkpoints().deleteCheckpoint(all[0], &trash));
    QCOMPARE(CheckpointRepository::latestName(saveDir), QStringLiteral("step-15"));
    // A damaged checkpoint does not count as something to resume from.
    QVERIFY(ws.checkpoints().setIntegrity(QStringLiteral("c"), all[1].path, checkpoint_integrity::damaged, QStringLiteral("x")));
    QVERIFY(!ws.checkpoints().deleteCheckpoint(all[2], &trash));  // step 15 is the last whole one
    QVERIFY(QFileInfo::exists(all[2].path));
    QVERIFY(ws.checkpoints().deleteCheckpoint(all[1], &trash));   // the damaged one may go
    QCOMPARE(ws.checkpoints().listForRun(QStringLiteral("c")).size(), 1);
    // A queued run that is to resume from it keeps it too.
    run->status = run_status::completed;
    QVERIFY(ws.runs().upsert(*run));
    RunRecord queued;
    queued.id = queued.name = QStringLiteral("c-again");
    queued.runDir = tmp.filePath(QStringLiteral("runs/c-again"));
    queued.status = run_status::queued;
    queued.resume = all[2].path + QStringLiteral("/");
    QVERIFY(ws.runs().upsert(queued));
    QVERIFY(ws.checkpoints().deletionRefusal({all[2]}).contains(QStringLiteral("queued to resume")));
    QVERIFY(ws.runs().remove(queued.id));
    // Ended: the last one may go too, and `latest` is removed rather than left dangling.
    run->status = run_status::completed;
    QVERIFY(ws.runs().upsert(*run));
    QVERIFY(ws.checkpoints().deleteCheckpoint(all[2], &trash));
    QVERIFY(!QFileInfo::exists(saveDir + QStringLiteral("/latest")));
    QVERIFY(ws.checkpoints().listForRun(QStringLiteral("c")).isEmpty());
  }

  void keepRulePlans() {
    QTemporaryDir tmp;
    Workspace ws;
    QString err;
    QVERIFY2(ws.open(tmp.path(), &err), qPrintable(err));
    // Rows with chosen losses (the rule is about numbers; the files need not exist to plan).
    RunRecord run;
    run.id = run.name = QStringLiteral("k");
    run.runDir = tmp.path();
    run.status = run_status::completed;
    QVERIFY(ws.runs().upsert(run));
    const double losses[] = {3.0, 2.0, 2.5, 2.8, NAN};
    for (int i = 0; i < 5; ++i) {
      CheckpointRecord c{QStringLiteral("k"), tmp.filePath(QStringLiteral("step-%1").arg((i + 1) * 10)), (i + 1) * 10, 100, losses[i], true,
                         QDateTime::currentDateTime()};
      QVERIFY(ws.checkpoints().upsert(c));
    }
    auto steps = [](const QList<CheckpointRecord>& l) {
      QList<qint64> s;
      for (const auto& c : l) s << c.step;
      return s;
    };
    auto p = ws.checkpoints().planKeepRules(QStringLiteral("k"), 2, 0);
    QCOMPARE(steps(p.keep), (QList<qint64>{40, 50}));
    QCOMPARE(steps(p.remove), (QList<qint64>{10, 20, 30}));
    QCOMPARE(p.freedBytes, 300);
    p = ws.checkpoints().planKeepRules(QStringLiteral("k"), 0, 2);
    QCOMPARE(steps(p.keep), (QList<qint64>{20, 30}));
    p = ws.checkpoints().planKeepRules(QStringLiteral("k"), 1, 1);
    QCOMPARE(steps(p.keep), (QList<qint64>{20, 50}));
    QVERIFY(p.why.join(QLatin1Char('\n')).contains(QStringLiteral("best by validation loss")));
    p = ws.checkpoints().planKeepRules(QStringLiteral("k"), 0, 0);
    QVERIFY(p.remove.isEmpty());
  }

  void migratesASchema2WorkspaceWithItsCheckpoints() {
    QTemporaryDir tmp;
    {
      sql::Database db;
      QString err;
      QVERIFY(db.open(tmp.filePath(QStringLiteral("workspace.db")), &err));
      QVERIFY2(migrateDatabase(db, 2, &err), qPrintable(err));
      QVERIFY(db.exec(QStringLiteral("INSERT INTO runs (id, run_dir, status) VALUES ('old', '/x', 'completed');"
                                     "INSERT INTO checkpoints (run_id, path, step, bytes, verified) VALUES ('old', '/x/step-5', 5, 42, 1)"),
                      &err));
    }
    Workspace ws;
    QString err;
    QVERIFY2(ws.open(tmp.path(), &err), qPrintable(err));
    QCOMPARE(ws.schemaVersion(), latestSchemaVersion());  // migrated all the way up (3 added checkpoint columns, 4 hosts)
    QVERIFY(latestSchemaVersion() >= 3);
    const auto c = ws.checkpoints().get(QStringLiteral("old"), QStringLiteral("/x/step-5"));
    QVERIFY(c);
    QCOMPARE(c->bytes, 42);
    QCOMPARE(c->tokens, 0);
    QVERIFY(c->integrity.isEmpty() && c->exports.isEmpty());
  }
};

QTEST_GUILESS_MAIN(CheckpointRepositoryTest)
#include "test_checkpoint_repository.moc"
