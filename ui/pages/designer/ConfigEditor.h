// The Designer's YAML editor: a QPlainTextEdit with a line-number gutter and diagnostics drawn
// as wave underlines (QTextEdit::ExtraSelection) at the loader's line/column; hovering an
// underline shows the message and its fix.
#pragma once

#include <QPlainTextEdit>
#include <QVector>

namespace fathom::ui {

class YamlHighlighter;

struct Diagnostic {
  int line = 0;    // 1-based; 0 = no position (shown in the list only)
  int column = 0;  // 1-based; 0 = whole line
  bool warning = false;
  QString keyPath, message, fix;
};

class ConfigEditor : public QPlainTextEdit {
  Q_OBJECT
 public:
  explicit ConfigEditor(QWidget* parent = nullptr);

  void setDiagnostics(const QVector<Diagnostic>& diagnostics);
  const QVector<Diagnostic>& diagnostics() const { return m_diagnostics; }
  // The underline ranges currently shown (for tests): (block number, start column, length).
  QVector<QTextEdit::ExtraSelection> diagnosticSelections() const { return m_diagnosticSelections; }
  // Moves the cursor to a 1-based line/column and shows it.
  void jumpTo(int line, int column);
  // Replaces the whole text as one undoable edit touching only the lines that differ, so the
  // cursor and scroll position survive a form edit.
  void replaceTextMinimal(const QString& text);

  int lineNumberAreaWidth() const;
  void paintLineNumbers(QPaintEvent* event);

 protected:
  void resizeEvent(QResizeEvent* event) override;
  bool event(QEvent* event) override;

 private:
  void updateGutter(const QRect& rect, int dy);
  void refreshSelections();

  QWidget* m_gutter;
  YamlHighlighter* m_highlighter;
  QVector<Diagnostic> m_diagnostics;
  QVector<QTextEdit::ExtraSelection> m_diagnosticSelections;
};

}  // namespace fathom::ui
