// The progress part shared by the dialogs that run a fathom-engine tool (export, merge): an
// indeterminate busy bar, the tool's stderr lines, and a result line.
#pragma once

#include <QString>

class QLabel;
class QPlainTextEdit;
class QProgressBar;
class QVBoxLayout;
class QWidget;

namespace fathom::ui {

struct ToolLog {
  QProgressBar* busy = nullptr;
  QPlainTextEdit* log = nullptr;
  QLabel* result = nullptr;
};

// Adds the three widgets to `layout` (children of `parent`); the log grows, the bar starts hidden.
ToolLog addToolLog(QWidget* parent, QVBoxLayout* layout, const QString& placeholder);

}  // namespace fathom::ui
