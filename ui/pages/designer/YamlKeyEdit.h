// Edits one key of a YAML config as text, so that the Designer's form can change a value without
// losing the user's comments, order and layout. Understands the block style configs are written
// in (nested `key: value` mappings, block and flow lists, block scalars); anything it cannot edit
// in place (flow mappings, multi-line flow values) is done by a yaml-cpp round trip instead,
// which keeps the data but drops comments.
#pragma once

#include <QString>
#include <QStringList>

namespace fathom::ui {

class YamlKeyEdit {
 public:
  // Where a key sits in the text. Lines and columns are 0-based.
  struct Location {
    bool found = false;
    int keyLine = -1;
    int indent = 0;
    int valueStart = -1, valueEnd = -1;  // inline value on keyLine (comment excluded); -1 = none
    int lastLine = -1;                   // last line of the key's value (nested block included)
    bool inlineValue() const { return valueStart >= 0 && valueEnd > valueStart; }
  };

  // Finds a dotted key path ("train.max_steps", "extends").
  static Location find(const QString& text, const QString& path);
  // Inline value text of a key ("" when absent or not inline), unquoted for plain scalars.
  static QString inlineValue(const QString& text, const QString& path);

  // Sets `path` to `yamlValue` (a YAML scalar or flow list, as schema value_to_yaml writes):
  // replaced in place when the key exists; else inserted at the end of its deepest existing
  // parent mapping, creating missing parents; else appended. `usedFallback` tells whether the
  // yaml-cpp round trip was needed. Returns the new text; on a YAML syntax error in `text` that
  // blocks the fallback, returns `text` unchanged and sets `error`.
  static QString setValue(const QString& text, const QString& path, const QString& yamlValue,
                          bool* usedFallback = nullptr, QString* error = nullptr);

  // Removes `path` (its line and any nested block), and parents that become empty, so the key
  // falls back to the preset's (or schema's) value. Unchanged text when the key is absent.
  static QString removeKey(const QString& text, const QString& path);

  // The indentation step the document uses (the smallest positive key indent), default 2.
  static int indentUnit(const QString& text);
};

}  // namespace fathom::ui
