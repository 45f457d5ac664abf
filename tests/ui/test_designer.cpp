// The Config Designer: form -> YAML (one key rewritten, comments kept), YAML -> form (debounced
// re-population), validation as you type with the error underlined on the right line and listed
// with its fix, the preset picker writing `extends:`, the diff against the preset, the estimator,
// and saving. Uses the real fathom_config loader and schema.
#include <QApplication>
#include <QCheckBox>
#include <QComboBox>
#include <QLineEdit>
#include <QListWidget>
#include <QStandardPaths>
#include <QTemporaryDir>
#include <QTextBlock>
#include <QTreeWidget>
#include <QtTest>

#include "ui/pages/designer/ConfigEditor.h"
#include "ui/pages/designer/ConfigForm.h"
#include "ui/pages/designer/DesignerPage.h"
#include "ui/pages/designer/EstimatorPanel.h"
#include "ui/pages/designer/FieldEditors.h"

using namespace fathom::ui;

class TestDesigner : public QObject {
  Q_OBJECT
 private slots:
  void initTestCase() { QStandardPaths::setTestModeEnabled(true); }

  void init() {
    m_page = new DesignerPage(nullptr);
    m_page->resize(1400, 900);
    m_page->show();
    QVERIFY(QTest::qWaitForWindowExposed(m_page));
  }
  void cleanup() {
    delete m_page;
    m_page = nullptr;
  }

  void formEditRewritesOneYamlKey() {
    m_page->setText(QStringLiteral("# keep me\nextends: debug-tiny\ntrain:\n  max_steps: 60  # short\n"));
    auto* spin = qobject_cast<Int64SpinBox*>(m_page->form()->editorFor(QStringLiteral("train.max_steps")));
    QVERIFY(spin);
    QCOMPARE(spin->value(), 60);
    spin->stepBy(5);  // as the arrow keys do
    QCOMPARE(m_page->text(), QStringLiteral("# keep me\nextends: debug-tiny\ntrain:\n  max_steps: 65  # short\n"));
    QCOMPARE(m_page->lastResult().config.train.max_steps, 65);

    // A key not in the file goes into its section.
    auto* lr = qobject_cast<QLineEdit*>(m_page->form()->editorFor(QStringLiteral("optimizer.lr")));
    QVERIFY(lr);
    lr->setFocus();
    lr->selectAll();
    QTest::keyClicks(lr, QStringLiteral("0.002"));
    QTest::keyClick(lr, Qt::Key_Return);
    QVERIFY2(m_page->text().contains(QStringLiteral("optimizer:\n  lr: 0.002\n")), qPrintable(m_page->text()));
    QCOMPARE(m_page->lastResult().config.optimizer.lr, 0.002);

    // Enums and booleans.
    auto* precision = qobject_cast<QComboBox*>(m_page->form()->editorFor(QStringLiteral("train.precision")));
    QVERIFY(precision);
    precision->setCurrentIndex(precision->findText(QStringLiteral("bf16")));
    emit precision->activated(precision->currentIndex());
    QVERIFY(m_page->text().contains(QStringLiteral("precision: bf16")));
    auto* tie = qobject_cast<QCheckBox*>(m_page->form()->editorFor(QStringLiteral("model.tie_embeddings")));
    QVERIFY(tie);
    tie->setChecked(!tie->isChecked());
    QVERIFY(m_page->text().contains(QStringLiteral("tie_embeddings: false")));
    QVERIFY(m_page->lastResult().ok());
  }

  void yamlEditRepopulatesFormAfterPause() {
    m_page->setText(QStringLiteral("extends: debug-tiny\n"));
    auto* mbs = qobject_cast<Int64SpinBox*>(m_page->form()->editorFor(QStringLiteral("train.micro_batch_size")));
    QVERIFY(mbs);
    QCOMPARE(mbs->value(), 8);  // from the preset
    // Typing in the editor: the form follows once typing pauses (~300 ms), not per keystroke.
    m_page->editor()->setFocus();
    QTextCursor c = m_page->editor()->textCursor();
    c.movePosition(QTextCursor::End);
    m_page->editor()->setTextCursor(c);
    QTest::keyClicks(m_page->editor(), QStringLiteral("train:"));
    QTest::keyClick(m_page->editor(), Qt::Key_Return);
    QTest::keyClicks(m_page->editor(), QStringLiteral("  micro_batch_size: 3"));
    QCOMPARE(mbs->value(), 8);
    QTRY_COMPARE_WITH_TIMEOUT(mbs->value(), 3, 3000);
    // Other keys keep the preset's values.
    auto* steps = qobject_cast<Int64SpinBox*>(m_page->form()->editorFor(QStringLiteral("train.max_steps")));
    QCOMPARE(steps->value(), 60);
  }

  void validationUnderlinesTheRightLine() {
    m_page->setText(QStringLiteral("extends: debug-tiny\n"
                                   "train:\n"
                                   "  max_steps: 10\n"
                                   "  micro_batch_size: -4\n"));
    QVERIFY(!m_page->lastResult().ok());
    const auto sels = m_page->editor()->diagnosticSelections();
    QVERIFY(!sels.isEmpty());
    // Line 4 (block 3), starting at the value's column.
    QCOMPARE(sels.front().cursor.block().blockNumber(), 3);
    QCOMPARE(sels.front().cursor.selectedText(), QStringLiteral("-4"));
    QCOMPARE(sels.front().format.underlineStyle(), QTextCharFormat::WaveUnderline);
    // Listed with its fix; activating it moves the cursor there.
    QVERIFY(m_page->problems()->count() >= 1);
    QListWidgetItem* item = m_page->problems()->item(0);
    QVERIFY2(item->text().contains(QStringLiteral("line 4")), qPrintable(item->text()));
    QVERIFY(item->text().contains(QStringLiteral("micro_batch_size")));
    QVERIFY(item->text().contains(QStringLiteral("Fix:")));
    emit m_page->problems()->itemClicked(item);
    QCOMPARE(m_page->editor()->textCursor().blockNumber(), 3);

    // A YAML syntax error is placed by the parser's mark.
    m_page->setText(QStringLiteral("extends: debug-tiny\ntrain:\n  max_steps: [1, 2\n  eval_interval: 5\n"));
    QVERIFY(!m_page->lastResult().ok());
    QVERIFY(!m_page->editor()->diagnosticSelections().isEmpty());
    const int line = m_page->lastResult().errors.front().line;
    QVERIFY(line >= 3);
    QCOMPARE(m_page->editor()->diagnosticSelections().front().cursor.block().blockNumber(), line - 1);

    // Fixing it clears the underline.
    m_page->setText(QStringLiteral("extends: debug-tiny\ntrain:\n  max_steps: 12\n"));
    QVERIFY(m_page->lastResult().ok());
    QVERIFY(m_page->editor()->diagnosticSelections().isEmpty());
  }

  void typingValidatesAfterDebounce() {
    m_page->setText(QStringLiteral("extends: debug-tiny\n"));
    QVERIFY(m_page->editor()->diagnosticSelections().isEmpty());
    QTextCursor c = m_page->editor()->textCursor();
    c.movePosition(QTextCursor::End);
    c.insertText(QStringLiteral("train:\n  max_stepz: 5\n"));  // unknown key: a typo
    QTRY_VERIFY_WITH_TIMEOUT(!m_page->editor()->diagnosticSelections().isEmpty(), 3000);
    QCOMPARE(m_page->editor()->diagnosticSelections().front().cursor.block().blockNumber(), 2);
  }

  void presetPickerAndDiff() {
    m_page->setText(QStringLiteral("extends: debug-tiny\ntrain:\n  max_steps: 77\n"));
    QComboBox* preset = m_page->presetCombo();
    QCOMPARE(preset->currentData().toString(), QStringLiteral("debug-tiny"));
    // The diff lists exactly the keys that differ from the preset.
    QTreeWidget* diff = m_page->diffView();
    QCOMPARE(diff->topLevelItemCount(), 1);
    QCOMPARE(diff->topLevelItem(0)->text(0), QStringLiteral("train.max_steps"));
    QCOMPARE(diff->topLevelItem(0)->text(1), QStringLiteral("60"));
    QCOMPARE(diff->topLevelItem(0)->text(2), QStringLiteral("77"));
    // Choosing another preset rewrites extends.
    const int demo = preset->findData(QStringLiteral("demo"));
    QVERIFY(demo >= 0);
    preset->setCurrentIndex(demo);
    emit preset->activated(demo);
    QVERIFY(m_page->text().startsWith(QStringLiteral("extends: demo\n")));
    QCOMPARE(m_page->lastResult().config.model.d_model, 256);
    QCOMPARE(m_page->lastResult().config.train.max_steps, 77);
  }

  void resetRemovesKey() {
    m_page->setText(QStringLiteral("extends: debug-tiny\ntrain:\n  max_steps: 77\n"));
    QMetaObject::invokeMethod(m_page->form(), "resetRequested", Q_ARG(QString, QStringLiteral("train.max_steps")));
    QCOMPARE(m_page->text(), QStringLiteral("extends: debug-tiny\n"));
    QCOMPARE(m_page->lastResult().config.train.max_steps, 60);
  }

  void estimatorFollowsConfig() {
    m_page->setText(QStringLiteral("extends: debug-tiny\n"));
    const qint64 small = m_page->estimator()->estimate().params.total;
    QVERIFY(small > 0);
    QVERIFY(m_page->estimator()->estimate().fits);
    m_page->setText(QStringLiteral("extends: debug-tiny\nmodel:\n  d_model: 256\n"));
    QVERIFY(m_page->estimator()->estimate().params.total > small);
    QVERIFY(m_page->estimator()->estimate().flops_per_token > 0);
  }

  void saveAndReopen() {
    QTemporaryDir dir;
    const QString path = dir.filePath(QStringLiteral("run.yaml"));
    m_page->setText(QStringLiteral("# saved\nextends: debug-tiny\n"));
    QVERIFY(m_page->saveTo(path));
    QVERIFY(!m_page->isModified());
    QCOMPARE(m_page->currentPath(), path);
    m_page->newDocument(QStringLiteral("demo"));
    QVERIFY(m_page->currentPath().isEmpty());
    QVERIFY(m_page->openFile(path));
    QCOMPARE(m_page->text(), QStringLiteral("# saved\nextends: debug-tiny\n"));
  }

 private:
  DesignerPage* m_page = nullptr;
};

QTEST_MAIN(TestDesigner)
#include "test_designer.moc"
