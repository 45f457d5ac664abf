// The Designer's estimator: parameter counts, FLOPs per token and memory per rank (a stacked
// bar of parameters / gradients / optimizer state / activations against the chosen device's
// memory), fits or not, and the estimator's suggestions with a button that applies them.
#pragma once

#include <QWidget>

#include "engine/config/config.h"
#include "engine/config/estimate.h"
#include "ui/DeviceProbe.h"

class QComboBox;
class QLabel;
class QSpinBox;
class QListWidget;
class QCustomPlot;
class QCPBars;
class QCPItemStraightLine;
class QCPItemText;

namespace fathom::ui {

class EstimatorPanel : public QWidget {
  Q_OBJECT
 public:
  explicit EstimatorPanel(QWidget* parent = nullptr);

  // Recomputes for `config` (cheap: analytical).
  void setConfig(const config::RunConfig& config, bool valid);
  // Adds this machine's devices (from the engine) to the device choice.
  void setLocalDevices(const QList<EngineDevice>& devices);
  const config::Estimate& estimate() const { return m_estimate; }
  // The device choice as the estimator reads it ("h200:2", "mem=24GiB").
  QString deviceSpec() const;

 signals:
  // The user applied a suggestion: --set style "key=value" overrides.
  void applyOverrides(const QStringList& overrides);

 private:
  void recompute();
  void updateChart();
  void applyTheme();

  config::RunConfig m_config;
  bool m_valid = false;
  config::Estimate m_estimate;
  QComboBox* m_device;
  QSpinBox* m_ranks;
  QLabel* m_params;
  QLabel* m_compute;
  QLabel* m_verdict;
  QCustomPlot* m_plot;
  QList<QCPBars*> m_bars;
  QCPItemStraightLine* m_capacity = nullptr;
  QCPItemText* m_capacityLabel = nullptr;
  QListWidget* m_suggestions;
  QLabel* m_notes;
};

}  // namespace fathom::ui
