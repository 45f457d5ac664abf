// Qt Creator's mode bar: a narrow dark column of icon + label buttons on the left that selects
// the page. Exclusive; keyboard shortcuts are the main window's (Ctrl+1..7).
#pragma once

#include <QList>
#include <QWidget>

class QButtonGroup;
class QToolButton;
class QVBoxLayout;

namespace fathom::ui {

class ModeBar : public QWidget {
  Q_OBJECT
 public:
  explicit ModeBar(QWidget* parent = nullptr);

  // Adds a mode; returns its index.
  int addMode(const QString& iconName, const QString& label, const QString& tooltip);
  int currentIndex() const;
  void setCurrentIndex(int index);
  int count() const { return static_cast<int>(m_buttons.size()); }
  QToolButton* button(int index) const { return m_buttons.value(index); }

 signals:
  void currentChanged(int index);

 private:
  void applyTheme();

  QVBoxLayout* m_layout;
  QButtonGroup* m_group;
  QList<QToolButton*> m_buttons;
  QStringList m_iconNames;
};

}  // namespace fathom::ui
