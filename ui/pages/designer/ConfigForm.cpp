// Form generation: walks schema_children() from the top level, so a key added to the schema
// appears here without touching the workbench.
#include "ui/pages/designer/ConfigForm.h"

#include <QCheckBox>
#include <QApplication>
#include <QComboBox>
#include <QFileDialog>
#include <QFormLayout>
#include <QHBoxLayout>
#include <QLabel>
#include <QLineEdit>
#include <QScrollArea>
#include <QToolButton>
#include <QVBoxLayout>

#include <cmath>

#include "engine/config/schema.h"
#include "ui/Theme.h"
#include "ui/pages/designer/FieldEditors.h"

namespace fathom::ui {
namespace cfg = fathom::config;

namespace {

QString qs(const std::string& s) { return QString::fromStdString(s); }

QString boundText(const cfg::KeyInfo& k, double v) {
  if (k.type == cfg::KeyType::Float) return qs(cfg::format_double(v));
  return QString::number(static_cast<qint64>(v));
}

QString rangeText(const cfg::KeyInfo& k) {
  const bool hugeMax = k.max && *k.max >= 1e15;
  QString lo = k.min ? (k.min_exclusive ? QStringLiteral("> ") : QStringLiteral("≥ ")) + boundText(k, *k.min) : QString();
  QString hi = (k.max && !hugeMax) ? (k.max_exclusive ? QStringLiteral("< ") : QStringLiteral("≤ ")) + boundText(k, *k.max) : QString();
  if (lo.isEmpty() && hi.isEmpty()) return QString();
  if (lo.isEmpty()) return hi;
  if (hi.isEmpty()) return lo;
  return lo + QStringLiteral(", ") + hi;
}

QString tooltipFor(const cfg::KeyInfo& k) {
  QString t = QStringLiteral("<b>%1</b> <span style='color:gray'>(%2%3)</span><br>%4")
                  .arg(qs(k.path).toHtmlEscaped(), QString::fromLatin1(cfg::key_type_name(k.type)),
                       k.unit.empty() ? QString() : QStringLiteral(", ") + qs(k.unit),
                       qs(k.description).toHtmlEscaped());
  t += QStringLiteral("<br>Default: <code>%1</code>").arg(qs(cfg::value_to_string(k.default_value)).toHtmlEscaped());
  const QString range = rangeText(k);
  if (!range.isEmpty()) t += QStringLiteral(" · Range: %1").arg(range.toHtmlEscaped());
  if (!k.choices.empty()) {
    QStringList c;
    for (const auto& s : k.choices) c << qs(s);
    t += QStringLiteral(" · One of: %1").arg(c.join(QStringLiteral(", ")).toHtmlEscaped());
  }
  return t;
}

bool parseDouble(const QString& text, double* out) {
  bool ok = false;
  const double v = QLocale::c().toDouble(text.trimmed(), &ok);
  if (ok) *out = v;
  return ok;
}

bool inRange(const cfg::KeyInfo& k, double v) {
  if (!std::isfinite(v)) return false;
  if (k.min && (k.min_exclusive ? v <= *k.min : v < *k.min)) return false;
  if (k.max && (k.max_exclusive ? v >= *k.max : v > *k.max)) return false;
  return true;
}

}  // namespace

ConfigForm::ConfigForm(QWidget* parent) : QWidget(parent) {
  auto* layout = new QVBoxLayout(this);
  layout->setContentsMargins(0, 0, 0, 0);
  layout->setSpacing(4);
  m_search = new QLineEdit(this);
  m_search->setPlaceholderText(tr("Filter keys (e.g. lr, batch, checkpoint)"));
  m_search->setClearButtonEnabled(true);
  layout->addWidget(m_search);
  connect(m_search, &QLineEdit::textChanged, this, &ConfigForm::setFilter);

  auto* scroll = new QScrollArea(this);
  scroll->setWidgetResizable(true);
  scroll->setFrameShape(QFrame::NoFrame);
  auto* content = new QWidget(scroll);
  auto* contentLayout = new QVBoxLayout(content);
  contentLayout->setContentsMargins(2, 0, 8, 8);
  contentLayout->setSpacing(0);
  buildGroup(QString(), content, contentLayout, 0);
  contentLayout->addStretch(1);
  scroll->setWidget(content);
  layout->addWidget(scroll, 1);

  // Sections that matter for a first run stay open; the rest start folded.
  for (auto it = m_sections.begin(); it != m_sections.end(); ++it) {
    static const QSet<QString> open{QStringLiteral("run"), QStringLiteral("model"), QStringLiteral("data"),
                                    QStringLiteral("train"), QStringLiteral("optimizer")};
    it.value()->setExpanded(open.contains(it.key()));
  }
  connect(Theme::instance(), &Theme::changed, this, [this] {
    for (Field& f : m_fields) {
      QPalette p = f.label->palette();
      p.setColor(QPalette::WindowText, f.reset->isVisible() ? Theme::instance()->color(QStringLiteral("form.explicit"))
                                                            : palette().color(QPalette::WindowText));
      f.label->setPalette(p);
    }
  });
}

void ConfigForm::buildGroup(const QString& path, QWidget* parent, QLayout* into, int depth) {
  QFormLayout* form = nullptr;
  for (const std::string& child : cfg::schema_children(path.toStdString())) {
    const QString full = path.isEmpty() ? qs(child) : path + QLatin1Char('.') + qs(child);
    m_groupChildren[path] << full;
    if (const cfg::KeyInfo* key = cfg::find_key(full.toStdString())) {
      if (!form) {
        form = new QFormLayout;
        form->setFieldGrowthPolicy(QFormLayout::AllNonFixedFieldsGrow);
        form->setLabelAlignment(Qt::AlignRight | Qt::AlignVCenter);
        form->setHorizontalSpacing(10);
        form->setVerticalSpacing(4);
        static_cast<QBoxLayout*>(into)->addLayout(form);
      }
      Field f = makeField(*key, parent);
      f.form = form;
      form->addRow(f.labelWidget, f.row);
      m_fields.insert(full, f);
      continue;
    }
    // A group: a collapsible section; keys after it start a new form block.
    const cfg::SectionInfo* info = cfg::find_section(full.toStdString());
    auto* section = new CollapsibleSection(depth == 0 ? qs(child) : qs(child), info ? qs(info->description) : QString(),
                                           depth, parent);
    m_sections.insert(full, section);
    static_cast<QBoxLayout*>(into)->addWidget(section);
    buildGroup(full, section->content(), section->contentLayout(), depth + 1);
    form = nullptr;
  }
}

ConfigForm::Field ConfigForm::makeField(const cfg::KeyInfo& key, QWidget* parent) {
  Field f;
  f.key = &key;
  const QString tip = tooltipFor(key);
  const QString unit = qs(key.unit);

  f.labelWidget = new QWidget(parent);
  auto* labelRow = new QHBoxLayout(f.labelWidget);
  labelRow->setContentsMargins(0, 0, 0, 0);
  labelRow->setSpacing(2);
  f.reset = new QToolButton(f.labelWidget);
  f.reset->setText(QStringLiteral("↺"));
  f.reset->setAutoRaise(true);
  f.reset->setToolTip(tr("Remove %1 from this file, so the preset's value applies").arg(qs(key.path)));
  f.reset->setFixedSize(18, 18);
  QSizePolicy sp = f.reset->sizePolicy();
  sp.setRetainSizeWhenHidden(true);
  f.reset->setSizePolicy(sp);
  f.reset->hide();
  f.label = new QLabel(qs(key.name()), f.labelWidget);
  f.label->setToolTip(tip);
  labelRow->addWidget(f.reset);
  labelRow->addWidget(f.label);
  const QString path = qs(key.path);
  connect(f.reset, &QToolButton::clicked, this, [this, path] { emit resetRequested(path); });

  f.row = new QWidget(parent);
  auto* row = new QHBoxLayout(f.row);
  row->setContentsMargins(0, 0, 0, 0);
  row->setSpacing(4);
  const cfg::KeyInfo* k = &key;

  switch (key.type) {
    case cfg::KeyType::Bool: {
      auto* box = new QCheckBox(f.row);
      connect(box, &QCheckBox::toggled, this, [this, k](bool on) {
        emitEdit(*k, on ? QStringLiteral("true") : QStringLiteral("false"));
      });
      f.editor = box;
      row->addWidget(box);
      row->addStretch();
      break;
    }
    case cfg::KeyType::Int: {
      auto* spin = new Int64SpinBox(f.row);
      const qint64 lo = key.min ? static_cast<qint64>(std::ceil(*key.min + (key.min_exclusive ? 1 : 0))) : -9000000000000000LL;
      const qint64 hi = key.max ? static_cast<qint64>(std::floor(*key.max - (key.max_exclusive ? 1 : 0))) : 9000000000000000LL;
      spin->setRange(lo, hi);
      if (!unit.isEmpty()) spin->setSuffix(QLatin1Char(' ') + unit);
      connect(spin, &Int64SpinBox::valueEdited, this, [this, k](qint64 v) { emitEdit(*k, QString::number(v)); });
      f.editor = spin;
      row->addWidget(spin);
      row->addStretch();
      break;
    }
    case cfg::KeyType::Float: {
      auto* edit = new QLineEdit(f.row);
      edit->setMaximumWidth(160);
      connect(edit, &QLineEdit::editingFinished, this, [this, k, edit] {
        double v = 0;
        const bool ok = parseDouble(edit->text(), &v);
        edit->setStyleSheet(ok && inRange(*k, v) ? QString()
                                                 : QStringLiteral("QLineEdit { border: 1px solid %1; }")
                                                       .arg(Theme::instance()->color(QStringLiteral("error.underline")).name()));
        if (!ok || !edit->isModified()) return;
        edit->setModified(false);
        emitEdit(*k, qs(cfg::format_double(v)));
      });
      f.editor = edit;
      row->addWidget(edit);
      if (!unit.isEmpty()) row->addWidget(new QLabel(unit, f.row));
      row->addStretch();
      break;
    }
    case cfg::KeyType::String: {
      auto* edit = new QLineEdit(f.row);
      connect(edit, &QLineEdit::editingFinished, this, [this, k, edit] {
        if (!edit->isModified()) return;
        edit->setModified(false);
        emitEdit(*k, qs(cfg::value_to_yaml(*k, cfg::Value(edit->text().toStdString()))));
      });
      f.editor = edit;
      row->addWidget(edit, 1);
      if (key.path_kind == cfg::PathKind::FileRelative) {
        auto* browse = new QToolButton(f.row);
        browse->setText(QStringLiteral("…"));
        browse->setToolTip(tr("Choose a file or directory"));
        connect(browse, &QToolButton::clicked, this, [this, k, edit] {
          const QString p = QFileDialog::getExistingDirectory(this, tr("Choose %1").arg(qs(k->path)), edit->text());
          if (p.isEmpty()) return;
          edit->setText(p);
          emitEdit(*k, qs(cfg::value_to_yaml(*k, cfg::Value(p.toStdString()))));
        });
        row->addWidget(browse);
      }
      break;
    }
    case cfg::KeyType::Enum: {
      auto* combo = new QComboBox(f.row);
      for (const auto& c : key.choices) combo->addItem(qs(c));
      connect(combo, &QComboBox::activated, this, [this, k, combo](int) { emitEdit(*k, combo->currentText()); });
      f.editor = combo;
      row->addWidget(combo);
      row->addStretch();
      break;
    }
    case cfg::KeyType::StringList:
    case cfg::KeyType::IntList: {
      const bool ints = key.type == cfg::KeyType::IntList;
      auto* list = new ListEditor(key.path_kind == cfg::PathKind::FileRelative ? ListEditor::Browse::Paths
                                                                               : ListEditor::Browse::None,
                                  f.row);
      list->setIntegerItems(ints);
      connect(list, &ListEditor::itemsEdited, this, [this, k, ints](const QStringList& items) {
        if (ints) {
          std::vector<int64_t> v;
          for (const QString& s : items) {
            bool ok = false;
            const qint64 n = s.toLongLong(&ok);
            if (ok) v.push_back(n);
          }
          emitEdit(*k, qs(cfg::value_to_yaml(*k, cfg::Value(v))));
        } else {
          std::vector<std::string> v;
          for (const QString& s : items) v.push_back(s.toStdString());
          emitEdit(*k, qs(cfg::value_to_yaml(*k, cfg::Value(v))));
        }
      });
      f.editor = list;
      row->addWidget(list, 1);
      break;
    }
  }
  f.editor->setToolTip(tip);
  f.editor->setObjectName(qs(key.path));
  return f;
}

void ConfigForm::emitEdit(const cfg::KeyInfo& key, const QString& yamlValue) {
  if (m_updating) return;
  emit valueEdited(qs(key.path), yamlValue);
}

void ConfigForm::setConfig(const cfg::RunConfig& config, const QSet<QString>& explicitKeys) {
  m_updating = true;
  const QColor explicitColor = Theme::instance()->color(QStringLiteral("form.explicit"));
  for (auto it = m_fields.begin(); it != m_fields.end(); ++it) {
    Field& f = it.value();
    showValue(f, config);
    const bool isExplicit = explicitKeys.contains(it.key());
    f.reset->setVisible(isExplicit);
    QFont font = f.label->font();
    font.setBold(isExplicit);
    f.label->setFont(font);
    QPalette p = f.label->palette();
    p.setColor(QPalette::WindowText, isExplicit ? explicitColor : palette().color(QPalette::WindowText));
    f.label->setPalette(p);
  }
  m_updating = false;
}

void ConfigForm::showValue(Field& f, const cfg::RunConfig& config) {
  const cfg::Value v = cfg::get_value(config, *f.key);
  const bool typing = f.editor->hasFocus() || f.editor->isAncestorOf(QApplication::focusWidget());
  switch (f.key->type) {
    case cfg::KeyType::Bool:
      static_cast<QCheckBox*>(f.editor)->setChecked(std::get<bool>(v));
      break;
    case cfg::KeyType::Int:
      if (!typing) static_cast<Int64SpinBox*>(f.editor)->setValue(std::get<int64_t>(v));
      break;
    case cfg::KeyType::Float: {
      auto* edit = static_cast<QLineEdit*>(f.editor);
      if (!typing) {
        edit->setText(qs(cfg::format_double(std::get<double>(v))));
        edit->setStyleSheet(QString());
      }
      break;
    }
    case cfg::KeyType::String:
      if (!typing) static_cast<QLineEdit*>(f.editor)->setText(qs(std::get<std::string>(v)));
      break;
    case cfg::KeyType::Enum: {
      auto* combo = static_cast<QComboBox*>(f.editor);
      const int i = combo->findText(qs(std::get<std::string>(v)));
      if (i >= 0) combo->setCurrentIndex(i);
      break;
    }
    case cfg::KeyType::StringList: {
      QStringList items;
      for (const auto& s : std::get<std::vector<std::string>>(v)) items << qs(s);
      if (!typing) static_cast<ListEditor*>(f.editor)->setItems(items);
      break;
    }
    case cfg::KeyType::IntList: {
      QStringList items;
      for (int64_t n : std::get<std::vector<int64_t>>(v)) items << QString::number(n);
      if (!typing) static_cast<ListEditor*>(f.editor)->setItems(items);
      break;
    }
  }
}

void ConfigForm::setFilter(const QString& text) {
  m_filter = text.trimmed();
  if (m_search->text().trimmed() != m_filter) m_search->setText(text);
  updateVisibility(QString());
}

bool ConfigForm::updateVisibility(const QString& groupPath) {
  bool any = false;
  for (const QString& child : m_groupChildren.value(groupPath)) {
    if (m_fields.contains(child)) {
      Field& f = m_fields[child];
      const bool match = m_filter.isEmpty() || child.contains(m_filter, Qt::CaseInsensitive) ||
                         qs(f.key->description).contains(m_filter, Qt::CaseInsensitive);
      f.form->setRowVisible(f.row, match);
      any |= match;
    } else if (CollapsibleSection* s = m_sections.value(child)) {
      const bool visible = updateVisibility(child);
      s->setVisible(visible);
      if (!m_filter.isEmpty() && visible) s->setExpanded(true);
      any |= visible;
    }
  }
  return any;
}

QWidget* ConfigForm::editorFor(const QString& path) const {
  auto it = m_fields.find(path);
  return it == m_fields.end() ? nullptr : it->editor;
}

QStringList ConfigForm::sectionPaths() const { return m_sections.keys(); }

bool ConfigForm::isSectionExpanded(const QString& path) const {
  CollapsibleSection* s = m_sections.value(path);
  return s && s->isExpanded();
}

void ConfigForm::setSectionExpanded(const QString& path, bool expanded) {
  if (CollapsibleSection* s = m_sections.value(path)) s->setExpanded(expanded);
}

}  // namespace fathom::ui
