// YamlKeyEdit: the Designer's form edits change one key of the YAML text and keep the user's
// comments, order and layout; missing keys go into their section (created if needed); removing a
// key drops an emptied parent; flow mappings fall back to a yaml-cpp round trip. Every result is
// checked by loading it with fathom_config, the loader the engine uses.
#include <QtTest>

#include "engine/config/config.h"
#include "ui/pages/designer/YamlKeyEdit.h"

using fathom::ui::YamlKeyEdit;

namespace {

fathom::config::RunConfig load(const QString& text) {
  fathom::config::LoadOptions o;
  o.check_paths = false;
  const auto r = fathom::config::load_config_text(text.toStdString(), "test.yaml", o);
  if (!r.ok()) qWarning("%s", r.errors.front().message().c_str());
  return r.config;
}

const QString kDoc = QStringLiteral(
    "# my run\n"
    "extends: debug-tiny   # the smallest model\n"
    "train:\n"
    "  max_steps: 100      # short\n"
    "  micro_batch_size: 4\n"
    "\n"
    "# optimiser settings\n"
    "optimizer:\n"
    "  lr: 3.0e-4\n"
    "lora:\n"
    "  target_modules:\n"
    "    - q_proj\n"
    "    - v_proj\n");

}  // namespace

class TestYamlKeyEdit : public QObject {
  Q_OBJECT
 private slots:
  void findsNestedKeys() {
    const auto loc = YamlKeyEdit::find(kDoc, QStringLiteral("train.micro_batch_size"));
    QVERIFY(loc.found);
    QCOMPARE(loc.keyLine, 4);
    QCOMPARE(loc.indent, 2);
    QVERIFY(!YamlKeyEdit::find(kDoc, QStringLiteral("micro_batch_size")).found);  // not top-level
    QCOMPARE(YamlKeyEdit::inlineValue(kDoc, QStringLiteral("extends")), QStringLiteral("debug-tiny"));
    const auto list = YamlKeyEdit::find(kDoc, QStringLiteral("lora.target_modules"));
    QVERIFY(list.found);
    QCOMPARE(list.lastLine, 12);
  }

  void replacesInPlaceKeepingComments() {
    bool fallback = true;
    const QString out = YamlKeyEdit::setValue(kDoc, QStringLiteral("train.max_steps"), QStringLiteral("250"), &fallback);
    QVERIFY(!fallback);
    QVERIFY2(out.contains(QStringLiteral("  max_steps: 250      # short\n")), qPrintable(out));
    QVERIFY(out.contains(QStringLiteral("# my run\n")));
    QVERIFY(out.contains(QStringLiteral("# optimiser settings\n")));
    QCOMPARE(out.count(QLatin1Char('\n')), kDoc.count(QLatin1Char('\n')));
    QCOMPARE(load(out).train.max_steps, 250);
    QCOMPARE(load(out).train.micro_batch_size, 4);
  }

  void insertsIntoExistingSection() {
    const QString out = YamlKeyEdit::setValue(kDoc, QStringLiteral("optimizer.warmup_steps"), QStringLiteral("7"));
    QVERIFY2(out.contains(QStringLiteral("optimizer:\n  lr: 3.0e-4\n  warmup_steps: 7\n")), qPrintable(out));
    QCOMPARE(load(out).optimizer.warmup_steps, 7);
    QCOMPARE(load(out).optimizer.lr, 3.0e-4);
  }

  void createsMissingSections() {
    const QString out = YamlKeyEdit::setValue(kDoc, QStringLiteral("model.moe.top_k"), QStringLiteral("3"));
    QVERIFY2(out.contains(QStringLiteral("model:\n  moe:\n    top_k: 3\n")), qPrintable(out));
    QCOMPARE(load(out).model.moe.top_k, 3);
    // A nested group inside an existing section.
    const QString out2 = YamlKeyEdit::setValue(kDoc, QStringLiteral("optimizer.zero.stage"), QStringLiteral("2"));
    QVERIFY2(out2.contains(QStringLiteral("optimizer:\n  lr: 3.0e-4\n  zero:\n    stage: 2\n")), qPrintable(out2));
    QCOMPARE(load(out2).optimizer.zero.stage, 2);
  }

  void blockListBecomesFlowList() {
    const QString out = YamlKeyEdit::setValue(kDoc, QStringLiteral("lora.target_modules"), QStringLiteral("[\"q_proj\", \"k_proj\", \"v_proj\"]"));
    QVERIFY2(out.contains(QStringLiteral("  target_modules: [\"q_proj\", \"k_proj\", \"v_proj\"]")), qPrintable(out));
    QVERIFY(!out.contains(QStringLiteral("- q_proj")));
    QCOMPARE(load(out).lora.target_modules.size(), std::size_t(3));
  }

  void removeKeyAndEmptyParent() {
    QString out = YamlKeyEdit::removeKey(kDoc, QStringLiteral("optimizer.lr"));
    QVERIFY2(!out.contains(QStringLiteral("optimizer:")), qPrintable(out));  // emptied parent goes too
    QVERIFY(out.contains(QStringLiteral("# optimiser settings")));
    QCOMPARE(load(out).optimizer.lr, load(QStringLiteral("extends: debug-tiny\n")).optimizer.lr);
    out = YamlKeyEdit::removeKey(kDoc, QStringLiteral("train.max_steps"));
    QVERIFY(out.contains(QStringLiteral("train:\n  micro_batch_size: 4\n")));
    QCOMPARE(YamlKeyEdit::removeKey(kDoc, QStringLiteral("serve.port")), kDoc);  // absent: unchanged
  }

  void extendsGoesFirst() {
    const QString doc = QStringLiteral("# comment\ntrain:\n  max_steps: 5\n");
    const QString out = YamlKeyEdit::setValue(doc, QStringLiteral("extends"), QStringLiteral("demo"));
    QCOMPARE(out, QStringLiteral("# comment\nextends: demo\ntrain:\n  max_steps: 5\n"));
    QCOMPARE(YamlKeyEdit::setValue(QString(), QStringLiteral("extends"), QStringLiteral("demo")), QStringLiteral("extends: demo\n"));
  }

  void respectsIndentUnit() {
    const QString doc = QStringLiteral("train:\n    max_steps: 5\n");
    QCOMPARE(YamlKeyEdit::indentUnit(doc), 4);
    const QString out = YamlKeyEdit::setValue(doc, QStringLiteral("model.moe.top_k"), QStringLiteral("2"));
    QVERIFY2(out.contains(QStringLiteral("model:\n    moe:\n        top_k: 2")), qPrintable(out));
  }

  void flowMappingFallsBack() {
    const QString doc = QStringLiteral("extends: debug-tiny\ntrain: {max_steps: 5, micro_batch_size: 2}\n");
    bool fallback = false;
    const QString out = YamlKeyEdit::setValue(doc, QStringLiteral("train.max_steps"), QStringLiteral("9"), &fallback);
    QVERIFY(fallback);
    QCOMPARE(load(out).train.max_steps, 9);
    QCOMPARE(load(out).train.micro_batch_size, 2);
    const QString out2 = YamlKeyEdit::setValue(doc, QStringLiteral("train.eval_interval"), QStringLiteral("3"), &fallback);
    QVERIFY(fallback);
    QCOMPARE(load(out2).train.eval_interval, 3);
  }

  void syntaxErrorBlocksFallbackWithMessage() {
    const QString doc = QStringLiteral("train: {max_steps: 5\n");  // unclosed flow mapping
    QString error;
    const QString out = YamlKeyEdit::setValue(doc, QStringLiteral("train.max_steps"), QStringLiteral("9"), nullptr, &error);
    QCOMPARE(out, doc);
    QVERIFY2(error.contains(QStringLiteral("line")), qPrintable(error));
  }

  void blockScalarsAndDashesAreNotKeys() {
    const QString doc = QStringLiteral("train:\n  sample_prompt: |\n    lr: not a key\n  max_steps: 3\n");
    QVERIFY(!YamlKeyEdit::find(doc, QStringLiteral("train.lr")).found);
    QVERIFY(!YamlKeyEdit::find(doc, QStringLiteral("lr")).found);
    const QString out = YamlKeyEdit::setValue(doc, QStringLiteral("train.sample_prompt"), QStringLiteral("\"Hi\""));
    QCOMPARE(out, QStringLiteral("train:\n  sample_prompt: \"Hi\"\n  max_steps: 3\n"));
  }
};

QTEST_APPLESS_MAIN(TestYamlKeyEdit)
#include "test_yaml_key_edit.moc"
