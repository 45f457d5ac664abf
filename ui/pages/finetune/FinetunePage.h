// The Fine-tune page (issue 6): a guided LoRA fine-tune in four steps down the left side —
// 1 base model (a checkpoint of the registry, or a Hugging Face model folder), 2 data (a .jsonl of
// prompt/completion or chat examples, previewed by `fathom-engine finetune CONFIG --preview` in a
// QProcess), 3 adapter settings with a live estimate of trainable parameters and memory
// (fathom_config's estimator), 4 launch — and on the right the data preview and the run config
// YAML the steps write (editable; hand edits are kept until "Regenerate"). Launch saves the YAML
// into the workspace's projects/ and enqueues `fathom-engine finetune` through the JobQueue;
// runLaunched() then lets the window show the run in the Monitor.
#pragma once

#include <QPointer>
#include <QTemporaryDir>
#include <QWidget>

#include "engine/config/estimate.h"
#include "ui/pages/finetune/FinetuneSetup.h"

class QCheckBox;
class QComboBox;
class QDoubleSpinBox;
class QGridLayout;
class QLabel;
class QLineEdit;
class QPlainTextEdit;
class QPushButton;
class QSettings;
class QSpinBox;
class QSplitter;
class QTabWidget;
class QTimer;

namespace fathom::cluster {
class EngineTool;
class JobQueue;
class Workspace;
}  // namespace fathom::cluster

namespace fathom::ui {

class DataPreviewView;
class DeviceProbe;

class FinetunePage : public QWidget {
  Q_OBJECT
 public:
  // Any of the three may be null: no registry checkpoints, no launch, CPU only.
  FinetunePage(cluster::Workspace* workspace, cluster::JobQueue* queue, DeviceProbe* devices = nullptr,
               QWidget* parent = nullptr);
  ~FinetunePage() override;

  // Engine for --preview: this, else the queue's, else the launcher's lookup.
  void setEngineBinary(const QString& path) { m_engineBinary = path; }
  QString engineBinary() const;

  const FinetuneBase& base() const { return m_base; }
  QString adapter() const { return m_adapter; }
  FinetuneSettings settings() const;
  // The YAML in the editor (what Launch saves).
  QString configText() const;
  // The estimate of the config in the editor; ok() false when it does not load.
  const config::Estimate& estimate() const { return m_estimate; }
  bool configOk() const { return m_configOk; }
  bool isPreviewRunning() const;

  // Widgets (tests drive them).
  QComboBox* checkpointPicker() const { return m_checkpoints; }
  QLabel* baseLabel() const { return m_baseInfo; }
  QLineEdit* dataEdit() const { return m_data; }
  QComboBox* templateBox() const { return m_template; }
  QSpinBox* seqLenBox() const { return m_seqLen; }
  QSpinBox* rBox() const { return m_r; }
  QDoubleSpinBox* alphaBox() const { return m_alpha; }
  QDoubleSpinBox* dropoutBox() const { return m_dropout; }
  QCheckBox* rsloraBox() const { return m_rslora; }
  QCheckBox* int8Box() const { return m_int8; }
  QCheckBox* moduleBox(const QString& name) const;
  QLabel* estimateLabel() const { return m_estimateLabel; }
  QLabel* previewStatus() const { return m_previewStatus; }
  DataPreviewView* previewView() const { return m_preview; }
  QPlainTextEdit* yamlEdit() const { return m_yaml; }
  QLineEdit* nameEdit() const { return m_name; }
  QComboBox* deviceBox() const { return m_device; }
  QSpinBox* stepsBox() const { return m_steps; }
  QPushButton* launchButton() const { return m_launch; }
  QLabel* problemLabel() const { return m_problem; }
  QTabWidget* tabs() const { return m_tabs; }

  // Saves the config to projects/<name>.yaml and enqueues the fine-tune; the run id, or "" with
  // the reason in problemLabel().
  QString launch();
  // Where launch() saves the config for the current run name.
  QString configPath() const;

  void saveState(QSettings& settings) const;
  void restoreState(const QSettings& settings);

 public slots:
  // The base to fine-tune: a checkpoint directory (…/checkpoints/step-N; the Checkpoint
  // browser's "Fine-tune from here") or a Hugging Face model folder.
  void setBase(const QString& dir);
  // lora.adapter: continue training this LoRA adapter (a fine-tune checkpoint or PEFT adapter
  // directory; its rank, alpha and targets fill the form) on the current base. setBase() clears it;
  // "" clears it.
  void setAdapter(const QString& dir);
  void setDataFile(const QString& path);
  // Runs --preview now (also started by itself, debounced, when base or data settings change).
  void refreshPreview();
  // Rewrites the YAML from the form, dropping hand edits.
  void regenerate();
  void reloadCheckpoints();

 signals:
  void runLaunched(const QString& runId);
  void statusMessage(const QString& text);
  // A --preview ended: ok, or the error shown.
  void previewFinished(bool ok);

 private:
  QWidget* buildSteps();
  QWidget* buildRight();
  void formChanged();
  void rebuildModules();
  void updateBaseLabel();
  void updateEstimate();
  void updateLaunchState();
  void schedulePreview();
  void onPreviewFinished(bool ok);
  void fillDevices();
  std::vector<config::DeviceSpec> estimateDevices() const;

  cluster::Workspace* m_ws;
  cluster::JobQueue* m_queue;
  QPointer<DeviceProbe> m_probe;
  QString m_engineBinary;
  FinetuneBase m_base;
  QString m_adapter;
  config::Estimate m_estimate;
  bool m_configOk = false;
  QString m_configError;
  bool m_yamlEdited = false;
  bool m_settingYaml = false;
  bool m_filling = false;
  bool m_previewPending = false;
  QTemporaryDir m_tmp;
  cluster::EngineTool* m_tool;
  QTimer* m_previewTimer;
  QTimer* m_estimateTimer;

  QSplitter* m_split;
  QComboBox* m_checkpoints;
  QLabel* m_baseInfo;
  QLineEdit* m_data;
  QComboBox* m_template;
  QSpinBox* m_seqLen;
  QCheckBox* m_packing;
  QLabel* m_previewStatus;
  QSpinBox* m_r;
  QDoubleSpinBox* m_alpha;
  QDoubleSpinBox* m_dropout;
  QCheckBox* m_rslora;
  QCheckBox* m_int8;
  QWidget* m_modules;
  QGridLayout* m_moduleGrid;
  QList<QCheckBox*> m_moduleBoxes;
  QLabel* m_estimateLabel;
  QLineEdit* m_name;
  QComboBox* m_device;
  QSpinBox* m_steps;
  QSpinBox* m_microBatch;
  QDoubleSpinBox* m_lr;
  QPushButton* m_launch;
  QLabel* m_problem;
  QTabWidget* m_tabs;
  DataPreviewView* m_preview;
  QPlainTextEdit* m_yaml;
  QLabel* m_yamlStatus;
  QPushButton* m_regenerate;
};

}  // namespace fathom::ui
