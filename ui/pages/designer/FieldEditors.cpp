// Implementation of the form's editor widgets.
#include "ui/pages/designer/FieldEditors.h"

#include <QFileDialog>
#include <QHBoxLayout>
#include <QLabel>
#include <QLineEdit>
#include <QListWidget>
#include <QToolButton>
#include <QVBoxLayout>

#include <limits>

namespace fathom::ui {

// ---- Int64SpinBox -------------------------------------------------------------------------------

Int64SpinBox::Int64SpinBox(QWidget* parent) : QAbstractSpinBox(parent) {
  setKeyboardTracking(false);
  setCorrectionMode(QAbstractSpinBox::CorrectToNearestValue);
  lineEdit()->setText(text(m_value));
  connect(this, &QAbstractSpinBox::editingFinished, this, &Int64SpinBox::commitText);
}

QString Int64SpinBox::text(qint64 v) const { return QString::number(v) + m_suffix; }

void Int64SpinBox::setValue(qint64 value) {
  m_value = std::clamp(value, m_min, m_max);
  lineEdit()->setText(text(m_value));
}

void Int64SpinBox::setRange(qint64 min, qint64 max) {
  m_min = min;
  m_max = std::max(min, max);
  setValue(m_value);
}

void Int64SpinBox::setSuffix(const QString& suffix) {
  m_suffix = suffix;
  lineEdit()->setText(text(m_value));
}

bool Int64SpinBox::parse(const QString& input, qint64* out) const {
  QString t = input.trimmed();
  if (!m_suffix.isEmpty() && t.endsWith(m_suffix.trimmed())) t.chop(m_suffix.trimmed().size());
  t = t.trimmed().remove(QLatin1Char('_')).remove(QLatin1Char(','));
  bool ok = false;
  const qint64 v = t.toLongLong(&ok);
  if (ok) *out = v;
  return ok;
}

QValidator::State Int64SpinBox::validate(QString& input, int&) const {
  QString t = input.trimmed();
  if (!m_suffix.isEmpty() && t.endsWith(m_suffix.trimmed())) t.chop(m_suffix.trimmed().size());
  t = t.trimmed();
  if (t.isEmpty() || t == QLatin1String("-")) return QValidator::Intermediate;
  qint64 v = 0;
  if (!parse(input, &v)) return QValidator::Invalid;
  return (v >= m_min && v <= m_max) ? QValidator::Acceptable : QValidator::Intermediate;
}

void Int64SpinBox::fixup(QString& input) const {
  qint64 v = m_value;
  parse(input, &v);
  input = text(std::clamp(v, m_min, m_max));
}

void Int64SpinBox::commitText() {
  qint64 v = m_value;
  if (!parse(lineEdit()->text(), &v)) v = m_value;
  v = std::clamp(v, m_min, m_max);
  const bool changed = v != m_value;
  setValue(v);
  if (changed) emit valueEdited(m_value);
}

void Int64SpinBox::stepBy(int steps) {
  qint64 v = m_value;
  parse(lineEdit()->text(), &v);
  // Saturating add: ranges reach 9e15.
  const qint64 next = steps > 0 ? (v > m_max - steps ? m_max : v + steps) : (v < m_min - steps ? m_min : v + steps);
  const qint64 clamped = std::clamp(next, m_min, m_max);
  if (clamped == m_value) return;
  setValue(clamped);
  emit valueEdited(m_value);
}

QAbstractSpinBox::StepEnabled Int64SpinBox::stepEnabled() const {
  StepEnabled e = StepNone;
  if (m_value > m_min) e |= StepDownEnabled;
  if (m_value < m_max) e |= StepUpEnabled;
  return e;
}

QSize Int64SpinBox::sizeHint() const {
  // Wide enough for typical values, not for 9e15: the schema's open upper bounds are huge.
  QSize s = QAbstractSpinBox::sizeHint();
  const int w = fontMetrics().horizontalAdvance(QStringLiteral("0000000") + m_suffix) + 40;
  return QSize(std::max(w, 110), s.height());
}

// ---- ListEditor ---------------------------------------------------------------------------------

ListEditor::ListEditor(Browse browse, QWidget* parent) : QWidget(parent) {
  auto* row = new QHBoxLayout(this);
  row->setContentsMargins(0, 0, 0, 0);
  row->setSpacing(4);
  m_list = new QListWidget(this);
  m_list->setEditTriggers(QAbstractItemView::DoubleClicked | QAbstractItemView::EditKeyPressed |
                          QAbstractItemView::SelectedClicked);
  const int rowH = m_list->fontMetrics().height() + 6;
  m_list->setFixedHeight(rowH * 3 + 6);
  row->addWidget(m_list, 1);
  auto* buttons = new QVBoxLayout;
  buttons->setSpacing(2);
  auto* add = new QToolButton(this);
  add->setText(QStringLiteral("+"));
  add->setToolTip(tr("Add an item"));
  auto* remove = new QToolButton(this);
  remove->setText(QStringLiteral("−"));
  remove->setToolTip(tr("Remove the selected item"));
  buttons->addWidget(add);
  buttons->addWidget(remove);
  if (browse == Browse::Paths) {
    auto* pick = new QToolButton(this);
    pick->setText(QStringLiteral("…"));
    pick->setToolTip(tr("Add a file or directory"));
    buttons->addWidget(pick);
    connect(pick, &QToolButton::clicked, this, [this] {
      const QString path = QFileDialog::getExistingDirectory(this, tr("Add a directory of training text"));
      if (path.isEmpty()) return;
      auto* item = new QListWidgetItem(path, m_list);
      item->setFlags(item->flags() | Qt::ItemIsEditable);
      emitEdited();
    });
  }
  buttons->addStretch();
  row->addLayout(buttons);
  connect(add, &QToolButton::clicked, this, [this] {
    auto* item = new QListWidgetItem(m_integers ? QStringLiteral("0") : QString(), m_list);
    item->setFlags(item->flags() | Qt::ItemIsEditable);
    m_list->setCurrentItem(item);
    m_list->editItem(item);
  });
  connect(remove, &QToolButton::clicked, this, [this] {
    delete m_list->currentItem();
    emitEdited();
  });
  connect(m_list, &QListWidget::itemChanged, this, [this] { emitEdited(); });
}

QStringList ListEditor::items() const {
  QStringList out;
  for (int i = 0; i < m_list->count(); ++i) {
    const QString t = m_list->item(i)->text().trimmed();
    if (!t.isEmpty()) out << t;
  }
  return out;
}

void ListEditor::setItems(const QStringList& items) {
  if (items == this->items()) return;
  m_updating = true;
  m_list->clear();
  for (const QString& t : items) {
    auto* item = new QListWidgetItem(t, m_list);
    item->setFlags(item->flags() | Qt::ItemIsEditable);
  }
  m_updating = false;
}

void ListEditor::emitEdited() {
  if (m_updating) return;
  emit itemsEdited(items());
}

// ---- CollapsibleSection -------------------------------------------------------------------------

CollapsibleSection::CollapsibleSection(const QString& title, const QString& subtitle, int depth, QWidget* parent)
    : QWidget(parent) {
  auto* layout = new QVBoxLayout(this);
  layout->setContentsMargins(depth * 10, depth ? 2 : 6, 0, 0);
  layout->setSpacing(2);
  m_header = new QToolButton(this);
  m_header->setText(title);
  m_header->setToolTip(subtitle);
  m_header->setCheckable(true);
  m_header->setChecked(true);
  m_header->setArrowType(Qt::DownArrow);
  m_header->setToolButtonStyle(Qt::ToolButtonTextBesideIcon);
  m_header->setAutoRaise(true);
  m_header->setSizePolicy(QSizePolicy::Expanding, QSizePolicy::Fixed);
  QFont f = m_header->font();
  f.setBold(true);
  if (depth == 0) f.setPointSizeF(f.pointSizeF() * 1.08);
  m_header->setFont(f);
  // A section header, not a button: no pressed look when open.
  m_header->setStyleSheet(QStringLiteral("QToolButton { border: none; padding: 3px 0px; }"
                                         "QToolButton:checked, QToolButton:pressed { background: transparent; }"));
  layout->addWidget(m_header);
  if (!subtitle.isEmpty() && depth == 0) {
    auto* sub = new QLabel(subtitle, this);
    sub->setWordWrap(true);
    sub->setForegroundRole(QPalette::PlaceholderText);
    sub->setContentsMargins(22, 0, 0, 2);
    layout->addWidget(sub);
    connect(m_header, &QToolButton::toggled, sub, &QWidget::setVisible);
  }
  m_content = new QWidget(this);
  m_contentLayout = new QVBoxLayout(m_content);
  m_contentLayout->setContentsMargins(18, 0, 4, 4);
  m_contentLayout->setSpacing(2);
  layout->addWidget(m_content);
  connect(m_header, &QToolButton::toggled, this, [this](bool on) {
    m_header->setArrowType(on ? Qt::DownArrow : Qt::RightArrow);
    m_content->setVisible(on);
    emit toggled(on);
  });
}

bool CollapsibleSection::isExpanded() const { return m_header->isChecked(); }

void CollapsibleSection::setExpanded(bool expanded) { m_header->setChecked(expanded); }

}  // namespace fathom::ui
