// A page whose feature belongs to a later issue: an honest empty state (an icon, what it will
// do, which issue brings it), no controls that do nothing.
#pragma once

#include <QWidget>

namespace fathom::ui {

class EmptyStatePage : public QWidget {
  Q_OBJECT
 public:
  EmptyStatePage(const QString& iconName, const QString& title, const QString& text, QWidget* parent = nullptr);
};

}  // namespace fathom::ui
