// The form half of the Designer, generated from the fathom_config schema: one collapsible
// section per schema section (nested groups inside), one editor per key chosen by its type,
// units as suffixes, ranges as limits, descriptions as tooltips. It only shows values and
// reports edits; the Designer page turns edits into YAML.
#pragma once

#include <QHash>
#include <QSet>
#include <QWidget>

#include "engine/config/config.h"

class QLabel;
class QLineEdit;
class QToolButton;
class QFormLayout;

namespace fathom::config {
struct KeyInfo;
}

namespace fathom::ui {

class CollapsibleSection;

class ConfigForm : public QWidget {
  Q_OBJECT
 public:
  explicit ConfigForm(QWidget* parent = nullptr);

  // Shows `config`; keys in `explicitKeys` (set in this document) are highlighted and get a
  // reset button. The editor that has focus keeps what the user is typing.
  void setConfig(const config::RunConfig& config, const QSet<QString>& explicitKeys);
  // Shows only keys whose path or description contains `text` (case-insensitive).
  void setFilter(const QString& text);

  // The editor widget of a key (tests drive it); nullptr for unknown keys.
  QWidget* editorFor(const QString& path) const;
  QStringList sectionPaths() const;
  bool isSectionExpanded(const QString& path) const;
  void setSectionExpanded(const QString& path, bool expanded);

 signals:
  // The user changed a key; `yamlValue` is the value as YAML text (schema value_to_yaml).
  void valueEdited(const QString& path, const QString& yamlValue);
  // The user asked to drop the key from the document (inherit the preset's value).
  void resetRequested(const QString& path);

 private:
  struct Field {
    const config::KeyInfo* key = nullptr;
    QWidget* editor = nullptr;
    QLabel* label = nullptr;
    QToolButton* reset = nullptr;
    QWidget* row = nullptr;
    QFormLayout* form = nullptr;
    QWidget* labelWidget = nullptr;
  };

  void buildGroup(const QString& path, QWidget* parent, QLayout* into, int depth);
  Field makeField(const config::KeyInfo& key, QWidget* parent);
  void showValue(Field& field, const config::RunConfig& config);
  void emitEdit(const config::KeyInfo& key, const QString& yamlValue);
  bool updateVisibility(const QString& groupPath);

  QLineEdit* m_search;
  QHash<QString, Field> m_fields;
  QHash<QString, CollapsibleSection*> m_sections;
  QHash<QString, QStringList> m_groupChildren;  // group -> child keys and groups (full paths)
  QString m_filter;
  bool m_updating = false;
};

}  // namespace fathom::ui
