// The checkpoint browser on a real workspace with real checkpoints: the real fathom-engine
// (FATHOM_ENGINE_BIN) trains tiny runs into a temporary workspace, rescan indexes them, and the
// page's actions are driven as a user would (select, click, confirm): list, sort and filter;
// Verify finds a flipped byte; Inspect lists the real tensor names; Delete refuses the last whole
// checkpoint of a running run and otherwise removes directory, row and fixes `latest`; Keep
// rules delete exactly the expected ones; Resume from here starts an engine that resumes from
// that step; Export runs `convert` (skipped, with the reason, while the engine lacks it); the
// disk guard warns; Fine-tune from here hands the Designer a config with model.init_from; a real
// LoRA fine-tune's checkpoints are listed as adapters, merged into a new run (lineage "merged
// from") or a Hugging Face folder through the Merge dialog, exported merged, and continued.
#include <QApplication>
#include <QCheckBox>
#include <QComboBox>
#include <QDialogButtonBox>
#include <QLabel>
#include <QLineEdit>
#include <QMessageBox>
#include <QPlainTextEdit>
#include <QProcess>
#include <QPushButton>
#include <QRadioButton>
#include <QSpinBox>
#include <QStandardPaths>
#include <QTableView>
#include <QTableWidget>
#include <QTextBrowser>
#include <QTemporaryDir>
#include <QTreeWidget>
#include <QtTest>

#include <signal.h>

#include <algorithm>
#include <cmath>
#include <memory>

#include "cluster/jobs/EngineTool.h"
#include "cluster/jobs/JobQueue.h"
#include "cluster/launch/LocalLauncher.h"
#include "cluster/workspace/Workspace.h"
#include "engine/config/config.h"
#include "ui/MainWindow.h"
#include "ui/models/CheckpointTableModel.h"
#include "ui/pages/checkpoints/CheckpointsPage.h"
#include "ui/pages/checkpoints/ExportDialog.h"
#include "ui/pages/checkpoints/InspectDialog.h"
#include "ui/pages/checkpoints/KeepRulesDialog.h"
#include "ui/pages/checkpoints/MergeDialog.h"
#include "ui/pages/finetune/FinetunePage.h"
#include "ui/pages/checkpoints/ResumeDialog.h"

using namespace fathom;
using namespace fathom::ui;
using cluster::CheckpointRecord;

namespace {

QString readFile(const QString& path) {
  QFile f(path);
  return f.open(QIODevice::ReadOnly) ? QString::fromUtf8(f.readAll()) : QString();
}

void flipByte(const QString& path, qint64 offset) {
  QFile f(path);
  QVERIFY(f.open(QIODevice::ReadWrite));
  QVERIFY(f.seek(offset));
  char c = 0;
  QVERIFY(f.getChar(&c));
  QVERIFY(f.seek(offset));
  QVERIFY(f.putChar(static_cast<char>(c ^ 0x5a)));
}

}  // namespace

class TestCheckpointsPage : public QObject {
  Q_OBJECT

 private:
  QString m_engine;
  QTemporaryDir m_tmp;
  QString m_config;
  cluster::Workspace m_ws;
  std::unique_ptr<CheckpointsPage> m_page;
  QList<qint64> m_groups;

  QString runDir(const QString& id) const { return QDir(m_ws.runsDir()).filePath(id); }
  QString ckpt(const QString& id, int step) const { return runDir(id) + QStringLiteral("/checkpoints/step-%1").arg(step); }

  // Trains `id` with the real engine into the workspace (a checkpoint every 5 steps, all kept,
  // validation every 5 steps so each checkpoint has a val loss), then rescans.
  void train(const QString& id, int maxSteps) {
    QProcess p;
    p.setProcessChannelMode(QProcess::MergedChannels);
    p.start(m_engine, {QStringLiteral("train"), m_config, QStringLiteral("--run-dir"), runDir(id), QStringLiteral("--run-id"), id,
                       QStringLiteral("--no-stdout"), QStringLiteral("--set"), QStringLiteral("train.max_steps=%1").arg(maxSteps)});
    QVERIFY(p.waitForFinished(120000));
    QVERIFY2(p.exitCode() == 0, p.readAll().constData());
    QString report;
    m_ws.rescan(&report);
  }

  CheckpointRecord record(const QString& path) {
    const auto r = m_ws.checkpoints().get(QFileInfo(path).dir().absoluteFilePath(QStringLiteral("../..")).section(QLatin1Char('/'), -1), path);
    return r.value_or(CheckpointRecord{});
  }
  CheckpointRecord recordOf(const QString& runId, int step) {
    for (const auto& c : m_ws.checkpoints().listForRun(runId))
      if (c.step == step) return c;
    return {};
  }
  QStringList visibleRuns() const {
    QStringList out;
    for (int r = 0; r < m_page->proxy()->rowCount(); ++r)
      out << m_page->proxy()->index(r, 0).data(CheckpointTableModel::RunIdRole).toString();
    return out;
  }
  QList<qint64> visibleSteps() const {
    QList<qint64> out;
    for (int r = 0; r < m_page->proxy()->rowCount(); ++r)
      out << m_page->proxy()->index(r, CheckpointTableModel::Step).data(CheckpointTableModel::SortRole).toLongLong();
    return out;
  }
  void confirm(QMessageBox* box) {
    QVERIFY(box);
    QTRY_VERIFY(box->isVisible());
    QAbstractButton* yes = box->button(QMessageBox::Yes);
    QVERIFY(yes);
    QTest::mouseClick(yes, Qt::LeftButton);
  }

 private slots:
  void initTestCase() {
    QStandardPaths::setTestModeEnabled(true);
    m_engine = qEnvironmentVariable("FATHOM_ENGINE_BIN");
    QVERIFY2(!m_engine.isEmpty() && QFileInfo(m_engine).isExecutable(),
             "FATHOM_ENGINE_BIN must name the built fathom-engine (ctest sets it)");
    QVERIFY(m_tmp.isValid());
    const QString ws = m_tmp.filePath(QStringLiteral("ws"));
    qputenv("FATHOM_WORKSPACE", ws.toUtf8());
    QString err;
    QVERIFY2(m_ws.open(ws, &err), qPrintable(err));
    // A tiny model on the committed corpus fixture: a run of 20 steps takes about a second.
    m_config = m_tmp.filePath(QStringLiteral("tiny.yaml"));
    QFile f(m_config);
    QVERIFY(f.open(QIODevice::WriteOnly));
    f.write(QStringLiteral(
                "extends: debug-tiny\n"
                "run: {name: tiny, seed: 7, device: cpu, threads: 1, workspace: %1}\n"
                "data: {train: [%2/corpus], seq_len: 32, shards_dir: %3/data, validation_fraction: 0.25}\n"
                "tokenizer: {kind: bpe, vocab_size: 384, path: ''}\n"
                "model: {d_model: 64, n_layers: 2, n_heads: 4, n_kv_heads: 2, d_ff: 0, max_seq_len: 64, vocab_size: 0}\n"
                "train: {micro_batch_size: 8, gradient_accumulation_steps: 1, max_steps: 20, log_interval: 5,\n"
                "        eval_interval: 5, eval_batches: 2, sample_interval: 0, precision: fp32}\n"
                "checkpoint: {save_every_steps: 5, save_interval: 0, keep_n_latest: 0, async: false}\n")
                .arg(ws, QStringLiteral(FATHOM_FIXTURES_DIR), m_tmp.path())
                .toUtf8());
    f.close();
    train(QStringLiteral("alpha"), 20);  // steps 5 10 15 20
    train(QStringLiteral("beta"), 10);   // steps 5 10
    train(QStringLiteral("gamma"), 20);  // keep rules
    train(QStringLiteral("delta"), 5);   // the "running" run: one checkpoint
    m_page = std::make_unique<CheckpointsPage>(&m_ws, nullptr);
    m_page->setEngineBinary(m_engine);
    m_page->resize(1300, 700);
    m_page->show();
    QVERIFY(QTest::qWaitForWindowExposed(m_page.get()));
  }

  void cleanupTestCase() {
    m_page.reset();
    for (qint64 g : m_groups) cluster::LocalLauncher::kill(g);
  }

  void listsSortsAndFilters() {
    CheckpointTableModel* model = m_page->model();
    QAbstractItemModelTester tester(model, QAbstractItemModelTester::FailureReportingMode::QtTest);
    QCOMPARE(model->rowCount(), 4 + 2 + 4 + 1);
    const CheckpointRecord a10 = recordOf(QStringLiteral("alpha"), 10);
    QCOMPARE(a10.path, ckpt(QStringLiteral("alpha"), 10));
    QVERIFY(a10.verified);
    QCOMPARE(a10.tokens, 10 * 8 * 32);  // steps × micro batch × seq_len, from state.json
    QVERIFY(!std::isnan(a10.valLoss));
    QVERIFY(a10.parentCheckpoint.isEmpty());
    const int row = model->rowOf(a10.path);
    QCOMPARE(model->index(row, CheckpointTableModel::Integrity).data().toString(), QStringLiteral("unverified"));
    QCOMPARE(model->index(row, CheckpointTableModel::Size).data(CheckpointTableModel::SortRole).toLongLong(), a10.bytes);
    QVERIFY(model->index(row, CheckpointTableModel::Tokens).data().toString().startsWith(QStringLiteral("2.6K")));

    // Sort by step, ascending and descending.
    m_page->view()->sortByColumn(CheckpointTableModel::Step, Qt::AscendingOrder);
    QList<qint64> steps = visibleSteps();
    QVERIFY(std::is_sorted(steps.begin(), steps.end()));
    m_page->view()->sortByColumn(CheckpointTableModel::Step, Qt::DescendingOrder);
    steps = visibleSteps();
    QVERIFY(std::is_sorted(steps.rbegin(), steps.rend()));
    QCOMPARE(steps.first(), 20);

    // Text filter on the run.
    QTest::keyClicks(m_page->filterEdit(), QStringLiteral("BET"));
    QCOMPARE(visibleRuns(), (QStringList{QStringLiteral("beta"), QStringLiteral("beta")}));
    m_page->filterEdit()->clear();
    QCOMPARE(m_page->proxy()->rowCount(), 11);

    // Run picker, with each run's disk use in its entry.
    QComboBox* picker = m_page->runPicker();
    QCOMPARE(picker->count(), 5);  // All runs + 4
    const int gi = picker->findData(QStringLiteral("gamma"));
    QVERIFY(gi > 0);
    QVERIFY2(picker->itemText(gi).contains(QStringLiteral("4 checkpoint")), qPrintable(picker->itemText(gi)));
    picker->setCurrentIndex(gi);
    QCOMPARE(m_page->proxy()->rowCount(), 4);
    QVERIFY2(m_page->summaryLabel()->text().contains(QStringLiteral("(gamma): 4 checkpoints")), qPrintable(m_page->summaryLabel()->text()));
    picker->setCurrentIndex(0);

    // Summary: count, total and free space.
    qint64 total = 0;
    for (const auto& c : m_ws.checkpoints().listAll()) total += c.bytes;
    const QString summary = m_page->summaryLabel()->text();
    QVERIFY2(summary.startsWith(QStringLiteral("11 checkpoints in 4 runs")), qPrintable(summary));
    QVERIFY2(summary.contains(QStringLiteral("free of")), qPrintable(summary));

    // Verified only: nothing has been hashed yet.
    m_page->verifiedOnlyBox()->setChecked(true);
    QCOMPARE(m_page->proxy()->rowCount(), 0);
    m_page->verifiedOnlyBox()->setChecked(false);
  }

  void verifyFindsAFlippedByte() {
    const QString good = ckpt(QStringLiteral("beta"), 10), bad = ckpt(QStringLiteral("beta"), 5);
    flipByte(bad + QStringLiteral("/model.safetensors"), 4000);
    QSignalSpy done(m_page.get(), &CheckpointsPage::verificationFinished);
    QVERIFY(m_page->selectCheckpoint(good));
    m_page->action(QStringLiteral("verify"))->trigger();
    QVERIFY(m_page->selectCheckpoint(bad));
    m_page->action(QStringLiteral("verify"))->trigger();
    QVERIFY(m_page->isVerifying());
    QTRY_COMPARE_WITH_TIMEOUT(done.size(), 2, 30000);
    QCOMPARE(done.at(0).at(0).toString(), good);
    QCOMPARE(done.at(0).at(1).toString(), QStringLiteral("verified"));
    QCOMPARE(done.at(1).at(0).toString(), bad);
    QCOMPARE(done.at(1).at(1).toString(), QStringLiteral("damaged"));

    // The results reloaded the table; the selection survived.
    QCOMPARE(m_page->selectedCheckpoints().size(), 1);
    QCOMPARE(m_page->selectedCheckpoints().first().path, bad);
    const CheckpointRecord g = recordOf(QStringLiteral("beta"), 10), b = recordOf(QStringLiteral("beta"), 5);
    QCOMPARE(g.integrity, QStringLiteral("verified"));
    QCOMPARE(b.integrity, QStringLiteral("damaged"));
    QVERIFY2(b.integrityDetail.startsWith(QStringLiteral("model.safetensors: sha256 mismatch")), qPrintable(b.integrityDetail));
    QVERIFY(!b.integrityDetail.contains(QStringLiteral("optimizer")));  // only the damaged file
    const int row = m_page->model()->rowOf(bad);
    QCOMPARE(m_page->model()->index(row, CheckpointTableModel::Integrity).data().toString(),
             QStringLiteral("✗ damaged: model.safetensors: sha256 mismatch"));
    // The user is told, with the file.
    QVERIFY(m_page->messageBox());
    QVERIFY(m_page->messageBox()->text().contains(QStringLiteral("model.safetensors: sha256 mismatch")));
    m_page->messageBox()->close();
    // Verified only now shows the good one; a rescan (which rebuilds the rows) keeps the results.
    m_page->verifiedOnlyBox()->setChecked(true);
    QCOMPARE(m_page->proxy()->rowCount(), 1);
    m_ws.rescan();
    QCOMPARE(m_page->proxy()->rowCount(), 1);
    QCOMPARE(recordOf(QStringLiteral("beta"), 5).integrity, QStringLiteral("damaged"));
    m_page->verifiedOnlyBox()->setChecked(false);
    // A damaged checkpoint cannot be resumed from or exported.
    QVERIFY(m_page->selectCheckpoint(bad));
    QVERIFY(!m_page->action(QStringLiteral("finetune"))->isEnabled());
    QVERIFY(!m_page->action(QStringLiteral("export"))->isEnabled());
  }

  void inspectShowsTheRealTensorNames() {
    QVERIFY(m_page->selectCheckpoint(ckpt(QStringLiteral("alpha"), 10)));
    InspectDialog* d = m_page->inspectSelected();
    QVERIFY(d);
    QSignalSpy loaded(d, &InspectDialog::loaded);
    QTRY_VERIFY_WITH_TIMEOUT(!d->isLoading(), 20000);
    if (loaded.isEmpty()) QVERIFY(loaded.wait(5000));
    QCOMPARE(loaded.first().first().toBool(), true);
    const QStringList names = d->tensorNames();
    QVERIFY2(names.contains(QStringLiteral("model.embed_tokens.weight")), qPrintable(names.join(QLatin1Char(','))));
    QVERIFY(names.contains(QStringLiteral("model.layers.1.self_attn.q_proj.weight")));
    QVERIFY(names.contains(QStringLiteral("model.norm.weight")));
    // Shape and dtype of the embedding: [vocab, d_model], f32.
    for (int r = 0; r < d->table()->rowCount(); ++r) {
      if (d->table()->item(r, 0)->text() != QLatin1String("model.embed_tokens.weight")) continue;
      QCOMPARE(d->table()->item(r, 1)->text(), QStringLiteral("F32"));
      QVERIFY2(d->table()->item(r, 2)->text().endsWith(QStringLiteral(", 64]")), qPrintable(d->table()->item(r, 2)->text()));
    }
    QVERIFY(d->summary()->text().contains(QStringLiteral("header only")));
    d->close();
  }

  void deleteRefusesTheLastCheckpointOfARunningRun() {
    // delta has one checkpoint; the registry says delta is running.
    auto run = m_ws.runs().get(QStringLiteral("delta"));
    QVERIFY(run);
    run->status = cluster::run_status::running;
    QVERIFY(m_ws.runs().upsert(*run));
    const QString only = ckpt(QStringLiteral("delta"), 5);
    QVERIFY(m_page->selectCheckpoint(only));
    QMessageBox* box = m_page->deleteSelected();
    QVERIFY(box);
    QCOMPARE(box->icon(), QMessageBox::Warning);
    QVERIFY2(box->text().contains(QStringLiteral("last whole checkpoint")), qPrintable(box->text()));
    QVERIFY(!box->button(QMessageBox::Yes));  // nothing to confirm
    box->close();
    QVERIFY(QFileInfo(only).isDir());
    QCOMPARE(m_ws.checkpoints().listForRun(QStringLiteral("delta")).size(), 1);
    // Once the run has ended, it may go.
    run->status = cluster::run_status::completed;
    QVERIFY(m_ws.runs().upsert(*run));
    QVERIFY(m_page->selectCheckpoint(only));
    confirm(m_page->deleteSelected());
    QTRY_VERIFY(!QFileInfo::exists(only));
    QVERIFY(m_ws.checkpoints().listForRun(QStringLiteral("delta")).isEmpty());
    // No whole checkpoint left: `latest` is gone rather than naming a missing directory.
    QVERIFY(!QFileInfo::exists(runDir(QStringLiteral("delta")) + QStringLiteral("/checkpoints/latest")));
  }

  void deleteRemovesDirectoryRowAndFixesLatest() {
    const QString saveDir = runDir(QStringLiteral("alpha")) + QStringLiteral("/checkpoints");
    QCOMPARE(readFile(saveDir + QStringLiteral("/latest")).trimmed(), QStringLiteral("step-20"));
    // A running run may lose a checkpoint as long as a whole one is left.
    auto run = m_ws.runs().get(QStringLiteral("alpha"));
    run->status = cluster::run_status::running;
    QVERIFY(m_ws.runs().upsert(*run));
    const QString doomed = ckpt(QStringLiteral("alpha"), 20);
    QVERIFY(m_page->selectCheckpoint(doomed));
    QSignalSpy deleted(m_page.get(), &CheckpointsPage::deleted);
    QMessageBox* box = m_page->deleteSelected();
    QVERIFY(box->text().contains(QStringLiteral("step 20")));
    QVERIFY(box->text().contains(QStringLiteral("MiB")) || box->text().contains(QStringLiteral("KiB")));
    confirm(box);
    QCOMPARE(deleted.size(), 1);
    QVERIFY(!QFileInfo::exists(doomed));
    QTRY_VERIFY(!QFileInfo::exists(doomed + QStringLiteral(".deleting.tmp")));  // removed on a pool thread
    QVERIFY(!m_ws.checkpoints().get(QStringLiteral("alpha"), doomed));
    QCOMPARE(m_page->model()->rowOf(doomed), -1);
    QCOMPARE(readFile(saveDir + QStringLiteral("/latest")), QStringLiteral("step-15\n"));
    // The engine agrees: --resume auto would pick step 15.
    QByteArray out;
    QString err;
    cluster::EngineTool::runBlocking(m_engine, {QStringLiteral("inspect"), saveDir, QStringLiteral("--json")}, &out, &err);
    QCOMPARE(QJsonDocument::fromJson(out).object().value(QStringLiteral("latest")).toString(), QStringLiteral("step-15"));
    run->status = cluster::run_status::completed;
    QVERIFY(m_ws.runs().upsert(*run));
  }

  void keepRulesDeleteExactlyTheExpectedOnes() {
    const QList<CheckpointRecord> before = m_ws.checkpoints().listForRun(QStringLiteral("gamma"));
    QCOMPARE(before.size(), 4);
    // Expected: the newest (step 20) and the one with the lowest validation loss.
    CheckpointRecord best = before.first();
    for (const auto& c : before)
      if (c.valLoss < best.valLoss) best = c;
    QSet<qint64> keep = {20, best.step};
    m_page->runPicker()->setCurrentIndex(m_page->runPicker()->findData(QStringLiteral("gamma")));
    KeepRulesDialog* d = m_page->openKeepRules();
    QVERIFY(d);
    QCOMPARE(d->runCombo()->currentData().toString(), QStringLiteral("gamma"));
    d->setRules(true, 1, true, 1);
    QCOMPARE(d->plan().keep.size(), keep.size());
    QCOMPARE(d->plan().remove.size(), 4 - keep.size());
    // The preview says the same, row by row.
    for (int i = 0; i < d->preview()->topLevelItemCount(); ++i) {
      QTreeWidgetItem* it = d->preview()->topLevelItem(i);
      const qint64 step = it->text(0).toLongLong();
      QCOMPARE(it->text(3), keep.contains(step) ? QStringLiteral("keep") : QStringLiteral("delete"));
    }
    // Rules off: nothing to delete.
    d->setRules(false, 1, false, 1);
    QVERIFY(d->plan().remove.isEmpty());
    QVERIFY(!d->applyButton()->isEnabled());
    d->setRules(true, 1, true, 1);
    QVERIFY(d->applyButton()->isEnabled());
    QTest::mouseClick(d->applyButton(), Qt::LeftButton);
    QSet<qint64> left;
    for (const auto& c : m_ws.checkpoints().listForRun(QStringLiteral("gamma"))) left.insert(c.step);
    QCOMPARE(left, keep);
    for (const auto& c : before) QCOMPARE(QFileInfo(c.path).isDir(), keep.contains(c.step));
    m_page->runPicker()->setCurrentIndex(0);

    // The same safety rule: on a running run whose only whole checkpoint would go, it refuses.
    auto run = m_ws.runs().get(QStringLiteral("gamma"));
    run->status = cluster::run_status::running;
    QVERIFY(m_ws.runs().upsert(*run));
    const auto plan = m_ws.checkpoints().planKeepRules(QStringLiteral("gamma"), 0, 0);
    QVERIFY(plan.remove.isEmpty());  // no rule, no deletion
    QString refusal = m_ws.checkpoints().deletionRefusal(m_ws.checkpoints().listForRun(QStringLiteral("gamma")));
    QVERIFY(refusal.contains(QStringLiteral("last whole checkpoint")));
    run->status = cluster::run_status::completed;
    QVERIFY(m_ws.runs().upsert(*run));
  }

  void diskGuardWarns() {
    const qint64 latest = recordOf(QStringLiteral("alpha"), 15).bytes;
    m_page->setDiskSpaceForTesting(qint64(1) << 40, qint64(2) << 40);
    QVERIFY(m_page->diskBanner()->isHidden());
    m_page->setDiskSpaceForTesting(latest, qint64(2) << 40);  // less than twice a latest checkpoint
    QVERIFY(m_page->diskBanner()->isVisible());
    QVERIFY2(m_page->diskBanner()->text().contains(QStringLiteral("less than twice")), qPrintable(m_page->diskBanner()->text()));
    m_page->setDiskSpaceForTesting(qint64(40) << 30, qint64(1) << 40);  // 40 GiB of 1 TiB: under 5 %
    QVERIFY(m_page->diskBanner()->isVisible());
    QVERIFY(m_page->diskBanner()->text().contains(QStringLiteral("3.9%")));
    QVERIFY(CheckpointsPage::diskWarning(100, 1000, 10, QStringLiteral("r"), QStringLiteral("/")).isEmpty());
    QVERIFY(!CheckpointsPage::diskWarning(19, 1000, 10, QStringLiteral("r"), QStringLiteral("/")).isEmpty());
    QVERIFY(!CheckpointsPage::diskWarning(49, 1000, 0, QStringLiteral("r"), QStringLiteral("/")).isEmpty());
    m_page->setDiskSpaceForTesting(-1, -1);  // the real volume again
  }

  void fineTuneHandsTheDesignerAConfigWithInitFrom() {
    const QString src = ckpt(QStringLiteral("alpha"), 10);
    QVERIFY(m_page->selectCheckpoint(src));
    QVERIFY(m_page->action(QStringLiteral("finetune"))->isEnabled());
    QVERIFY(m_page->action(QStringLiteral("finetune"))->toolTip().contains(QStringLiteral("#6")));
    QVERIFY(m_page->action(QStringLiteral("playground"))->isEnabled());
    QVERIFY(m_page->action(QStringLiteral("playground"))->toolTip().contains(QStringLiteral("fathom-engine serve")));
    QSignalSpy spy(m_page.get(), &CheckpointsPage::fineTuneRequested);
    m_page->action(QStringLiteral("finetune"))->trigger();
    QCOMPARE(spy.size(), 1);
    const QString yaml = spy.first().first().toString();
    config::LoadOptions o;
    o.check_paths = false;
    const auto loaded = config::load_config_text(yaml.toStdString(), (m_tmp.path() + QStringLiteral("/ft.yaml")).toStdString(), o);
    QVERIFY2(loaded.ok(), loaded.ok() ? "" : loaded.errors.front().message().c_str());
    QCOMPARE(QString::fromStdString(loaded.config.model.init_from), src);
    QCOMPARE(QString::fromStdString(loaded.config.run.name), m_ws.runs().get(QStringLiteral("alpha"))->name + QStringLiteral("-ft"));
    // From a project file launched with overrides: they are kept.
    cluster::RunRecord launched;
    launched.id = launched.name = QStringLiteral("proj");
    launched.configPath = m_config;
    launched.overrides = {QStringLiteral("train.max_steps=77"), QStringLiteral("optimizer.lr=0.0005")};
    cluster::CheckpointRecord ck;
    ck.runId = launched.id;
    ck.path = src;
    ck.step = 10;
    const QString text = CheckpointsPage::fineTuneYaml(ck, launched);
    const auto fromProject = config::load_config_text(text.toStdString(), m_config.toStdString(), o);
    QVERIFY2(fromProject.ok(), qPrintable(text));
    QCOMPARE(fromProject.config.train.max_steps, 77);
    QCOMPARE(fromProject.config.optimizer.lr, 0.0005);
    QCOMPARE(QString::fromStdString(fromProject.config.model.init_from), src);
    QVERIFY(text.contains(QStringLiteral("extends: debug-tiny")));  // still the user's file, not the resolved dump
  }

  void fineTunedRunShowsItsOrigin() {
    // A run started with model.init_from (what Fine-tune from here configures): its checkpoints
    // say where they came from.
    const QString base = ckpt(QStringLiteral("alpha"), 5);
    QProcess p;
    p.setProcessChannelMode(QProcess::MergedChannels);
    p.start(m_engine, {QStringLiteral("train"), m_config, QStringLiteral("--run-dir"), runDir(QStringLiteral("epsilon")),
                       QStringLiteral("--run-id"), QStringLiteral("epsilon"), QStringLiteral("--no-stdout"), QStringLiteral("--set"),
                       QStringLiteral("train.max_steps=5"), QStringLiteral("--set"), QStringLiteral("model.init_from=") + base});
    QVERIFY(p.waitForFinished(120000));
    const QString out = QString::fromUtf8(p.readAll());
    if (p.exitCode() != 0 && out.contains(QStringLiteral("unknown key 'model.init_from'")))
      QSKIP("this fathom-engine does not know model.init_from yet (being added with issue 6)");
    QVERIFY2(p.exitCode() == 0, qPrintable(out));
    m_ws.rescan();
    const CheckpointRecord c = recordOf(QStringLiteral("epsilon"), 5);
    QCOMPARE(c.initFrom, base);
    QCOMPARE(CheckpointTableModel::lineageText(c), QStringLiteral("fine-tuned from alpha step 5"));
    QVERIFY(m_page->selectCheckpoint(c.path));
    QVERIFY(m_page->details()->toPlainText().contains(QStringLiteral("Fine-tuned from ") + base));
  }

  void exportCallsConvert() {
    const QString src = ckpt(QStringLiteral("alpha"), 15);
    QVERIFY(m_page->selectCheckpoint(src));
    ExportDialog* d = m_page->exportSelected();
    QVERIFY(d);
    const QString out = m_tmp.filePath(QStringLiteral("hf-alpha-15"));
    d->outputEdit()->setText(out);
    QSignalSpy done(d, &ExportDialog::exportFinished);
    QVERIFY(d->start());
    QVERIFY(d->isRunning());
    QVERIFY(done.wait(120000));
    const bool ok = done.first().at(0).toBool(), unknown = done.first().at(1).toBool();
    if (unknown) {
      // The dialog shows the engine's own words, and nothing is recorded.
      QVERIFY2(d->resultLabel()->text().contains(QStringLiteral("unknown command")), qPrintable(d->resultLabel()->text()));
      QVERIFY(recordOf(QStringLiteral("alpha"), 15).exports.isEmpty());
      d->close();
      QSKIP("this fathom-engine has no `convert` command yet (issue 5, being written); the dialog reported it");
    }
    QVERIFY2(ok, qPrintable(d->resultLabel()->text() + QStringLiteral("\n") + d->log()->toPlainText()));
    QVERIFY(QFileInfo(out + QStringLiteral("/config.json")).isFile());
    QVERIFY(QFileInfo(out + QStringLiteral("/model.safetensors")).isFile() ||
            QFileInfo(out + QStringLiteral("/model.safetensors.index.json")).isFile());
    const CheckpointRecord c = recordOf(QStringLiteral("alpha"), 15);
    QCOMPARE(c.exports, QStringList{out});
    const int row = m_page->model()->rowOf(src);
    QVERIFY(m_page->model()->index(row, CheckpointTableModel::Lineage).data().toString().contains(QStringLiteral("exported to hf-alpha-15")));
    d->close();
  }

  void resumeFromHereStartsARunThatResumesAtThatStep() {
    cluster::JobQueue queue(&m_ws);
    queue.setEngineBinary(m_engine);
    CheckpointsPage page(&m_ws, &queue);
    page.show();
    const QString src = ckpt(QStringLiteral("alpha"), 10);
    QVERIFY(page.selectCheckpoint(src));
    QVERIFY(page.action(QStringLiteral("resume"))->isEnabled());
    ResumeDialog* d = page.resumeSelected();
    QVERIFY(d);
    QTRY_VERIFY(d->isVisible());
    // max_steps 20 > 10 already; ask for a different schedule end through an override.
    d->overridesEdit()->setPlainText(QStringLiteral("train.max_steps=12\ncheckpoint.save_every_steps=0\n"));
    d->nameEdit()->setText(QStringLiteral("alpha-again"));
    QTRY_VERIFY(d->preview()->toPlainText().contains(QStringLiteral("--set train.max_steps=12")));
    QVERIFY(d->problemLabel()->text().contains(QStringLiteral("Ready")));
    QVERIFY(d->preview()->toPlainText().contains(QStringLiteral("--resume ") + src));
    // An override that is not key=value is refused before anything starts.
    d->overridesEdit()->setPlainText(QStringLiteral("train.max_steps\n"));
    QTRY_VERIFY(d->problemLabel()->text().contains(QStringLiteral("not key=value")));
    d->overridesEdit()->setPlainText(QStringLiteral("train.max_steps=12\n"));
    QSignalSpy launched(&page, &CheckpointsPage::runLaunched);
    auto* go = d->findChild<QPushButton*>(QStringLiteral("launch"));
    QTRY_VERIFY(go->isEnabled());
    QTest::mouseClick(go, Qt::LeftButton);
    QCOMPARE(launched.size(), 1);
    const QString id = launched.first().first().toString();
    QVERIFY(id.startsWith(QStringLiteral("alpha-again-")));
    if (const auto r = m_ws.runs().get(id); r && r->pgid > 0) m_groups << r->pgid;
    QTRY_VERIFY_WITH_TIMEOUT(m_ws.runs().get(id) && cluster::isFinalStatus(m_ws.runs().get(id)->status), 120000);
    const auto run = m_ws.runs().get(id);
    QVERIFY2(run->status == cluster::run_status::completed, qPrintable(run->status + QStringLiteral(": ") + run->error));
    QCOMPARE(run->parentRunId, QStringLiteral("alpha"));
    QCOMPARE(run->lastStep, 12);
    // The engine says so: a `resumed` event at step 10 from that directory, and on stderr.
    const QString events = readFile(QDir(run->runDir).filePath(QStringLiteral("events.jsonl")));
    bool resumed = false;
    for (const QString& line : events.split(QLatin1Char('\n'), Qt::SkipEmptyParts)) {
      const QJsonObject data = QJsonDocument::fromJson(line.toUtf8()).object().value(QStringLiteral("data")).toObject();
      if (data.value(QStringLiteral("name")).toString() == QLatin1String("resumed")) {
        QCOMPARE(data.value(QStringLiteral("step")).toInt(), 10);
        QCOMPARE(data.value(QStringLiteral("path")).toString(), src);
        resumed = true;
      }
    }
    QVERIFY2(resumed, qPrintable(events.left(2000)));
    QVERIFY(readFile(QDir(run->runDir).filePath(QStringLiteral("stderr.log"))).contains(QStringLiteral("at step 10")));
    // Its final checkpoint shows where it came from.
    QTRY_VERIFY_WITH_TIMEOUT(!m_ws.checkpoints().listForRun(id).isEmpty(), 10000);
    const CheckpointRecord last = m_ws.checkpoints().listForRun(id).last();
    QCOMPARE(last.step, 12);
    QCOMPARE(last.parentCheckpoint, src);
    QCOMPARE(CheckpointTableModel::lineageText(last), QStringLiteral("resumed from alpha step 10"));
  }

  // A LoRA fine-tune's checkpoints (issue 6) are adapters: listed as such, merged into their base
  // through the Merge dialog (a new run here, or a Hugging Face folder), exported merged, and
  // "Fine-tune from here" continues the adapter on its base.
  void loraAdaptersAreListedMergedAndExported() {
    train(QStringLiteral("zeta"), 10);  // the base: steps 5 10
    const QString base = ckpt(QStringLiteral("zeta"), 10);
    const QString cfg = m_tmp.filePath(QStringLiteral("ft.yaml"));
    {
      QFile f(cfg);
      QVERIFY(f.open(QIODevice::WriteOnly));
      f.write(QStringLiteral(
                  "extends: debug-tiny\n"
                  "run: {name: ft, seed: 11, device: cpu, threads: 1, workspace: %1}\n"
                  "model: {max_seq_len: 64}\n"
                  "lora: {enabled: true, base: %2, r: 8, lora_alpha: 16, dropout: 0.0, target_modules: [q_proj, v_proj]}\n"
                  "data: {task: instruct, train: [%3/instruct/tiny.jsonl], seq_len: 64, validation_fraction: 0.1}\n"
                  "train: {micro_batch_size: 4, max_steps: 6, log_interval: 1, eval_interval: 0, sample_interval: 0}\n"
                  "checkpoint: {save_every_steps: 3, save_interval: 0, keep_n_latest: 0, async: false}\n")
                  .arg(m_ws.dir(), base, QStringLiteral(FATHOM_FIXTURES_DIR))
                  .toUtf8());
    }
    QProcess p;
    p.setProcessChannelMode(QProcess::MergedChannels);
    p.start(m_engine, {QStringLiteral("finetune"), cfg, QStringLiteral("--run-dir"), runDir(QStringLiteral("ft")), QStringLiteral("--run-id"),
                       QStringLiteral("ft"), QStringLiteral("--no-stdout")});
    QVERIFY(p.waitForFinished(120000));
    QVERIFY2(p.exitCode() == 0, p.readAll().constData());
    m_ws.rescan();

    // Recognised: kind, rank, base and targets from adapter_config.json / state.json.
    const QString adapter = ckpt(QStringLiteral("ft"), 6);
    const CheckpointRecord a = recordOf(QStringLiteral("ft"), 6);
    QCOMPARE(a.path, adapter);
    QVERIFY(a.lora && a.isAdapter());
    QCOMPARE(a.loraR, 8);
    QCOMPARE(a.loraAlpha, 16.0);
    QCOMPARE(a.loraBase, base);
    QCOMPARE(a.loraTargets, (QStringList{QStringLiteral("q_proj"), QStringLiteral("v_proj")}));
    QVERIFY(!recordOf(QStringLiteral("zeta"), 10).lora);
    const int row = m_page->model()->rowOf(adapter);
    QVERIFY(row >= 0);
    QCOMPARE(m_page->model()->index(row, CheckpointTableModel::Lineage).data().toString(), QStringLiteral("LoRA adapter (r 8) on zeta step 10"));
    QVERIFY(m_page->selectCheckpoint(adapter));
    const QString details = m_page->details()->toPlainText();
    QVERIFY2(details.contains(QStringLiteral("LoRA adapter, r 8")) && details.contains(base) && details.contains(QStringLiteral("q_proj, v_proj")),
             qPrintable(details));
    QVERIFY(m_page->action(QStringLiteral("merge"))->isEnabled());
    QVERIFY(m_page->action(QStringLiteral("export"))->isEnabled());
    QVERIFY(m_page->action(QStringLiteral("playground"))->isEnabled());
    QVERIFY(m_page->action(QStringLiteral("playground"))->toolTip().contains(QStringLiteral("fathom-engine serve")));
    QVERIFY(m_page->selectCheckpoint(base));
    QVERIFY(!m_page->action(QStringLiteral("merge"))->isEnabled());  // not an adapter

    // Merge into base, as a Fathom run in the workspace: the default name, the click, the run.
    QVERIFY(m_page->selectCheckpoint(adapter));
    m_page->action(QStringLiteral("merge"))->trigger();
    MergeDialog* d = m_page->findChild<MergeDialog*>();
    QVERIFY(d);
    QTRY_VERIFY(d->isVisible());
    QCOMPARE(d->nameEdit()->text(), QStringLiteral("ft-merged-step6"));
    QCOMPARE(d->outputDir(), runDir(QStringLiteral("ft-merged-step6")));
    QVERIFY(d->fathomButton()->isChecked());
    QSignalSpy merged(d, &MergeDialog::mergeFinished);
    QTest::mouseClick(d->mergeButton(), Qt::LeftButton);
    QVERIFY2(d->isRunning() || !merged.isEmpty(), qPrintable(d->resultLabel()->text()));
    QVERIFY(merged.size() == 1 || merged.wait(120000));
    QVERIFY2(merged.first().at(0).toBool(), qPrintable(d->resultLabel()->text() + QStringLiteral("\n") + d->log()->toPlainText()));
    QCOMPARE(merged.first().at(1).toString(), QStringLiteral("ft-merged-step6"));
    QVERIFY(d->log()->toPlainText().contains(QStringLiteral("lora merge")));
    const QString mergedCkpt = ckpt(QStringLiteral("ft-merged-step6"), 0);
    QVERIFY(QFileInfo(mergedCkpt + QStringLiteral("/model.safetensors")).isFile());
    auto checkMergedRun = [&] {
      const auto run = m_ws.runs().get(QStringLiteral("ft-merged-step6"));
      QVERIFY(run);
      QCOMPARE(run->name, QStringLiteral("ft-merged-step6"));
      QCOMPARE(run->status, cluster::run_status::completed);
      const CheckpointRecord m = recordOf(QStringLiteral("ft-merged-step6"), 0);
      QCOMPARE(m.path, mergedCkpt);
      QVERIFY(m.isWhole());
      QVERIFY(!m.lora);
      QCOMPARE(m.mergedFrom, adapter);
      QCOMPARE(CheckpointTableModel::lineageText(m), QStringLiteral("merged from ft step 6"));
      const int mr = m_page->model()->rowOf(mergedCkpt);
      QVERIFY(mr >= 0);
      QCOMPARE(m_page->model()->index(mr, CheckpointTableModel::Lineage).data().toString(), QStringLiteral("merged from ft step 6"));
    };
    checkMergedRun();
    // The page selected the new checkpoint; its lineage names adapter and base.
    QCOMPARE(m_page->selectedCheckpoints().size(), 1);
    QCOMPARE(m_page->selectedCheckpoints().first().path, mergedCkpt);
    QVERIFY2(m_page->details()->toPlainText().contains(QStringLiteral("Merged from the adapter ") + adapter + QStringLiteral(" into the base ") + base),
             qPrintable(m_page->details()->toPlainText()));
    // A rescan (files are the truth) keeps it as it is.
    m_ws.rescan();
    checkMergedRun();
    // The same name again is refused before anything runs.
    QVERIFY(!d->start());
    QVERIFY(d->resultLabel()->text().contains(QStringLiteral("already has a run")));
    d->close();

    // Merge into a Hugging Face folder from the same dialog, recorded as an export of the adapter.
    QVERIFY(m_page->selectCheckpoint(adapter));
    d = m_page->mergeSelected();
    QVERIFY(d);
    d->huggingFaceButton()->setChecked(true);
    const QString hfMerged = m_tmp.filePath(QStringLiteral("hf-ft-6-merged"));
    d->hfOutputEdit()->setText(hfMerged);
    d->dtypeBox()->setCurrentText(QStringLiteral("bf16"));
    QSignalSpy mergedHf(d, &MergeDialog::mergeFinished);
    QVERIFY2(d->start(), qPrintable(d->resultLabel()->text()));
    QVERIFY(mergedHf.wait(120000));
    QVERIFY2(mergedHf.first().at(0).toBool(), qPrintable(d->resultLabel()->text() + QStringLiteral("\n") + d->log()->toPlainText()));
    QVERIFY(d->log()->toPlainText().contains(QStringLiteral("--to hf --dtype bf16")));
    QVERIFY(QFileInfo(hfMerged + QStringLiteral("/config.json")).isFile());
    QVERIFY(QFileInfo(hfMerged + QStringLiteral("/model.safetensors")).isFile());
    QVERIFY(!QFileInfo::exists(hfMerged + QStringLiteral(".fathom.tmp")));
    QCOMPARE(recordOf(QStringLiteral("ft"), 6).exports, QStringList{hfMerged});
    d->close();

    // Export on an adapter: lora merge --to hf (the dialog says so), recorded like other exports.
    const QString adapter3 = ckpt(QStringLiteral("ft"), 3);
    QVERIFY(m_page->selectCheckpoint(adapter3));
    ExportDialog* e = m_page->exportSelected();
    QVERIFY(e);
    QVERIFY(e->windowTitle().contains(QStringLiteral("merged into its base")));
    const QString hf = m_tmp.filePath(QStringLiteral("hf-ft-3"));
    e->outputEdit()->setText(hf);
    QSignalSpy exported(e, &ExportDialog::exportFinished);
    QVERIFY2(e->start(), qPrintable(e->resultLabel()->text()));
    QVERIFY(e->log()->toPlainText().contains(QStringLiteral("$ fathom-engine lora merge ") + adapter3 + QStringLiteral(" --to hf --out ") + hf));
    QVERIFY(exported.wait(120000));
    QVERIFY2(exported.first().at(0).toBool(), qPrintable(e->resultLabel()->text() + QStringLiteral("\n") + e->log()->toPlainText()));
    QVERIFY(QFileInfo(hf + QStringLiteral("/config.json")).isFile());
    QVERIFY(QFileInfo(hf + QStringLiteral("/model.safetensors")).isFile());
    QVERIFY(!QFileInfo::exists(hf + QStringLiteral(".fathom.tmp")));
    QCOMPARE(recordOf(QStringLiteral("ft"), 3).exports, QStringList{hf});
    QCOMPARE(m_page->model()->index(m_page->model()->rowOf(adapter3), CheckpointTableModel::Lineage).data().toString(),
             QStringLiteral("LoRA adapter (r 8) on zeta step 10 · exported to hf-ft-3"));
    e->close();

    // Fine-tune from here on an adapter: the config continues it (lora.adapter) on its base.
    config::LoadOptions o;
    o.check_paths = false;
    const QString yaml = CheckpointsPage::fineTuneYaml(a, *m_ws.runs().get(QStringLiteral("ft")));
    const auto loaded = config::load_config_text(yaml.toStdString(), cfg.toStdString(), o);
    QVERIFY2(loaded.ok(), qPrintable(yaml));
    QCOMPARE(QString::fromStdString(loaded.config.lora.adapter), adapter);
    QCOMPARE(QString::fromStdString(loaded.config.lora.base), base);
    QVERIFY(loaded.config.model.init_from.empty());
    // ... and in the window, the Fine-tune page gets the base and lora.adapter.
    cluster::JobQueue queue(&m_ws);
    queue.setEngineBinary(m_engine);
    MainWindow w(&m_ws, &queue);
    w.show();
    QVERIFY(w.checkpoints()->selectCheckpoint(adapter));
    w.checkpoints()->action(QStringLiteral("finetune"))->trigger();
    QCOMPARE(w.currentPage(), int(MainWindow::FinetuneMode));
    QCOMPARE(w.finetune()->base().dir, base);
    QVERIFY(w.finetune()->base().isValid());
    QCOMPARE(w.finetune()->adapter(), adapter);
    QCOMPARE(w.finetune()->rBox()->value(), 8);
    const auto page = config::load_config_text(w.finetune()->configText().toStdString(), cfg.toStdString(), o);
    QVERIFY2(page.ok(), qPrintable(w.finetune()->configText()));
    QCOMPARE(QString::fromStdString(page.config.lora.adapter), adapter);
    QCOMPARE(QString::fromStdString(page.config.lora.base), base);
    // The Fine-tune page offers no adapter as a base.
    for (int i = 0; i < w.finetune()->checkpointPicker()->count(); ++i)
      QVERIFY(!w.finetune()->checkpointPicker()->itemData(i).toString().startsWith(runDir(QStringLiteral("ft")) + QLatin1Char('/')));
  }

  // docs/screenshots/checkpoints.png from the state the tests above left (verified, damaged,
  // deleted, resumed, LoRA adapter, merged): FATHOM_SCREENSHOT_DIR=docs/screenshots xvfb-run -a -s "-screen 0 1600x1000x24"
  // build-ui/bin/test_ui_checkpoints_page -platform xcb (with FATHOM_ENGINE_BIN set).
  void screenshot() {
    const QString dir = qEnvironmentVariable("FATHOM_SCREENSHOT_DIR");
    if (dir.isEmpty()) QSKIP("set FATHOM_SCREENSHOT_DIR to write checkpoints.png");
    cluster::JobQueue queue(&m_ws);
    queue.setEngineBinary(m_engine);
    MainWindow w(&m_ws, &queue);
    w.resize(1600, 1000);
    w.show();
    QVERIFY(QTest::qWaitForWindowExposed(&w));
    w.setCurrentPage(MainWindow::CheckpointsMode);
    CheckpointsPage* page = w.checkpoints();
    page->view()->sortByColumn(CheckpointTableModel::Created, Qt::DescendingOrder);
    // A LoRA adapter (with its merged run and exports beside it): its base and targets in the
    // details pane, every action it allows (Merge into base among them).
    QVERIFY(page->selectCheckpoint(ckpt(QStringLiteral("ft"), 6)));
    QTest::qWait(500);
    QVERIFY(w.grab().save(QDir(dir).filePath(QStringLiteral("checkpoints.png"))));
  }
};

QTEST_MAIN(TestCheckpointsPage)
#include "test_checkpoints_page.moc"
