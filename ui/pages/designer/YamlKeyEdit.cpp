// Line-based locator for block-style YAML. It classifies each line (key, list item, comment,
// continuation), derives each key's dotted path from indentation, and edits whole lines, which
// is what keeps comments and layout intact. yaml-cpp is only the fallback for flow mappings.
#include "ui/pages/designer/YamlKeyEdit.h"

#include <QRegularExpression>
#include <algorithm>
#include <QVector>

#include <yaml-cpp/yaml.h>

#include <sstream>

namespace fathom::ui {
namespace {

struct LineInfo {
  enum Kind { Blank, Comment, Key, SeqItem, Continuation };
  Kind kind = Blank;
  int indent = 0;
  QString path;             // Key lines: dotted path
  int valueStart = -1;      // Key lines: inline value range, comment excluded
  int valueEnd = -1;
  bool multilineFlow = false;  // a [ or { value that closes on a later line
};

int leadingSpaces(const QString& line) {
  int i = 0;
  while (i < line.size() && line[i] == QLatin1Char(' ')) ++i;
  return i;
}

// End of the value part of `line` from `from`: before a comment ('#' at the start or after
// whitespace, outside quotes) and trailing whitespace.
int valueEnd(const QString& line, int from) {
  bool inSingle = false, inDouble = false;
  int end = line.size();
  for (int i = from; i < line.size(); ++i) {
    const QChar c = line[i];
    if (inDouble) {
      if (c == QLatin1Char('\\')) ++i;
      else if (c == QLatin1Char('"')) inDouble = false;
    } else if (inSingle) {
      if (c == QLatin1Char('\'')) inSingle = false;  // '' is an escaped quote: closes and reopens
    } else if (c == QLatin1Char('"')) {
      inDouble = true;
    } else if (c == QLatin1Char('\'')) {
      inSingle = true;
    } else if (c == QLatin1Char('#') && (i == from || line[i - 1].isSpace())) {
      end = i;
      break;
    }
  }
  while (end > from && line[end - 1].isSpace()) --end;
  return end;
}

// Bracket depth change of a flow value (quotes respected).
int flowDepth(const QString& s) {
  int depth = 0;
  bool inSingle = false, inDouble = false;
  for (int i = 0; i < s.size(); ++i) {
    const QChar c = s[i];
    if (inDouble) {
      if (c == QLatin1Char('\\')) ++i;
      else if (c == QLatin1Char('"')) inDouble = false;
    } else if (inSingle) {
      if (c == QLatin1Char('\'')) inSingle = false;
    } else if (c == QLatin1Char('"')) inDouble = true;
    else if (c == QLatin1Char('\'')) inSingle = true;
    else if (c == QLatin1Char('[') || c == QLatin1Char('{')) ++depth;
    else if (c == QLatin1Char(']') || c == QLatin1Char('}')) --depth;
  }
  return depth;
}

QVector<LineInfo> analyse(const QStringList& lines) {
  static const QRegularExpression keyRe(QStringLiteral(R"(^( *)([A-Za-z_][\w\-\.]*|"[^"]*"|'[^']*')[ \t]*:(?=\s|$))"));
  QVector<LineInfo> out(lines.size());
  struct Open {
    int indent;
    QString key;
  };
  QVector<Open> stack;
  int blockScalarIndent = -1;  // inside `key: |` content: lines indented deeper than this
  int flowOpen = 0;            // inside a multi-line flow value
  for (int i = 0; i < lines.size(); ++i) {
    const QString& line = lines[i];
    LineInfo& info = out[i];
    const int indent = leadingSpaces(line);
    const QString rest = line.mid(indent).trimmed();
    info.indent = indent;
    if (rest.isEmpty()) {
      info.kind = LineInfo::Blank;
      continue;
    }
    if (blockScalarIndent >= 0) {
      if (indent > blockScalarIndent) {
        info.kind = LineInfo::Continuation;
        continue;
      }
      blockScalarIndent = -1;
    }
    if (flowOpen > 0) {
      info.kind = LineInfo::Continuation;
      flowOpen += flowDepth(line);
      continue;
    }
    if (rest.startsWith(QLatin1Char('#'))) {
      info.kind = LineInfo::Comment;
      continue;
    }
    if (rest == QLatin1String("---") || rest == QLatin1String("...")) {
      info.kind = LineInfo::Comment;  // document markers carry no key
      continue;
    }
    if (rest.startsWith(QLatin1String("- ")) || rest == QLatin1String("-")) {
      info.kind = LineInfo::SeqItem;
      flowOpen = std::max(0, flowDepth(rest));
      continue;
    }
    const QRegularExpressionMatch m = keyRe.match(line);
    if (!m.hasMatch()) {
      info.kind = LineInfo::Continuation;
      continue;
    }
    QString key = m.captured(2);
    if (key.size() >= 2 && (key.startsWith(QLatin1Char('"')) || key.startsWith(QLatin1Char('\''))))
      key = key.mid(1, key.size() - 2);
    while (!stack.isEmpty() && stack.back().indent >= indent) stack.pop_back();
    QStringList parts;
    for (const Open& o : stack) parts << o.key;
    parts << key;
    info.kind = LineInfo::Key;
    info.path = parts.join(QLatin1Char('.'));
    stack.push_back({indent, key});
    int vs = m.capturedEnd(0);
    while (vs < line.size() && line[vs].isSpace()) ++vs;
    const int ve = valueEnd(line, vs);
    if (ve > vs) {
      info.valueStart = vs;
      info.valueEnd = ve;
      const QChar first = line[vs];
      if (first == QLatin1Char('|') || first == QLatin1Char('>')) {
        blockScalarIndent = indent;
      } else if (first == QLatin1Char('[') || first == QLatin1Char('{')) {
        const int d = flowDepth(line.mid(vs, ve - vs));
        if (d > 0) {
          info.multilineFlow = true;
          flowOpen = d;
        }
      }
    }
  }
  return out;
}

// Last line of the value of the key at `keyLine`: nested deeper lines, and list items at the
// same indent for a key without an inline value. Trailing blank and comment lines are left out.
int blockEnd(const QVector<LineInfo>& info, int keyLine) {
  const int indent = info[keyLine].indent;
  const bool noInline = info[keyLine].valueStart < 0;
  int last = keyLine;
  for (int i = keyLine + 1; i < info.size(); ++i) {
    const LineInfo& l = info[i];
    if (l.kind == LineInfo::Blank || l.kind == LineInfo::Comment) continue;
    const bool inside = l.indent > indent || l.kind == LineInfo::Continuation ||
                        (noInline && l.kind == LineInfo::SeqItem && l.indent == indent);
    if (!inside) break;
    last = i;
  }
  return last;
}

YamlKeyEdit::Location locate(const QVector<LineInfo>& info, const QString& path) {
  YamlKeyEdit::Location loc;
  for (int i = 0; i < info.size(); ++i) {
    if (info[i].kind != LineInfo::Key || info[i].path != path) continue;
    loc.found = true;
    loc.keyLine = i;
    loc.indent = info[i].indent;
    loc.valueStart = info[i].valueStart;
    loc.valueEnd = info[i].valueEnd;
    loc.lastLine = blockEnd(info, i);
    // The last occurrence wins in yaml-cpp's duplicate handling is undefined; the first is what
    // the loader reports errors against, so edit that one.
    break;
  }
  return loc;
}

QString joinLines(const QStringList& lines) { return lines.join(QLatin1Char('\n')); }

// The comment part of a line (from '#'), or "".
QString trailingComment(const QString& line, int valueEnd) {
  const int hash = line.indexOf(QLatin1Char('#'), valueEnd);
  return hash >= 0 ? line.mid(hash) : QString();
}

QString roundTrip(const QString& text, const QStringList& parts, const QString& yamlValue, QString* error) {
  try {
    YAML::Node root = YAML::Load(text.toStdString());
    if (!root || root.IsNull()) root = YAML::Node(YAML::NodeType::Map);
    if (!root.IsMap()) {
      if (error) *error = QStringLiteral("the document is not a mapping; cannot set %1").arg(parts.join('.'));
      return text;
    }
    // yaml-cpp nodes are handles: walking down by assignment would rebind, so keep a chain.
    std::vector<YAML::Node> chain{root};
    for (int i = 0; i + 1 < parts.size(); ++i) {
      YAML::Node child = chain.back()[parts[i].toStdString()];
      if (!child.IsMap()) {
        chain.back()[parts[i].toStdString()] = YAML::Node(YAML::NodeType::Map);
        child = chain.back()[parts[i].toStdString()];
      }
      chain.push_back(child);
    }
    chain.back()[parts.back().toStdString()] = YAML::Load(yamlValue.toStdString());
    YAML::Emitter out;
    out << root;
    return QString::fromStdString(out.c_str()) + QLatin1Char('\n');
  } catch (const YAML::Exception& e) {
    if (error) *error = QStringLiteral("cannot edit the YAML (line %1): %2; fix the syntax error first")
                            .arg(e.mark.line + 1).arg(QString::fromStdString(e.msg));
    return text;
  }
}

}  // namespace

int YamlKeyEdit::indentUnit(const QString& text) {
  const QVector<LineInfo> info = analyse(text.split(QLatin1Char('\n')));
  int unit = 0;
  for (const LineInfo& l : info)
    if (l.kind == LineInfo::Key && l.indent > 0 && (unit == 0 || l.indent < unit)) unit = l.indent;
  return unit > 0 ? unit : 2;
}

YamlKeyEdit::Location YamlKeyEdit::find(const QString& text, const QString& path) {
  return locate(analyse(text.split(QLatin1Char('\n'))), path);
}

QString YamlKeyEdit::inlineValue(const QString& text, const QString& path) {
  const QStringList lines = text.split(QLatin1Char('\n'));
  const Location loc = locate(analyse(lines), path);
  if (!loc.found || !loc.inlineValue()) return QString();
  QString v = lines[loc.keyLine].mid(loc.valueStart, loc.valueEnd - loc.valueStart);
  if (v.size() >= 2 && ((v.startsWith('"') && v.endsWith('"')) || (v.startsWith('\'') && v.endsWith('\''))))
    v = v.mid(1, v.size() - 2);
  return v;
}

QString YamlKeyEdit::setValue(const QString& text, const QString& path, const QString& yamlValue,
                              bool* usedFallback, QString* error) {
  if (usedFallback) *usedFallback = false;
  QStringList lines = text.split(QLatin1Char('\n'));
  const QVector<LineInfo> info = analyse(lines);
  const QStringList parts = path.split(QLatin1Char('.'));
  auto fallback = [&] {
    if (usedFallback) *usedFallback = true;
    return roundTrip(text, parts, yamlValue, error);
  };

  const Location loc = locate(info, path);
  if (loc.found) {
    const LineInfo& l = info[loc.keyLine];
    if (l.multilineFlow) return fallback();
    QString& line = lines[loc.keyLine];
    if (loc.inlineValue()) {
      const QChar first = line[loc.valueStart];
      const bool blockScalar = first == QLatin1Char('|') || first == QLatin1Char('>');
      line.replace(loc.valueStart, loc.valueEnd - loc.valueStart, yamlValue);
      if (blockScalar && loc.lastLine > loc.keyLine)
        for (int i = loc.lastLine; i > loc.keyLine; --i) lines.removeAt(i);
      return joinLines(lines);
    }
    // Block value (list items or a nested mapping) becomes one inline value.
    const QString comment = trailingComment(line, line.indexOf(QLatin1Char(':')) + 1);
    line = QString(loc.indent, QLatin1Char(' ')) + parts.back() + QStringLiteral(": ") + yamlValue +
           (comment.isEmpty() ? QString() : QStringLiteral("  ") + comment);
    for (int i = loc.lastLine; i > loc.keyLine; --i) lines.removeAt(i);
    return joinLines(lines);
  }

  const int unit = indentUnit(text);
  // Deepest existing parent mapping.
  for (int k = parts.size() - 1; k >= 1; --k) {
    const QString parentPath = QStringList(parts.mid(0, k)).join(QLatin1Char('.'));
    const Location parent = locate(info, parentPath);
    if (!parent.found) continue;
    if (parent.inlineValue() || info[parent.keyLine].multilineFlow) return fallback();  // flow mapping
    int childIndent = parent.indent + unit;
    for (int i = parent.keyLine + 1; i <= parent.lastLine; ++i)
      if (info[i].kind == LineInfo::Key) {
        childIndent = info[i].indent;
        break;
      }
    QStringList insert;
    for (int j = k; j < parts.size(); ++j) {
      const QString pad(childIndent + (j - k) * unit, QLatin1Char(' '));
      insert << (j + 1 == parts.size() ? pad + parts[j] + QStringLiteral(": ") + yamlValue : pad + parts[j] + QLatin1Char(':'));
    }
    for (int j = 0; j < insert.size(); ++j) lines.insert(parent.lastLine + 1 + j, insert[j]);
    return joinLines(lines);
  }

  // `extends` reads best first: insert it after the leading comment block.
  if (parts.size() == 1 && parts[0] == QLatin1String("extends")) {
    int at = 0;
    while (at < info.size() && info[at].kind == LineInfo::Comment) ++at;
    lines.insert(at, QStringLiteral("extends: ") + yamlValue);
    return joinLines(lines);
  }
  // No parent at all: append a new section at the end.
  while (!lines.isEmpty() && lines.back().trimmed().isEmpty()) lines.removeLast();
  for (int j = 0; j < parts.size(); ++j) {
    const QString pad(j * unit, QLatin1Char(' '));
    lines << (j + 1 == parts.size() ? pad + parts[j] + QStringLiteral(": ") + yamlValue : pad + parts[j] + QLatin1Char(':'));
  }
  lines << QString();  // end with a newline
  return joinLines(lines);
}

QString YamlKeyEdit::removeKey(const QString& text, const QString& path) {
  QStringList lines = text.split(QLatin1Char('\n'));
  const QVector<LineInfo> info = analyse(lines);
  const Location loc = locate(info, path);
  if (!loc.found) return text;
  for (int i = loc.lastLine; i >= loc.keyLine; --i) lines.removeAt(i);
  QString out = joinLines(lines);
  // A parent left without children would read as `model:` (null), which the loader rejects.
  const int dot = path.lastIndexOf(QLatin1Char('.'));
  if (dot > 0) {
    const QString parentPath = path.left(dot);
    const QVector<LineInfo> after = analyse(lines);
    const Location parent = locate(after, parentPath);
    if (parent.found && !parent.inlineValue() && parent.lastLine == parent.keyLine) out = removeKey(out, parentPath);
  }
  return out;
}

}  // namespace fathom::ui
