// Empty-state page layout: centred icon, title and text.
#include "ui/pages/EmptyStatePage.h"

#include <QLabel>
#include <QVBoxLayout>

#include "ui/Icons.h"
#include "ui/Theme.h"

namespace fathom::ui {

EmptyStatePage::EmptyStatePage(const QString& iconName, const QString& title, const QString& text, QWidget* parent)
    : QWidget(parent) {
  auto* layout = new QVBoxLayout(this);
  layout->addStretch(2);
  auto* icon = new QLabel(this);
  icon->setAlignment(Qt::AlignCenter);
  auto paintIcon = [icon, iconName] {
    icon->setPixmap(Icons::pixmap(iconName, Theme::instance()->color(QStringLiteral("text.muted")), 64));
  };
  paintIcon();
  connect(Theme::instance(), &Theme::changed, icon, paintIcon);
  layout->addWidget(icon);
  auto* t = new QLabel(title, this);
  t->setAlignment(Qt::AlignCenter);
  QFont f = t->font();
  f.setPointSizeF(f.pointSizeF() * 1.5);
  f.setBold(true);
  t->setFont(f);
  layout->addWidget(t);
  auto* body = new QLabel(text, this);
  body->setAlignment(Qt::AlignCenter);
  body->setWordWrap(true);
  // A fixed width lets the label compute its wrapped height (a maximum width alone clips it).
  body->setFixedWidth(560);
  body->setSizePolicy(QSizePolicy::Fixed, QSizePolicy::Minimum);
  body->setForegroundRole(QPalette::PlaceholderText);
  body->setContentsMargins(0, 6, 0, 0);
  // With alignment in a box layout a label gets its size hint, which ignores the wrap width.
  body->setMinimumHeight(body->heightForWidth(560));
  layout->addWidget(body, 0, Qt::AlignHCenter);
  layout->addStretch(3);
}

}  // namespace fathom::ui
