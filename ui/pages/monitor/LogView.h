// The Monitor's Logs tab: the run's stderr and its log/error/exit records (and events), with a
// filter box, following the tail unless the user scrolled up. Bounded: keeps the newest
// kMaxLines lines.
#pragma once

#include <QStringList>
#include <QWidget>

class QLineEdit;
class QPlainTextEdit;
class QCheckBox;
class QLabel;

namespace fathom::ui {

class LogView : public QWidget {
  Q_OBJECT
 public:
  static constexpr int kMaxLines = 50000;
  explicit LogView(QWidget* parent = nullptr);

  void clear();
  void appendLines(const QStringList& lines);
  void setFilter(const QString& text);
  QString filter() const;
  // Lines currently shown (after the filter).
  QStringList visibleLines() const;
  int totalLines() const { return static_cast<int>(m_lines.size()); }
  bool isFollowing() const;

 private:
  bool matches(const QString& line) const;
  void rebuild();

  QStringList m_lines;
  QLineEdit* m_filter;
  QCheckBox* m_follow;
  QLabel* m_count;
  QPlainTextEdit* m_text;
  bool m_appending = false;
};

}  // namespace fathom::ui
