// Inspect: the tensors of a checkpoint's model.safetensors (name, dtype, shape, parameters,
// bytes) and its metadata, read from the file's header only by `fathom-engine inspect FILE
// --json` in a background process; the data is never loaded. Non-modal; closes with its page.
#pragma once

#include <QDialog>

class QLabel;
class QLineEdit;
class QProgressBar;
class QTableWidget;

namespace fathom::cluster {
class EngineTool;
}

namespace fathom::ui {

class InspectDialog : public QDialog {
  Q_OBJECT
 public:
  // `file`: a .safetensors file. `engineBinary` "" = the launcher's lookup.
  InspectDialog(const QString& file, const QString& title, const QString& engineBinary, QWidget* parent = nullptr);

  QTableWidget* table() const { return m_table; }
  QLabel* summary() const { return m_summary; }
  bool isLoading() const;
  QStringList tensorNames() const;

 signals:
  void loaded(bool ok);

 private:
  void onFinished(bool ok);

  QString m_file;
  cluster::EngineTool* m_tool;
  QLabel* m_summary;
  QLineEdit* m_filter;
  QProgressBar* m_busy;
  QTableWidget* m_table;
};

}  // namespace fathom::ui
