// Mode bar styling: its own dark palette in both themes (as in Qt Creator), an accent bar on the
// checked mode.
#include "ui/ModeBar.h"

#include <QButtonGroup>
#include <QToolButton>
#include <QVBoxLayout>

#include "ui/Icons.h"
#include "ui/Theme.h"

namespace fathom::ui {

ModeBar::ModeBar(QWidget* parent) : QWidget(parent) {
  setObjectName(QStringLiteral("ModeBar"));
  setAttribute(Qt::WA_StyledBackground, true);
  setFixedWidth(78);
  m_layout = new QVBoxLayout(this);
  m_layout->setContentsMargins(0, 6, 0, 6);
  m_layout->setSpacing(0);
  m_layout->addStretch(1);
  m_group = new QButtonGroup(this);
  m_group->setExclusive(true);
  connect(m_group, &QButtonGroup::idToggled, this, [this](int id, bool on) {
    if (on) emit currentChanged(id);
  });
  connect(Theme::instance(), &Theme::changed, this, &ModeBar::applyTheme);
  applyTheme();
}

int ModeBar::addMode(const QString& iconName, const QString& label, const QString& tooltip) {
  auto* b = new QToolButton(this);
  b->setText(label);
  b->setToolTip(tooltip);
  b->setCheckable(true);
  b->setAutoRaise(true);
  b->setToolButtonStyle(Qt::ToolButtonTextUnderIcon);
  b->setIconSize(QSize(24, 24));
  b->setSizePolicy(QSizePolicy::Expanding, QSizePolicy::Fixed);
  b->setMinimumHeight(60);
  b->setFocusPolicy(Qt::NoFocus);
  const int index = static_cast<int>(m_buttons.size());
  m_group->addButton(b, index);
  m_layout->insertWidget(index, b);
  m_buttons << b;
  m_iconNames << iconName;
  applyTheme();
  return index;
}

int ModeBar::currentIndex() const { return m_group->checkedId(); }

void ModeBar::setCurrentIndex(int index) {
  if (QAbstractButton* b = m_group->button(index)) b->setChecked(true);
}

void ModeBar::applyTheme() {
  Theme* t = Theme::instance();
  const QColor bg = t->color(QStringLiteral("modebar.background")), text = t->color(QStringLiteral("modebar.text"));
  const QColor checked = t->color(QStringLiteral("modebar.checked")), hover = t->color(QStringLiteral("modebar.hover"));
  const QColor accent = t->color(QStringLiteral("modebar.accent"));
  setStyleSheet(QStringLiteral(
                    "QWidget#ModeBar { background: %1; }"
                    "QWidget#ModeBar QToolButton { color: %2; border: none; border-left: 3px solid transparent;"
                    "  padding: 4px 2px; font-size: 8.5pt; }"
                    "QWidget#ModeBar QToolButton:hover { background: %3; }"
                    "QWidget#ModeBar QToolButton:checked { background: %4; color: #ffffff; border-left: 3px solid %5; }")
                    .arg(bg.name(), text.name(), hover.name(), checked.name(), accent.name()));
  for (int i = 0; i < m_buttons.size(); ++i) m_buttons[i]->setIcon(Icons::icon(m_iconNames[i], text, QColor(Qt::white)));
}

}  // namespace fathom::ui
