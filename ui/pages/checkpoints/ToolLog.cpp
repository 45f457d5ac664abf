// Progress widgets of the tool dialogs (see ToolLog.h).
#include "ui/pages/checkpoints/ToolLog.h"

#include <QFontDatabase>
#include <QLabel>
#include <QPlainTextEdit>
#include <QProgressBar>
#include <QVBoxLayout>

namespace fathom::ui {

ToolLog addToolLog(QWidget* parent, QVBoxLayout* layout, const QString& placeholder) {
  ToolLog t;
  t.busy = new QProgressBar(parent);
  t.busy->setRange(0, 0);
  t.busy->setTextVisible(false);
  t.busy->setMaximumHeight(8);
  t.busy->hide();
  layout->addWidget(t.busy);
  t.log = new QPlainTextEdit(parent);
  t.log->setReadOnly(true);
  t.log->setFont(QFontDatabase::systemFont(QFontDatabase::FixedFont));
  t.log->setPlaceholderText(placeholder);
  layout->addWidget(t.log, 1);
  t.result = new QLabel(parent);
  t.result->setWordWrap(true);
  t.result->setTextInteractionFlags(Qt::TextSelectableByMouse);
  layout->addWidget(t.result);
  return t;
}

}  // namespace fathom::ui
