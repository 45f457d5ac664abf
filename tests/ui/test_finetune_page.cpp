// The Fine-tune page on a real workspace: the real fathom-engine (FATHOM_ENGINE_BIN) trains a tiny
// base run whose checkpoint the page picks from the registry; a Hugging Face fixture folder is the
// other kind of base; the estimate follows r; the YAML carries the chosen settings and loads; the
// engine's `finetune --preview` fills the examples (prompt greyed, completion highlighted) and the
// length histogram; Launch enqueues `fathom-engine finetune` and the window shows the run in the
// Monitor; the Checkpoint browser's "Fine-tune from here" lands on the page. The preview and the
// launch are skipped, with the engine's words, only while the engine lacks `finetune`/--preview.
#include <QApplication>
#include <QCheckBox>
#include <QComboBox>
#include <QDoubleSpinBox>
#include <QLabel>
#include <QLineEdit>
#include <QPlainTextEdit>
#include <QProcess>
#include <QPushButton>
#include <QSignalSpy>
#include <QSpinBox>
#include <QStandardPaths>
#include <QTemporaryDir>
#include <QTextBlock>
#include <QTextEdit>
#include <QtTest>

#include <memory>
#include <qcustomplot.h>

#include "cluster/jobs/JobQueue.h"
#include "cluster/launch/LocalLauncher.h"
#include "cluster/workspace/Workspace.h"
#include "engine/config/config.h"
#include "ui/MainWindow.h"
#include "ui/Theme.h"
#include "ui/pages/checkpoints/CheckpointsPage.h"
#include "ui/pages/finetune/DataPreviewView.h"
#include "ui/pages/finetune/FinetunePage.h"
#include "ui/pages/monitor/MonitorPage.h"

using namespace fathom;
using namespace fathom::ui;

namespace {

const QString kFixtures = QStringLiteral(FATHOM_FIXTURES_DIR);

bool engineLacksFinetune(const QString& text) {
  const QString t = text.toLower();
  return t.contains(QLatin1String("unknown command")) || t.contains(QLatin1String("unknown option")) ||
         t.contains(QLatin1String("unknown subcommand")) || t.contains(QLatin1String("unknown argument")) ||
         t.contains(QLatin1String("not implemented"));
}

}  // namespace

class TestFinetunePage : public QObject {
  Q_OBJECT

 private:
  QString m_engine;
  QTemporaryDir m_tmp;
  cluster::Workspace m_ws;
  QString m_ckpt;  // the base checkpoint the engine wrote
  QString m_data = kFixtures + QStringLiteral("/instruct/tiny.jsonl");

  std::unique_ptr<FinetunePage> page() {
    auto p = std::make_unique<FinetunePage>(&m_ws, nullptr, nullptr);
    p->setEngineBinary(m_engine);
    p->resize(1300, 850);
    return p;
  }

  // Waits for the preview the page started; returns false (after QSKIP text is logged) when the
  // engine cannot preview yet.
  bool waitPreview(FinetunePage* p, QSignalSpy& spy, bool* ok) {
    if (!spy.wait(50000) && spy.isEmpty()) return false;
    *ok = spy.takeFirst().at(0).toBool();
    return true;
  }

 private slots:
  void initTestCase() {
    QStandardPaths::setTestModeEnabled(true);
    QVERIFY(m_tmp.isValid());
    qputenv("XDG_CONFIG_HOME", m_tmp.filePath(QStringLiteral("config")).toUtf8());
    m_engine = qEnvironmentVariable("FATHOM_ENGINE_BIN");
    QVERIFY2(!m_engine.isEmpty() && QFileInfo(m_engine).isExecutable(), "FATHOM_ENGINE_BIN must name the built fathom-engine (ctest sets it)");
    const QDir corpus(QString::fromStdString(config::default_data_dir()) + QStringLiteral("/corpus/sotu"));
    if (corpus.entryList({QStringLiteral("179*.txt")}, QDir::Files).isEmpty()) {
      qWarning("SKIP: no corpus in %s (packaging/collect-data.sh fetches it)", qPrintable(corpus.path()));
      std::exit(77);
    }
    const QString wsDir = m_tmp.filePath(QStringLiteral("ws"));
    qputenv("FATHOM_WORKSPACE", wsDir.toUtf8());
    QString error;
    QVERIFY2(m_ws.open(wsDir, &error), qPrintable(error));
    // A tiny base model, trained by the real engine: 12 steps, one checkpoint.
    const QString cfg = m_tmp.filePath(QStringLiteral("base.yaml"));
    QFile f(cfg);
    QVERIFY(f.open(QIODevice::WriteOnly));
    f.write("extends: debug-tiny\nrun:\n  name: tinybase\ntrain:\n  max_steps: 12\n  eval_interval: 0\noptimizer:\n  warmup_steps: 2\n"
            "checkpoint:\n  save_every_steps: 12\n");
    f.close();
    const QString runDir = QDir(m_ws.runsDir()).filePath(QStringLiteral("tinybase-1"));
    QProcess p;
    p.setProcessChannelMode(QProcess::MergedChannels);
    p.start(m_engine, {QStringLiteral("train"), cfg, QStringLiteral("--run-dir"), runDir, QStringLiteral("--run-id"),
                       QStringLiteral("tinybase-1"), QStringLiteral("--no-stdout")});
    QVERIFY(p.waitForFinished(60000));
    QVERIFY2(p.exitCode() == 0, p.readAll().constData());
    m_ws.rescan();
    m_ckpt = QDir(runDir).filePath(QStringLiteral("checkpoints/step-12"));
    QVERIFY(QFileInfo(QDir(m_ckpt).filePath(QStringLiteral("model.safetensors"))).isFile());
    QVERIFY(QFileInfo(m_data).isFile());
  }

  void checkpointBaseFromTheRegistry() {
    auto p = page();
    // The registry's checkpoint is offered; choosing it describes the base.
    QComboBox* picker = p->checkpointPicker();
    const int at = picker->findData(QFileInfo(m_ckpt).absoluteFilePath());
    QVERIFY2(at > 0, "the checkpoint of the registry is listed");
    QVERIFY(picker->itemText(at).contains(QStringLiteral("step 12")));
    picker->setCurrentIndex(at);
    emit picker->activated(at);
    QCOMPARE(p->base().kind, FinetuneBase::Kind::Checkpoint);
    QVERIFY2(p->base().isValid(), qPrintable(p->base().error));
    QCOMPARE(p->base().step, qint64(12));
    const QString info = p->baseLabel()->text();
    QVERIFY2(info.contains(QStringLiteral("step 12")) && info.contains(QStringLiteral("llama")) && info.contains(QStringLiteral("2 layers")),
             qPrintable(info));
    QVERIFY(info.contains(QStringLiteral("tinybase")));
    // The model's module names, with the LoRA paper's default (q and v).
    QVERIFY(p->moduleBox(QStringLiteral("q_proj")) && p->moduleBox(QStringLiteral("q_proj"))->isChecked());
    QVERIFY(p->moduleBox(QStringLiteral("v_proj"))->isChecked());
    QVERIFY(p->moduleBox(QStringLiteral("down_proj")) && !p->moduleBox(QStringLiteral("down_proj"))->isChecked());
    QVERIFY(p->moduleBox(QStringLiteral("query_key_value")));
    QVERIFY(!p->moduleBox(QStringLiteral("kv_b_proj")));
    QCOMPARE(p->seqLenBox()->value(), 64);  // debug-tiny's context
    QCOMPARE(p->nameEdit()->text(), QStringLiteral("tinybase-lora"));
    // The tokenizer the base trained with (state.json names it).
    QVERIFY(p->configText().contains(QStringLiteral("kind: bpe")));
    QVERIFY(p->configText().contains(QStringLiteral("tokenizer.json")));
  }

  void huggingFaceFolderBase() {
    auto p = page();
    p->setBase(kFixtures + QStringLiteral("/hf/llama"));
    QCOMPARE(p->base().kind, FinetuneBase::Kind::HuggingFace);
    QVERIFY2(p->base().isValid(), qPrintable(p->base().error));
    QVERIFY(p->baseLabel()->text().contains(QStringLiteral("LlamaForCausalLM")));
    QVERIFY(p->configText().contains(QStringLiteral("kind: hf")));
    QVERIFY2(p->configOk(), qPrintable(p->estimateLabel()->text()));
    QVERIFY(p->estimate().params.total > 0);
    // DeepSeek-V3: MLA and expert module names.
    p->setBase(kFixtures + QStringLiteral("/hf/deepseek_v3"));
    QVERIFY2(p->base().isValid(), qPrintable(p->base().error));
    QVERIFY(p->moduleBox(QStringLiteral("kv_b_proj")));
    QVERIFY(p->moduleBox(QStringLiteral("experts")));
    QVERIFY(!p->moduleBox(QStringLiteral("k_proj")));
    // A folder without config.json is refused, with the reason.
    p->setBase(kFixtures + QStringLiteral("/corpus"));
    QVERIFY(!p->base().isValid());
    QVERIFY(p->baseLabel()->text().contains(QStringLiteral("config.json")));
    QVERIFY(!p->launchButton()->isEnabled());
  }

  void estimateFollowsRank() {
    auto p = page();
    p->setBase(m_ckpt);
    QVERIFY2(p->configOk(), qPrintable(p->estimateLabel()->text()));
    const qint64 at16 = p->estimate().params.trainable;
    QVERIFY(at16 > 0);
    QVERIFY(at16 < p->estimate().params.total);
    QVERIFY(p->estimate().memory.total > 0);
    const QString text16 = p->estimateLabel()->text();
    QVERIFY(text16.contains(QStringLiteral("trainable")));
    p->rBox()->setValue(32);  // adapters scale linearly with r
    QCOMPARE(p->estimate().params.trainable, 2 * at16);
    QVERIFY(p->estimateLabel()->text() != text16);
    p->moduleBox(QStringLiteral("k_proj"))->setChecked(true);
    QVERIFY(p->estimate().params.trainable > 2 * at16);
    const qint64 before = p->estimate().memory.parameters;
    p->int8Box()->setChecked(true);  // the frozen base at one byte a weight
    QVERIFY(p->estimate().memory.parameters < before);
  }

  void yamlCarriesTheSettings() {
    auto p = page();
    p->setBase(m_ckpt);
    p->setDataFile(m_data);
    p->rBox()->setValue(8);
    p->alphaBox()->setValue(16);
    p->dropoutBox()->setValue(0.1);
    p->rsloraBox()->setChecked(true);
    p->moduleBox(QStringLiteral("k_proj"))->setChecked(true);
    p->templateBox()->setCurrentText(QStringLiteral("chatml"));
    p->seqLenBox()->setValue(48);
    p->stepsBox()->setValue(7);
    p->nameEdit()->setText(QStringLiteral("yaml check"));
    const QString y = p->yamlEdit()->toPlainText();
    for (const QString& want : {QStringLiteral("r: 8"), QStringLiteral("lora_alpha: 16.0"), QStringLiteral("dropout: 0.1"),
                                QStringLiteral("use_rslora: true"), QStringLiteral("target_modules: [q_proj, k_proj, v_proj]"),
                                QStringLiteral("task: instruct"), QStringLiteral("chat_template: chatml"), QStringLiteral("seq_len: 48"),
                                QStringLiteral("max_steps: 7"), QStringLiteral("enabled: true")})
      QVERIFY2(y.contains(want), qPrintable(QStringLiteral("missing '%1' in:\n%2").arg(want, y)));
    QVERIFY(y.contains(QFileInfo(m_data).absoluteFilePath()));
    QVERIFY(y.contains(QFileInfo(m_ckpt).absoluteFilePath()));
    // The engine's loader reads back what the form says.
    config::LoadOptions o;
    o.check_paths = false;
    const config::LoadResult r = config::load_config_text(y.toStdString(), p->configPath().toStdString(), o);
    QVERIFY2(r.ok(), r.ok() ? "" : r.errors.front().message().c_str());
    QCOMPARE(r.config.lora.r, int64_t(8));
    QCOMPARE(r.config.lora.lora_alpha, 16.0);
    QVERIFY(r.config.lora.use_rslora);
    QCOMPARE(r.config.lora.target_modules, (std::vector<std::string>{"q_proj", "k_proj", "v_proj"}));
    QCOMPARE(QString::fromStdString(r.config.lora.base), QFileInfo(m_ckpt).absoluteFilePath());
    QCOMPARE(r.config.data.task, std::string("instruct"));
    QCOMPARE(r.config.model.d_model, int64_t(64));
    QVERIFY(p->launchButton()->isEnabled() == false);  // no job queue on this page
    QVERIFY(p->configPath().endsWith(QStringLiteral("/projects/yaml-check.yaml")));

    // Hand edits win until Regenerate.
    QString edited = y;
    edited.replace(QStringLiteral("r: 8"), QStringLiteral("r: 4"));
    p->yamlEdit()->setPlainText(edited);
    p->rBox()->setValue(12);
    QVERIFY(p->yamlEdit()->toPlainText().contains(QStringLiteral("r: 4\n")));
    QTRY_COMPARE(p->estimate().params.lora > 0, true);
    QPushButton* regen = p->findChild<QPushButton*>(QStringLiteral("regenerate"));
    QVERIFY(regen && regen->isEnabled());
    regen->click();
    QVERIFY(p->yamlEdit()->toPlainText().contains(QStringLiteral("r: 12\n")));
    // A broken edit is reported, not launched.
    p->yamlEdit()->setPlainText(p->yamlEdit()->toPlainText().replace(QStringLiteral("r: 12"), QStringLiteral("r: -3")));
    QTRY_VERIFY(!p->configOk());
    QVERIFY(p->estimateLabel()->text().contains(QStringLiteral("lora.r")));
  }

  // The preview contract (docs: the engine prints one JSON object) parsed and drawn, independent
  // of whether this engine implements it yet.
  void previewContractParsesAndDraws() {
    const QByteArray json =
        R"({"seq_len":64, "template":"chatml", "count":3, "truncated":1,
            "examples":[{"index":0, "tokens":70, "truncated":true,
                         "segments":[{"text":"<|im_start|>user\nWhat is a tort?<|im_end|>\n<|im_start|>assistant\n", "train":false},
                                     {"text":"A civil wrong.<|im_end|>", "train":true}]}],
            "histogram":{"edges":[0,32,64,96], "counts":[1,1,1]},
            "trainable_params":4096, "base_params":100000})";
    DataPreview d = parsePreview("prepared tokenizer\n" + json);  // a stray log line before it is tolerated
    QVERIFY2(d.error.isEmpty(), qPrintable(d.error));
    QCOMPARE(d.seqLen, qint64(64));
    QCOMPARE(d.count, qint64(3));
    QCOMPARE(d.truncated, qint64(1));
    QCOMPARE(d.chatTemplate, QStringLiteral("chatml"));
    QCOMPARE(d.examples.size(), 1);
    QCOMPARE(d.examples[0].segments.size(), 2);
    QVERIFY(!d.examples[0].segments[0].train && d.examples[0].segments[1].train);
    QCOMPARE(d.edges.size(), 4);
    QCOMPARE(d.trainableParams, qint64(4096));
    DataPreviewView view;
    view.setPreview(d);
    QVERIFY(view.examplesView()->toPlainText().contains(QStringLiteral("A civil wrong.")));
    QVERIFY(view.examplesView()->toPlainText().contains(QStringLiteral("truncated to 64")));
    QCOMPARE(view.truncationLabel()->text(), QStringLiteral("1 of 3 examples truncated at seq_len 64 · template chatml"));
    auto* bars = qobject_cast<QCPBars*>(view.histogram()->plottable(0));
    QVERIFY(bars);
    QCOMPARE(bars->dataCount(), 3);
    QVERIFY(!parsePreview("fathom-engine: unknown command 'finetune'").error.isEmpty());
  }

  void previewShowsExamplesAsTheModelSeesThem() {
    auto p = page();
    p->show();
    QSignalSpy spy(p.get(), &FinetunePage::previewFinished);
    p->setBase(m_ckpt);
    p->setDataFile(m_data);
    bool ok = false;
    QVERIFY2(waitPreview(p.get(), spy, &ok), "the preview did not finish within 50 s");
    const QString shown = p->previewView()->examplesView()->toPlainText();
    if (!ok && engineLacksFinetune(shown)) QSKIP(qPrintable(QStringLiteral("the engine cannot preview yet: ") + shown.left(300)));
    QVERIFY2(ok, qPrintable(shown));
    const DataPreview& d = p->previewView()->preview();
    QCOMPARE(d.count, qint64(30));
    QCOMPARE(d.seqLen, qint64(64));
    QVERIFY(!d.examples.isEmpty());
    QVERIFY(shown.contains(QStringLiteral("Example 1")));
    // Prompt segments greyed, completion segments highlighted: check the document's formats.
    bool sawTrained = false, sawContext = false;
    for (QTextBlock b = p->previewView()->examplesView()->document()->begin(); b.isValid(); b = b.next())
      for (auto it = b.begin(); !it.atEnd(); ++it) {
        const QTextCharFormat f = it.fragment().charFormat();
        if (f.background().style() != Qt::NoBrush) sawTrained = true;
        else if (f.foreground().color() == Theme::instance()->color(QStringLiteral("text.muted"))) sawContext = true;
      }
    QVERIFY(sawTrained);
    QVERIFY(sawContext);
    bool anyTrain = false, anyPrompt = false;
    for (const PreviewSegment& s : d.examples.first().segments) (s.train ? anyTrain : anyPrompt) = true;
    QVERIFY(anyTrain && anyPrompt);
    // The histogram and the truncation count.
    auto* bars = qobject_cast<QCPBars*>(p->previewView()->histogram()->plottable(0));
    QVERIFY(bars && bars->dataCount() > 0);
    QVERIFY2(p->previewView()->truncationLabel()->text().contains(QStringLiteral("of 30 examples truncated")),
             qPrintable(p->previewView()->truncationLabel()->text()));

    // Bad data: the engine's file:line message is shown.
    const QString bad = m_tmp.filePath(QStringLiteral("bad.jsonl"));
    QFile f(bad);
    QVERIFY(f.open(QIODevice::WriteOnly));
    f.write("{\"prompt\": \"fine\", \"completion\": \"ok\"}\n{\"prompt\": broken\n");
    f.close();
    p->setDataFile(bad);
    QVERIFY(waitPreview(p.get(), spy, &ok));
    QVERIFY(!ok);
    QVERIFY2(p->previewView()->examplesView()->toPlainText().contains(QStringLiteral("bad.jsonl")),
             qPrintable(p->previewView()->examplesView()->toPlainText()));
  }

  void fineTuneFromTheCheckpointBrowser() {
    cluster::JobQueue queue(&m_ws);
    queue.setEngineBinary(m_engine);
    MainWindow w(&m_ws, &queue);
    w.checkpoints()->setEngineBinary(m_engine);
    QVERIFY(w.checkpoints()->selectCheckpoint(QFileInfo(m_ckpt).absoluteFilePath()) ||
            w.checkpoints()->selectCheckpoint(m_ckpt));
    w.checkpoints()->fineTuneSelected();
    QCOMPARE(w.currentPage(), int(MainWindow::FinetuneMode));
    QCOMPARE(w.finetune()->base().kind, FinetuneBase::Kind::Checkpoint);
    QCOMPARE(QFileInfo(w.finetune()->base().dir).canonicalFilePath(), QFileInfo(m_ckpt).canonicalFilePath());
  }

  void launchReachesTheMonitor() {
    cluster::JobQueue queue(&m_ws);
    queue.setEngineBinary(m_engine);
    MainWindow w(&m_ws, &queue);
    w.resize(1600, 1000);
    w.show();
    QVERIFY(QTest::qWaitForWindowExposed(&w));
    w.setCurrentPage(MainWindow::FinetuneMode);
    FinetunePage* p = w.finetune();
    p->setEngineBinary(m_engine);
    QSignalSpy spy(p, &FinetunePage::previewFinished);
    p->setBase(m_ckpt);
    p->setDataFile(m_data);
    p->stepsBox()->setValue(4);
    p->deviceBox()->setCurrentIndex(p->deviceBox()->findData(QStringLiteral("cpu")));
    bool previewOk = false;
    waitPreview(p, spy, &previewOk);
    // The documentation screenshot, when asked for (FATHOM_SCREENSHOT_DIR).
    const QString shots = qEnvironmentVariable("FATHOM_SCREENSHOT_DIR");
    if (!shots.isEmpty()) {
      Theme::instance()->setMode(Theme::Mode::Light);
      QTest::qWait(300);
      QDir().mkpath(shots);
      QVERIFY(w.grab().save(QDir(shots).filePath(QStringLiteral("finetune.png"))));
    }
    QVERIFY2(p->launchButton()->isEnabled(), qPrintable(p->problemLabel()->text()));
    QTest::mouseClick(p->launchButton(), Qt::LeftButton);
    QCOMPARE(w.currentPage(), int(MainWindow::MonitorMode));
    const QString id = w.monitor()->currentRun();
    QVERIFY(id.startsWith(QStringLiteral("tinybase-lora")));
    const auto run = m_ws.runs().get(id);
    QVERIFY(run);
    QVERIFY(QFileInfo(run->configPath).isFile());
    QVERIFY(QFileInfo(run->configPath).absolutePath() == QFileInfo(m_ws.projectsDir()).absoluteFilePath());
    // It runs `fathom-engine finetune`, and ends.
    cluster::LaunchSpec s;
    s.configPath = run->configPath;
    QCOMPARE(cluster::LocalLauncher::engineCommand(s), QStringLiteral("finetune"));
    QTRY_VERIFY_WITH_TIMEOUT(cluster::isFinalStatus(m_ws.runs().get(id)->status), 50000);
    const cluster::RunRecord done = *m_ws.runs().get(id);
    if (done.status == QLatin1String("failed") && engineLacksFinetune(done.error))
      QSKIP(qPrintable(QStringLiteral("the engine cannot fine-tune yet: ") + done.error.left(300)));
    QVERIFY2(done.status == QLatin1String("completed"), qPrintable(done.status + QStringLiteral(": ") + done.error));
    QCOMPARE(done.lastStep, qint64(4));
    QCOMPARE(w.monitor()->currentRun(), id);
  }

  void cleanupTestCase() {
    for (const cluster::RunRecord& r : m_ws.runs().list())
      if (r.pgid > 0 && cluster::LocalLauncher::isAlive(r.pid, r.runDir)) cluster::LocalLauncher::kill(r.pgid);
  }
};

QTEST_MAIN(TestFinetunePage)
#include "test_finetune_page.moc"
