// Log view: QPlainTextEdit with a block limit; a filter change rebuilds the text, appends only
// add the matching lines.
#include "ui/pages/monitor/LogView.h"

#include <QCheckBox>
#include <QFontDatabase>
#include <QHBoxLayout>
#include <QLabel>
#include <QLineEdit>
#include <QPlainTextEdit>
#include <QScrollBar>
#include <QVBoxLayout>

namespace fathom::ui {

LogView::LogView(QWidget* parent) : QWidget(parent) {
  auto* layout = new QVBoxLayout(this);
  layout->setContentsMargins(6, 6, 6, 6);
  auto* bar = new QHBoxLayout;
  m_filter = new QLineEdit(this);
  m_filter->setPlaceholderText(tr("Filter (text or error, warn, checkpoint…)"));
  m_filter->setClearButtonEnabled(true);
  bar->addWidget(m_filter, 1);
  m_follow = new QCheckBox(tr("Follow tail"), this);
  m_follow->setChecked(true);
  bar->addWidget(m_follow);
  m_count = new QLabel(this);
  m_count->setForegroundRole(QPalette::PlaceholderText);
  bar->addWidget(m_count);
  layout->addLayout(bar);
  m_text = new QPlainTextEdit(this);
  m_text->setReadOnly(true);
  m_text->setLineWrapMode(QPlainTextEdit::NoWrap);
  m_text->setFont(QFontDatabase::systemFont(QFontDatabase::FixedFont));
  m_text->setMaximumBlockCount(kMaxLines);
  layout->addWidget(m_text, 1);
  connect(m_filter, &QLineEdit::textChanged, this, [this] { rebuild(); });
  // Scrolling up stops following; scrolling back to the bottom resumes.
  connect(m_text->verticalScrollBar(), &QScrollBar::valueChanged, this, [this](int v) {
    if (m_appending) return;
    m_follow->setChecked(v >= m_text->verticalScrollBar()->maximum());
  });
  connect(m_follow, &QCheckBox::toggled, this, [this](bool on) {
    if (on) m_text->verticalScrollBar()->setValue(m_text->verticalScrollBar()->maximum());
  });
}

void LogView::clear() {
  m_lines.clear();
  m_text->clear();
  m_count->clear();
}

bool LogView::matches(const QString& line) const {
  const QString f = m_filter->text().trimmed();
  return f.isEmpty() || line.contains(f, Qt::CaseInsensitive);
}

void LogView::appendLines(const QStringList& lines) {
  if (lines.isEmpty()) return;
  const bool follow = m_follow->isChecked();
  QScrollBar* sb = m_text->verticalScrollBar();
  const int keep = sb->value();
  m_appending = true;
  m_lines += lines;
  if (m_lines.size() > kMaxLines) m_lines.erase(m_lines.begin(), m_lines.begin() + (m_lines.size() - kMaxLines));
  QStringList shown;
  for (const QString& l : lines)
    if (matches(l)) shown << l;
  if (!shown.isEmpty()) m_text->appendPlainText(shown.join(QLatin1Char('\n')));
  if (follow) sb->setValue(sb->maximum());
  else sb->setValue(keep);
  m_appending = false;
  m_count->setText(tr("%1 lines").arg(m_lines.size()));
}

void LogView::rebuild() {
  QStringList shown;
  for (const QString& l : m_lines)
    if (matches(l)) shown << l;
  m_text->setPlainText(shown.join(QLatin1Char('\n')));
  if (m_follow->isChecked()) m_text->verticalScrollBar()->setValue(m_text->verticalScrollBar()->maximum());
  m_count->setText(m_filter->text().isEmpty() ? tr("%1 lines").arg(m_lines.size())
                                              : tr("%1 of %2 lines").arg(shown.size()).arg(m_lines.size()));
}

void LogView::setFilter(const QString& text) { m_filter->setText(text); }

QString LogView::filter() const { return m_filter->text(); }

QStringList LogView::visibleLines() const {
  const QString t = m_text->toPlainText();
  return t.isEmpty() ? QStringList() : t.split(QLatin1Char('\n'));
}

bool LogView::isFollowing() const { return m_follow->isChecked(); }

}  // namespace fathom::ui
