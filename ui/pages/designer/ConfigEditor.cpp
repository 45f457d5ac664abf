// Editor widget details: the gutter follows Qt's code-editor example; diagnostics map the
// loader's 1-based line/column to a text range (the token at the column, else the whole line).
#include "ui/pages/designer/ConfigEditor.h"

#include <QFontDatabase>
#include <QHelpEvent>
#include <QPainter>
#include <QTextBlock>
#include <QToolTip>

#include "ui/Theme.h"
#include "ui/pages/designer/YamlHighlighter.h"

namespace fathom::ui {
namespace {

class Gutter : public QWidget {
 public:
  explicit Gutter(ConfigEditor* editor) : QWidget(editor), m_editor(editor) {}
  QSize sizeHint() const override { return QSize(m_editor->lineNumberAreaWidth(), 0); }

 protected:
  void paintEvent(QPaintEvent* event) override { m_editor->paintLineNumbers(event); }

 private:
  ConfigEditor* m_editor;
};

}  // namespace

ConfigEditor::ConfigEditor(QWidget* parent) : QPlainTextEdit(parent) {
  QFont mono = QFontDatabase::systemFont(QFontDatabase::FixedFont);
  setFont(mono);
  setLineWrapMode(QPlainTextEdit::NoWrap);
  setTabChangesFocus(false);
  setTabStopDistance(fontMetrics().horizontalAdvance(QLatin1Char(' ')) * 2);
  m_gutter = new Gutter(this);
  m_highlighter = new YamlHighlighter(document());
  connect(this, &QPlainTextEdit::blockCountChanged, this, [this] { setViewportMargins(lineNumberAreaWidth(), 0, 0, 0); });
  connect(this, &QPlainTextEdit::updateRequest, this, &ConfigEditor::updateGutter);
  connect(this, &QPlainTextEdit::cursorPositionChanged, this, &ConfigEditor::refreshSelections);
  connect(Theme::instance(), &Theme::changed, this, [this] { setDiagnostics(m_diagnostics); });
  setViewportMargins(lineNumberAreaWidth(), 0, 0, 0);
}

int ConfigEditor::lineNumberAreaWidth() const {
  int digits = 2;
  for (int max = std::max(1, blockCount()); max >= 100; max /= 10) ++digits;
  return 12 + fontMetrics().horizontalAdvance(QLatin1Char('9')) * digits;
}

void ConfigEditor::updateGutter(const QRect& rect, int dy) {
  if (dy) m_gutter->scroll(0, dy);
  else m_gutter->update(0, rect.y(), m_gutter->width(), rect.height());
}

void ConfigEditor::resizeEvent(QResizeEvent* event) {
  QPlainTextEdit::resizeEvent(event);
  const QRect cr = contentsRect();
  m_gutter->setGeometry(QRect(cr.left(), cr.top(), lineNumberAreaWidth(), cr.height()));
}

void ConfigEditor::paintLineNumbers(QPaintEvent* event) {
  QPainter painter(m_gutter);
  const QPalette pal = palette();
  painter.fillRect(event->rect(), pal.color(QPalette::AlternateBase));
  QSet<int> errorLines, warningLines;
  for (const Diagnostic& d : m_diagnostics)
    if (d.line > 0) (d.warning ? warningLines : errorLines).insert(d.line - 1);
  QTextBlock block = firstVisibleBlock();
  int top = qRound(blockBoundingGeometry(block).translated(contentOffset()).top());
  const int current = textCursor().blockNumber();
  while (block.isValid() && top <= event->rect().bottom()) {
    const int height = qRound(blockBoundingRect(block).height());
    if (block.isVisible() && top + height >= event->rect().top()) {
      const int n = block.blockNumber();
      QColor c = pal.color(QPalette::PlaceholderText);
      if (n == current) c = pal.color(QPalette::Text);
      if (errorLines.contains(n)) c = Theme::instance()->color(QStringLiteral("error.underline"));
      else if (warningLines.contains(n)) c = Theme::instance()->color(QStringLiteral("warning.underline"));
      painter.setPen(c);
      painter.drawText(0, top, m_gutter->width() - 6, fontMetrics().height(), Qt::AlignRight, QString::number(n + 1));
    }
    block = block.next();
    top += height;
  }
}

void ConfigEditor::setDiagnostics(const QVector<Diagnostic>& diagnostics) {
  m_diagnostics = diagnostics;
  m_diagnosticSelections.clear();
  for (const Diagnostic& d : diagnostics) {
    if (d.line <= 0) continue;
    const QTextBlock block = document()->findBlockByNumber(d.line - 1);
    if (!block.isValid()) continue;
    const QString text = block.text();
    int start = 0, length = text.size();
    if (d.column > 0 && d.column - 1 < text.size()) {
      // The token at the column: up to the next whitespace, comma or closing bracket.
      start = d.column - 1;
      int end = start;
      while (end < text.size() && !text[end].isSpace() && text[end] != QLatin1Char(',') &&
             text[end] != QLatin1Char(']') && text[end] != QLatin1Char('}'))
        ++end;
      length = std::max(1, end - start);
    } else {
      // Whole line without its indentation.
      while (start < text.size() && text[start].isSpace()) ++start;
      length = std::max(1, static_cast<int>(text.size()) - start);
    }
    QTextEdit::ExtraSelection sel;
    sel.cursor = QTextCursor(block);
    sel.cursor.setPosition(block.position() + start);
    sel.cursor.setPosition(block.position() + std::min(start + length, static_cast<int>(text.size())),
                           QTextCursor::KeepAnchor);
    sel.format.setUnderlineStyle(QTextCharFormat::WaveUnderline);
    sel.format.setUnderlineColor(
        Theme::instance()->color(d.warning ? QStringLiteral("warning.underline") : QStringLiteral("error.underline")));
    sel.format.setToolTip(d.message + (d.fix.isEmpty() ? QString() : QStringLiteral("\nFix: ") + d.fix));
    m_diagnosticSelections.push_back(sel);
  }
  refreshSelections();
  m_gutter->update();
}

void ConfigEditor::refreshSelections() {
  QList<QTextEdit::ExtraSelection> all;
  QTextEdit::ExtraSelection line;
  QColor hl = palette().color(QPalette::Highlight);
  hl.setAlpha(Theme::instance()->isDark() ? 40 : 22);
  line.format.setBackground(hl);
  line.format.setProperty(QTextFormat::FullWidthSelection, true);
  line.cursor = textCursor();
  line.cursor.clearSelection();
  all << line;
  for (const QTextEdit::ExtraSelection& sel : m_diagnosticSelections) all << sel;
  setExtraSelections(all);
}

void ConfigEditor::jumpTo(int line, int column) {
  const QTextBlock block = document()->findBlockByNumber(std::max(0, line - 1));
  if (!block.isValid()) return;
  QTextCursor c(block);
  c.setPosition(block.position() + std::clamp(column - 1, 0, static_cast<int>(block.text().size())));
  setTextCursor(c);
  centerCursor();
  setFocus();
}

void ConfigEditor::replaceTextMinimal(const QString& text) {
  const QString old = toPlainText();
  if (old == text) return;
  int prefix = 0;
  const int maxPrefix = std::min(old.size(), text.size());
  while (prefix < maxPrefix && old[prefix] == text[prefix]) ++prefix;
  int suffix = 0;
  while (suffix < old.size() - prefix && suffix < text.size() - prefix &&
         old[old.size() - 1 - suffix] == text[text.size() - 1 - suffix])
    ++suffix;
  QTextCursor c(document());
  c.setPosition(prefix);
  c.setPosition(old.size() - suffix, QTextCursor::KeepAnchor);
  c.insertText(text.mid(prefix, text.size() - prefix - suffix));
}

bool ConfigEditor::event(QEvent* event) {
  if (event->type() == QEvent::ToolTip) {
    auto* help = static_cast<QHelpEvent*>(event);
    const QTextCursor c = cursorForPosition(viewport()->mapFromParent(help->pos()));
    for (const QTextEdit::ExtraSelection& sel : m_diagnosticSelections) {
      if (c.position() >= sel.cursor.selectionStart() && c.position() <= sel.cursor.selectionEnd()) {
        QToolTip::showText(help->globalPos(), sel.format.toolTip(), this);
        return true;
      }
    }
    QToolTip::hideText();
    event->ignore();
    return true;
  }
  return QPlainTextEdit::event(event);
}

}  // namespace fathom::ui
