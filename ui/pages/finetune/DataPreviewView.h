// The Fine-tune page's data preview: the first examples as the model will see them (template text
// and prompts greyed, the tokens the loss is computed on highlighted) above a histogram of token
// lengths with the seq_len line and how many examples are truncated. Shows a DataPreview; runs
// nothing itself.
#pragma once

#include <QWidget>

#include "ui/pages/finetune/FinetuneSetup.h"

class QCPBars;
class QCPItemStraightLine;
class QCPItemText;
class QCustomPlot;
class QLabel;
class QTextEdit;

namespace fathom::ui {

class DataPreviewView : public QWidget {
  Q_OBJECT
 public:
  explicit DataPreviewView(QWidget* parent = nullptr);

  void setPreview(const DataPreview& preview);
  // Replaces the examples with a message (waiting, or the engine's error text); clears the chart.
  void setMessage(const QString& text, bool isError);
  const DataPreview& preview() const { return m_preview; }

  QTextEdit* examplesView() const { return m_examples; }
  QCustomPlot* histogram() const { return m_plot; }
  QLabel* truncationLabel() const { return m_truncation; }

 private:
  void applyTheme();
  void render();

  DataPreview m_preview;
  QString m_message;
  bool m_messageIsError = false;
  QTextEdit* m_examples;
  QCustomPlot* m_plot;
  QCPBars* m_bars;
  QCPItemStraightLine* m_seqLine;
  QCPItemText* m_seqLabel;
  QLabel* m_truncation;
};

}  // namespace fathom::ui
