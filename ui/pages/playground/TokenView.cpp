// TokenView: the conversation with per-token colours and hover details; see TokenView.h.
#include "ui/pages/playground/TokenView.h"

#include <QHelpEvent>
#include <QTextBlock>
#include <QTextCursor>
#include <QToolTip>

#include <cmath>

#include "ui/Theme.h"

namespace fathom::ui {

namespace {
constexpr int kTokenIndexProperty = QTextFormat::UserProperty + 1;
}

TokenView::TokenView(QWidget* parent) : QTextEdit(parent) {
  setReadOnly(true);
  setUndoRedoEnabled(false);
  setAcceptRichText(false);
  setMouseTracking(true);
  setObjectName(QStringLiteral("tokenView"));
}

void TokenView::setColouring(Colouring c) { m_colouring = c; }

void TokenView::moveToEnd() {
  QTextCursor c(document());
  c.movePosition(QTextCursor::End);
  setTextCursor(c);
}

void TokenView::appendMessage(const QString& role, const QString& text) {
  QTextCursor c(document());
  c.movePosition(QTextCursor::End);
  if (!document()->isEmpty()) c.insertBlock();
  QTextCharFormat head;
  head.setFontWeight(QFont::Bold);
  head.setForeground(palette().color(QPalette::PlaceholderText));
  c.insertText(role.toUpper(), head);
  c.insertBlock();
  QTextCharFormat body;
  if (role == QLatin1String("system") || role == QLatin1String("prompt")) body.setForeground(palette().color(QPalette::PlaceholderText));
  c.insertText(text, body);
  moveToEnd();
}

void TokenView::beginReply(const QString& heading) {
  m_reply.clear();
  m_tokens.clear();
  QTextCursor c(document());
  c.movePosition(QTextCursor::End);
  if (!document()->isEmpty()) c.insertBlock();
  QTextCharFormat head;
  head.setFontWeight(QFont::Bold);
  head.setForeground(palette().color(QPalette::PlaceholderText));
  c.insertText(heading.toUpper(), head);
  c.insertBlock(QTextBlockFormat(), QTextCharFormat());
  moveToEnd();
}

QColor TokenView::tokenColour(const StreamToken& t, int index) const {
  const bool dark = Theme::instance()->isDark();
  if (m_colouring == Colouring::ByProbability && t.hasLogprob) {
    // Probability 0 → red, 1 → green; soft backgrounds that keep the text readable.
    const double p = std::clamp(std::exp(t.logprob), 0.0, 1.0);
    // Neighbours differ a little in brightness so that token boundaries stay visible.
    const float v = dark ? (index % 2 ? 0.40f : 0.48f) : (index % 2 ? 0.93f : 1.0f);
    return QColor::fromHsvF(float(p / 3.0), dark ? 0.55f : 0.32f, v);
  }
  const QColor a = dark ? QColor(0x2c, 0x3e, 0x50) : QColor(0xdd, 0xea, 0xf7);
  const QColor b = dark ? QColor(0x3d, 0x32, 0x4f) : QColor(0xf3, 0xe3, 0xd3);
  return index % 2 ? b : a;
}

void TokenView::appendDelta(const QString& text, const QList<StreamToken>& tokens) {
  QTextCursor c(document());
  c.movePosition(QTextCursor::End);
  m_reply += text;
  if (tokens.isEmpty()) {
    c.insertText(text, QTextCharFormat());
  } else {
    // Token texts may not add up to the delta's text (bytes of a split UTF-8 character); the
    // delta's text is what is shown, split along the tokens where it can be.
    QString rest = text;
    for (const StreamToken& t : tokens) {
      const int index = int(m_tokens.size());
      m_tokens << t;
      QString piece = t.text;
      if (!rest.startsWith(piece)) piece = rest.left(piece.size());
      rest.remove(0, piece.size());
      if (piece.isEmpty()) continue;
      QTextCharFormat f;
      f.setBackground(tokenColour(t, index));
      f.setProperty(kTokenIndexProperty, index);
      f.setToolTip(tokenToolTip(t));
      c.insertText(piece, f);
    }
    if (!rest.isEmpty()) c.insertText(rest, QTextCharFormat());
  }
  moveToEnd();
  ensureCursorVisible();
}

void TokenView::appendNote(const QString& text, bool error) {
  QTextCursor c(document());
  c.movePosition(QTextCursor::End);
  c.insertBlock();
  QTextCharFormat f;
  f.setFontItalic(true);
  f.setForeground(error ? Theme::instance()->statusColor(QStringLiteral("failed")) : palette().color(QPalette::PlaceholderText));
  c.insertText(text, f);
  moveToEnd();
}

QString TokenView::tokenToolTip(const StreamToken& t) {
  auto shown = [](QString s) {
    s.replace(QLatin1Char('\n'), QLatin1String("\\n")).replace(QLatin1Char('\t'), QLatin1String("\\t"));
    return QStringLiteral("'%1'").arg(s.toHtmlEscaped());
  };
  QString tip = QStringLiteral("<b>%1</b>").arg(shown(t.text));
  if (t.id >= 0) tip += QStringLiteral(" · id %1").arg(t.id);
  if (t.hasLogprob) tip += QStringLiteral("<br>logprob %1 · p %2%").arg(t.logprob, 0, 'f', 3).arg(100.0 * std::exp(t.logprob), 0, 'f', 1);
  if (!t.top.isEmpty()) {
    tip += QStringLiteral("<br><table>");
    for (const auto& [tok, lp] : t.top)
      tip += QStringLiteral("<tr><td>%1</td><td align=right>&nbsp;%2</td><td align=right>&nbsp;%3%</td></tr>")
                 .arg(shown(tok))
                 .arg(lp, 0, 'f', 3)
                 .arg(100.0 * std::exp(lp), 0, 'f', 1);
    tip += QStringLiteral("</table>");
  }
  return tip;
}

QString TokenView::tokenToolTipAt(const QPoint& viewportPos) const {
  const QTextCursor c = cursorForPosition(viewportPos);
  const QTextBlock b = c.block();
  const int pos = c.position();
  for (auto it = b.begin(); !it.atEnd(); ++it) {
    const QTextFragment f = it.fragment();
    if (pos < f.position() || pos > f.position() + f.length()) continue;
    // A position between two fragments belongs to either; prefer the token whose inside it is.
    if (f.charFormat().hasProperty(kTokenIndexProperty)) return f.charFormat().toolTip();
  }
  return {};
}

bool TokenView::viewportEvent(QEvent* event) {
  if (event->type() == QEvent::ToolTip) {
    auto* he = static_cast<QHelpEvent*>(event);
    const QString tip = tokenToolTipAt(he->pos());
    if (tip.isEmpty()) QToolTip::hideText();
    else QToolTip::showText(he->globalPos(), tip, viewport());
    return true;
  }
  return QTextEdit::viewportEvent(event);
}

}  // namespace fathom::ui
