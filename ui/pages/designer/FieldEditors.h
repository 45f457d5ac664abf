// Editor widgets the config form is built from: a 64-bit integer spin box (schema ranges exceed
// int), an editable list, and a collapsible section. Generic; the form decides what goes where.
#pragma once

#include <QAbstractSpinBox>
#include <QWidget>

class QFormLayout;
class QListWidget;
class QToolButton;
class QLabel;
class QVBoxLayout;

namespace fathom::ui {

class Int64SpinBox : public QAbstractSpinBox {
  Q_OBJECT
 public:
  explicit Int64SpinBox(QWidget* parent = nullptr);
  qint64 value() const { return m_value; }
  void setValue(qint64 value);  // clamps; emits nothing
  void setRange(qint64 min, qint64 max);
  void setSuffix(const QString& suffix);
  qint64 minimum() const { return m_min; }
  qint64 maximum() const { return m_max; }

  void stepBy(int steps) override;
  QValidator::State validate(QString& input, int& pos) const override;
  void fixup(QString& input) const override;
  QSize sizeHint() const override;

 signals:
  // The user changed the value (arrows, wheel, or typed text confirmed with Enter/focus out).
  void valueEdited(qint64 value);

 protected:
  StepEnabled stepEnabled() const override;

 private:
  bool parse(const QString& text, qint64* out) const;
  void commitText();
  QString text(qint64 v) const;

  qint64 m_value = 0, m_min = 0, m_max = 0;
  QString m_suffix;
};

// A small editable list: items edited in place, + adds, − removes the selected one. `browse`
// adds a "…" button that appends a chosen file or directory (data paths).
class ListEditor : public QWidget {
  Q_OBJECT
 public:
  enum class Browse { None, Paths };
  explicit ListEditor(Browse browse, QWidget* parent = nullptr);
  QStringList items() const;
  void setItems(const QStringList& items);  // emits nothing
  void setIntegerItems(bool on) { m_integers = on; }

 signals:
  void itemsEdited(const QStringList& items);

 private:
  void emitEdited();

  QListWidget* m_list;
  bool m_integers = false;
  bool m_updating = false;
};

// A header button with an arrow that shows or hides its content; nested sections indent.
class CollapsibleSection : public QWidget {
  Q_OBJECT
 public:
  CollapsibleSection(const QString& title, const QString& subtitle, int depth, QWidget* parent = nullptr);
  QVBoxLayout* contentLayout() const { return m_contentLayout; }
  QWidget* content() const { return m_content; }
  bool isExpanded() const;
  void setExpanded(bool expanded);

 signals:
  void toggled(bool expanded);

 private:
  QToolButton* m_header;
  QWidget* m_content;
  QVBoxLayout* m_contentLayout;
};

}  // namespace fathom::ui
