// Syntax colouring for the Designer's YAML editor: keys, strings, numbers, booleans/null,
// comments, anchors, list dashes. Line-local (configs use no multi-line constructs worth the
// state), colours from the theme.
#pragma once

#include <QSyntaxHighlighter>
#include <QTextCharFormat>

namespace fathom::ui {

class YamlHighlighter : public QSyntaxHighlighter {
  Q_OBJECT
 public:
  explicit YamlHighlighter(QTextDocument* document);
  // Re-reads the theme's colours and re-highlights.
  void updateColors();

 protected:
  void highlightBlock(const QString& text) override;

 private:
  QTextCharFormat m_key, m_string, m_number, m_bool, m_comment, m_punct, m_anchor;
};

}  // namespace fathom::ui
