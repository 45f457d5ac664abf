// A small YAML scanner per line: the key part, then the value part token by token, comments last.
#include "ui/pages/designer/YamlHighlighter.h"

#include <QRegularExpression>

#include "ui/Theme.h"

namespace fathom::ui {

YamlHighlighter::YamlHighlighter(QTextDocument* document) : QSyntaxHighlighter(document) {
  updateColors();
  connect(Theme::instance(), &Theme::changed, this, &YamlHighlighter::updateColors);
}

void YamlHighlighter::updateColors() {
  Theme* t = Theme::instance();
  m_key.setForeground(t->color(QStringLiteral("yaml.key")));
  m_string.setForeground(t->color(QStringLiteral("yaml.string")));
  m_number.setForeground(t->color(QStringLiteral("yaml.number")));
  m_bool.setForeground(t->color(QStringLiteral("yaml.bool")));
  m_comment.setForeground(t->color(QStringLiteral("yaml.comment")));
  m_comment.setFontItalic(true);
  m_punct.setForeground(t->color(QStringLiteral("yaml.punct")));
  m_anchor.setForeground(t->color(QStringLiteral("yaml.anchor")));
  rehighlight();
}

void YamlHighlighter::highlightBlock(const QString& text) {
  static const QRegularExpression keyRe(QStringLiteral(R"(^(\s*(?:-\s+)?)([^\s#'"][^:#]*?|"[^"]*"|'[^']*')\s*(:)(?=\s|$))"));
  static const QRegularExpression tokenRe(QStringLiteral(
      R"(("(?:[^"\\]|\\.)*"?|'(?:[^']|'')*'?)|(#.*$)|([&*][\w\-]+)|([-+]?(?:\.inf|\.nan|\d[\d_]*(?:\.\d*)?(?:[eE][-+]?\d+)?|\.\d+(?:[eE][-+]?\d+)?)(?=[\s,\]}]|$))|(\b(?:true|false|yes|no|on|off|null|True|False|TRUE|FALSE|Null|NULL)\b|~)|([\[\]{},]|^\s*-(?=\s|$)|^---|^\.\.\.))"));
  int pos = 0;
  const QRegularExpressionMatch km = keyRe.match(text);
  if (km.hasMatch()) {
    const int dash = km.captured(1).indexOf(QLatin1Char('-'));
    if (dash >= 0) setFormat(dash, 1, m_punct);
    setFormat(km.capturedStart(2), km.capturedLength(2), m_key);
    setFormat(km.capturedStart(3), 1, m_punct);
    pos = km.capturedEnd(0);
  }
  auto it = tokenRe.globalMatch(text, pos);
  while (it.hasNext()) {
    const QRegularExpressionMatch m = it.next();
    if (m.capturedLength(1)) setFormat(m.capturedStart(1), m.capturedLength(1), m_string);
    else if (m.capturedLength(2)) {
      // '#' starts a comment only at the line start or after whitespace.
      const int s = m.capturedStart(2);
      if (s == 0 || text[s - 1].isSpace()) {
        setFormat(s, text.size() - s, m_comment);
        break;
      }
    } else if (m.capturedLength(3)) setFormat(m.capturedStart(3), m.capturedLength(3), m_anchor);
    else if (m.capturedLength(4)) setFormat(m.capturedStart(4), m.capturedLength(4), m_number);
    else if (m.capturedLength(5)) setFormat(m.capturedStart(5), m.capturedLength(5), m_bool);
    else if (m.capturedLength(6)) setFormat(m.capturedStart(6), m.capturedLength(6), m_punct);
  }
}

}  // namespace fathom::ui
