// Fine-tune page. The form is the source of the YAML until the user edits the YAML; the estimate
// and the launch always use the YAML in the editor, so what is shown is what runs.
#include "ui/pages/finetune/FinetunePage.h"

#include <QCheckBox>
#include <QComboBox>
#include <QDir>
#include <QDoubleSpinBox>
#include <QFile>
#include <QFileDialog>
#include <QFileInfo>
#include <QFontDatabase>
#include <QFormLayout>
#include <QJsonArray>
#include <QJsonDocument>
#include <QJsonObject>
#include <QGridLayout>
#include <QGroupBox>
#include <QHBoxLayout>
#include <QLabel>
#include <QLineEdit>
#include <QPlainTextEdit>
#include <QPushButton>
#include <QRegularExpression>
#include <QSaveFile>
#include <QScrollArea>
#include <QSettings>
#include <QSpinBox>
#include <QSplitter>
#include <QTabWidget>
#include <QTimer>
#include <QVBoxLayout>

#include <cmath>

#include "cluster/jobs/EngineTool.h"
#include "cluster/jobs/JobQueue.h"
#include "cluster/launch/LocalLauncher.h"
#include "cluster/workspace/Workspace.h"
#include "ui/DeviceProbe.h"
#include "ui/Format.h"
#include "ui/Theme.h"
#include "ui/pages/designer/YamlHighlighter.h"
#include "ui/pages/finetune/DataPreviewView.h"

namespace fathom::ui {

namespace {

QGroupBox* stepBox(const QString& number, const QString& title, QWidget* parent) {
  auto* box = new QGroupBox(QStringLiteral("%1  %2").arg(number, title), parent);
  QFont f = box->font();
  f.setBold(true);
  box->setFont(f);
  return box;
}

// Children of a bold group box get the normal font back.
void plainFont(QWidget* w) {
  QFont f = w->font();
  f.setBold(false);
  w->setFont(f);
}

void setColor(QLabel* label, const QString& themeColor) {
  QPalette p = label->palette();
  p.setColor(QPalette::WindowText, themeColor.isEmpty() ? label->parentWidget()->palette().color(QPalette::WindowText)
                                                        : Theme::instance()->color(themeColor));
  label->setPalette(p);
}

}  // namespace

FinetunePage::FinetunePage(cluster::Workspace* workspace, cluster::JobQueue* queue, DeviceProbe* devices, QWidget* parent)
    : QWidget(parent), m_ws(workspace), m_queue(queue), m_probe(devices) {
  m_tool = new cluster::EngineTool(this);
  m_previewTimer = new QTimer(this);
  m_previewTimer->setSingleShot(true);
  m_previewTimer->setInterval(400);
  connect(m_previewTimer, &QTimer::timeout, this, &FinetunePage::refreshPreview);
  m_estimateTimer = new QTimer(this);
  m_estimateTimer->setSingleShot(true);
  m_estimateTimer->setInterval(200);
  connect(m_estimateTimer, &QTimer::timeout, this, &FinetunePage::updateEstimate);
  connect(m_tool, &cluster::EngineTool::finished, this, &FinetunePage::onPreviewFinished);

  auto* layout = new QHBoxLayout(this);
  layout->setContentsMargins(6, 6, 6, 6);
  m_split = new QSplitter(Qt::Horizontal, this);
  m_split->setObjectName(QStringLiteral("finetuneSplitter"));
  m_split->setChildrenCollapsible(false);
  m_split->addWidget(buildSteps());
  m_split->addWidget(buildRight());
  m_split->setStretchFactor(0, 2);
  m_split->setStretchFactor(1, 3);
  m_split->setSizes({560, 840});
  layout->addWidget(m_split);

  if (m_ws) {
    connect(m_ws, &cluster::Workspace::checkpointsChanged, this, [this] { reloadCheckpoints(); });
    connect(m_ws, &cluster::Workspace::reloaded, this, &FinetunePage::reloadCheckpoints);
  }
  if (m_probe) connect(m_probe, &DeviceProbe::devicesChanged, this, &FinetunePage::fillDevices);
  connect(Theme::instance(), &Theme::changed, this, [this] {
    updateBaseLabel();
    updateEstimate();
  });
  reloadCheckpoints();
  fillDevices();
  updateBaseLabel();
  regenerate();
}

FinetunePage::~FinetunePage() {
  // A preview still running is ended with the page (EngineTool kills its process).
  m_tool->disconnect(this);
}

QString FinetunePage::engineBinary() const {
  if (!m_engineBinary.isEmpty()) return m_engineBinary;
  return m_queue ? m_queue->engineBinary() : QString();
}

// ---- layout -------------------------------------------------------------------------------------

QWidget* FinetunePage::buildSteps() {
  auto* scroll = new QScrollArea(this);
  scroll->setWidgetResizable(true);
  scroll->setFrameShape(QFrame::NoFrame);
  auto* inner = new QWidget(scroll);
  auto* col = new QVBoxLayout(inner);
  col->setContentsMargins(0, 0, 6, 0);

  // 1 · Base
  QGroupBox* baseBox = stepBox(QStringLiteral("1"), tr("Base model"), inner);
  auto* baseLayout = new QVBoxLayout(baseBox);
  auto* pickRow = new QHBoxLayout;
  m_checkpoints = new QComboBox(baseBox);
  m_checkpoints->setObjectName(QStringLiteral("checkpointPicker"));
  m_checkpoints->setToolTip(tr("A checkpoint of this workspace (Checkpoints page) to adapt"));
  m_checkpoints->setSizeAdjustPolicy(QComboBox::AdjustToMinimumContentsLengthWithIcon);
  m_checkpoints->setMinimumContentsLength(20);
  auto* hfButton = new QPushButton(tr("Hugging Face folder…"), baseBox);
  hfButton->setObjectName(QStringLiteral("hfFolder"));
  hfButton->setToolTip(tr("A model folder with config.json and *.safetensors (LLaMA, Qwen2, DeepSeek-V3 families)"));
  pickRow->addWidget(m_checkpoints, 1);
  pickRow->addWidget(hfButton);
  baseLayout->addLayout(pickRow);
  m_baseInfo = new QLabel(baseBox);
  m_baseInfo->setObjectName(QStringLiteral("baseInfo"));
  m_baseInfo->setWordWrap(true);
  m_baseInfo->setTextInteractionFlags(Qt::TextSelectableByMouse);
  baseLayout->addWidget(m_baseInfo);
  for (QWidget* w : {static_cast<QWidget*>(m_checkpoints), static_cast<QWidget*>(hfButton), static_cast<QWidget*>(m_baseInfo)}) plainFont(w);
  col->addWidget(baseBox);
  connect(m_checkpoints, &QComboBox::activated, this, [this](int i) {
    const QString path = m_checkpoints->itemData(i).toString();
    if (!path.isEmpty()) setBase(path);
  });
  connect(hfButton, &QPushButton::clicked, this, [this] {
    const QString dir = QFileDialog::getExistingDirectory(this, tr("Hugging Face model folder"),
                                                          m_base.kind == FinetuneBase::Kind::HuggingFace ? m_base.dir : QDir::homePath());
    if (!dir.isEmpty()) setBase(dir);
  });

  // 2 · Data
  QGroupBox* dataBox = stepBox(QStringLiteral("2"), tr("Instruction data"), inner);
  auto* dataForm = new QFormLayout(dataBox);
  dataForm->setLabelAlignment(Qt::AlignRight);
  auto* fileRow = new QHBoxLayout;
  m_data = new QLineEdit(dataBox);
  m_data->setObjectName(QStringLiteral("dataFile"));
  m_data->setPlaceholderText(tr("examples.jsonl: {\"prompt\",\"completion\"} or {\"messages\":[…]} per line"));
  auto* browse = new QPushButton(tr("Browse…"), dataBox);
  fileRow->addWidget(m_data, 1);
  fileRow->addWidget(browse);
  dataForm->addRow(tr("File"), fileRow);
  m_template = new QComboBox(dataBox);
  m_template->setObjectName(QStringLiteral("chatTemplate"));
  for (const char* t : {"auto", "plain", "chatml", "llama3", "deepseek"}) m_template->addItem(QString::fromLatin1(t));
  m_template->setToolTip(tr("How examples become text; auto picks the base model family's template"));
  dataForm->addRow(tr("Chat template"), m_template);
  auto* seqRow = new QHBoxLayout;
  m_seqLen = new QSpinBox(dataBox);
  m_seqLen->setObjectName(QStringLiteral("seqLen"));
  m_seqLen->setRange(8, 1 << 20);
  m_seqLen->setValue(256);
  m_seqLen->setSuffix(tr(" tokens"));
  m_seqLen->setToolTip(tr("data.seq_len: longer examples are truncated"));
  m_packing = new QCheckBox(tr("Pack short examples"), dataBox);
  m_packing->setObjectName(QStringLiteral("packing"));
  m_packing->setChecked(true);
  m_packing->setToolTip(tr("data.packing: several examples per sequence; attention never crosses examples"));
  seqRow->addWidget(m_seqLen);
  seqRow->addWidget(m_packing);
  seqRow->addStretch(1);
  dataForm->addRow(tr("Sequence"), seqRow);
  auto* previewRow = new QHBoxLayout;
  m_previewStatus = new QLabel(dataBox);
  m_previewStatus->setObjectName(QStringLiteral("previewStatus"));
  m_previewStatus->setWordWrap(true);
  auto* again = new QPushButton(tr("Preview"), dataBox);
  again->setObjectName(QStringLiteral("previewButton"));
  again->setToolTip(tr("Run fathom-engine finetune --preview on the config now"));
  previewRow->addWidget(m_previewStatus, 1);
  previewRow->addWidget(again, 0, Qt::AlignTop);
  dataForm->addRow(QString(), previewRow);
  for (QWidget* w : dataBox->findChildren<QWidget*>()) plainFont(w);
  col->addWidget(dataBox);
  connect(browse, &QPushButton::clicked, this, [this] {
    const QString start = m_data->text().isEmpty() ? QDir::homePath() : QFileInfo(m_data->text()).absolutePath();
    const QString f = QFileDialog::getOpenFileName(this, tr("Instruction data"), start, tr("JSON lines (*.jsonl *.json);;All files (*)"));
    if (!f.isEmpty()) setDataFile(f);
  });
  connect(again, &QPushButton::clicked, this, &FinetunePage::refreshPreview);
  connect(m_data, &QLineEdit::editingFinished, this, [this] { formChanged(); });
  connect(m_template, &QComboBox::currentIndexChanged, this, [this] { formChanged(); });
  connect(m_seqLen, &QSpinBox::valueChanged, this, [this] { formChanged(); });
  connect(m_packing, &QCheckBox::toggled, this, [this] { formChanged(); });

  // 3 · LoRA
  QGroupBox* loraBox = stepBox(QStringLiteral("3"), tr("Adapters (LoRA)"), inner);
  auto* loraForm = new QFormLayout(loraBox);
  loraForm->setLabelAlignment(Qt::AlignRight);
  auto* rankRow = new QHBoxLayout;
  m_r = new QSpinBox(loraBox);
  m_r->setObjectName(QStringLiteral("loraR"));
  m_r->setRange(1, 4096);
  m_r->setValue(16);
  m_r->setToolTip(tr("lora.r: rank of each adapter (A: r x in, B: out x r)"));
  m_alpha = new QDoubleSpinBox(loraBox);
  m_alpha->setObjectName(QStringLiteral("loraAlpha"));
  m_alpha->setRange(0.01, 1e6);
  m_alpha->setDecimals(2);
  m_alpha->setValue(32);
  m_alpha->setToolTip(tr("lora.lora_alpha: the update is scaled by alpha / r (alpha / sqrt(r) with rsLoRA)"));
  m_dropout = new QDoubleSpinBox(loraBox);
  m_dropout->setObjectName(QStringLiteral("loraDropout"));
  m_dropout->setRange(0, 0.95);
  m_dropout->setSingleStep(0.05);
  m_dropout->setDecimals(2);
  m_dropout->setValue(0.05);
  m_dropout->setToolTip(tr("lora.dropout on the adapter input"));
  rankRow->addWidget(new QLabel(tr("r"), loraBox));
  rankRow->addWidget(m_r);
  rankRow->addSpacing(8);
  rankRow->addWidget(new QLabel(tr("alpha"), loraBox));
  rankRow->addWidget(m_alpha);
  rankRow->addSpacing(8);
  rankRow->addWidget(new QLabel(tr("dropout"), loraBox));
  rankRow->addWidget(m_dropout);
  rankRow->addStretch(1);
  loraForm->addRow(tr("Adapter"), rankRow);
  auto* optRow = new QHBoxLayout;
  m_rslora = new QCheckBox(tr("rsLoRA scaling"), loraBox);
  m_rslora->setObjectName(QStringLiteral("rslora"));
  m_rslora->setToolTip(tr("lora.use_rslora: scale by alpha / sqrt(r), which keeps high ranks stable (Kalajdzievski 2023)"));
  m_int8 = new QCheckBox(tr("int8 base (QLoRA-style)"), loraBox);
  m_int8->setObjectName(QStringLiteral("int8Base"));
  m_int8->setToolTip(tr("lora.quantize_base: int8: the frozen base weights stored int8, about half the memory"));
  optRow->addWidget(m_rslora);
  optRow->addWidget(m_int8);
  optRow->addStretch(1);
  loraForm->addRow(tr("Options"), optRow);
  m_modules = new QWidget(loraBox);
  m_modules->setObjectName(QStringLiteral("targetModules"));
  m_moduleGrid = new QGridLayout(m_modules);
  m_moduleGrid->setContentsMargins(0, 0, 0, 0);
  m_moduleGrid->setHorizontalSpacing(12);
  loraForm->addRow(tr("Target modules"), m_modules);
  m_estimateLabel = new QLabel(loraBox);
  m_estimateLabel->setObjectName(QStringLiteral("estimate"));
  m_estimateLabel->setWordWrap(true);
  m_estimateLabel->setTextInteractionFlags(Qt::TextSelectableByMouse);
  loraForm->addRow(tr("Estimate"), m_estimateLabel);
  for (QWidget* w : loraBox->findChildren<QWidget*>()) plainFont(w);
  col->addWidget(loraBox);
  connect(m_r, &QSpinBox::valueChanged, this, [this] { formChanged(); });
  connect(m_alpha, &QDoubleSpinBox::valueChanged, this, [this] { formChanged(); });
  connect(m_dropout, &QDoubleSpinBox::valueChanged, this, [this] { formChanged(); });
  connect(m_rslora, &QCheckBox::toggled, this, [this] { formChanged(); });
  connect(m_int8, &QCheckBox::toggled, this, [this] { formChanged(); });

  // 4 · Launch
  QGroupBox* runBox = stepBox(QStringLiteral("4"), tr("Launch"), inner);
  auto* runForm = new QFormLayout(runBox);
  runForm->setLabelAlignment(Qt::AlignRight);
  m_name = new QLineEdit(QStringLiteral("finetune"), runBox);
  m_name->setObjectName(QStringLiteral("runName"));
  runForm->addRow(tr("Run name"), m_name);
  m_device = new QComboBox(runBox);
  m_device->setObjectName(QStringLiteral("device"));
  runForm->addRow(tr("Device"), m_device);
  auto* trainRow = new QHBoxLayout;
  m_steps = new QSpinBox(runBox);
  m_steps->setObjectName(QStringLiteral("maxSteps"));
  m_steps->setRange(1, 10000000);
  m_steps->setValue(200);
  m_steps->setSuffix(tr(" steps"));
  m_microBatch = new QSpinBox(runBox);
  m_microBatch->setObjectName(QStringLiteral("microBatch"));
  m_microBatch->setRange(1, 4096);
  m_microBatch->setValue(4);
  m_microBatch->setPrefix(tr("batch "));
  m_lr = new QDoubleSpinBox(runBox);
  m_lr->setObjectName(QStringLiteral("learningRate"));
  m_lr->setDecimals(6);
  m_lr->setRange(1e-6, 1.0);
  m_lr->setSingleStep(1e-4);
  m_lr->setValue(2e-4);
  m_lr->setPrefix(tr("lr "));
  trainRow->addWidget(m_steps);
  trainRow->addWidget(m_microBatch);
  trainRow->addWidget(m_lr);
  trainRow->addStretch(1);
  runForm->addRow(tr("Training"), trainRow);
  m_problem = new QLabel(runBox);
  m_problem->setObjectName(QStringLiteral("problem"));
  m_problem->setWordWrap(true);
  runForm->addRow(QString(), m_problem);
  m_launch = new QPushButton(tr("Launch fine-tune"), runBox);
  m_launch->setObjectName(QStringLiteral("launchFinetune"));
  m_launch->setDefault(true);
  runForm->addRow(QString(), m_launch);
  for (QWidget* w : runBox->findChildren<QWidget*>()) plainFont(w);
  col->addWidget(runBox);
  col->addStretch(1);
  connect(m_name, &QLineEdit::textChanged, this, [this] { formChanged(); });
  connect(m_device, &QComboBox::currentIndexChanged, this, [this] { updateEstimate(); });
  connect(m_steps, &QSpinBox::valueChanged, this, [this] { formChanged(); });
  connect(m_microBatch, &QSpinBox::valueChanged, this, [this] { formChanged(); });
  connect(m_lr, &QDoubleSpinBox::valueChanged, this, [this] { formChanged(); });
  connect(m_launch, &QPushButton::clicked, this, [this] { launch(); });

  scroll->setWidget(inner);
  return scroll;
}

QWidget* FinetunePage::buildRight() {
  m_tabs = new QTabWidget(this);
  m_tabs->setObjectName(QStringLiteral("finetuneTabs"));
  m_preview = new DataPreviewView(m_tabs);
  m_tabs->addTab(m_preview, tr("Data preview"));
  auto* cfg = new QWidget(m_tabs);
  auto* v = new QVBoxLayout(cfg);
  v->setContentsMargins(0, 4, 0, 0);
  m_yaml = new QPlainTextEdit(cfg);
  m_yaml->setObjectName(QStringLiteral("configYaml"));
  m_yaml->setFont(QFontDatabase::systemFont(QFontDatabase::FixedFont));
  m_yaml->setLineWrapMode(QPlainTextEdit::NoWrap);
  new YamlHighlighter(m_yaml->document());
  v->addWidget(m_yaml, 1);
  auto* row = new QHBoxLayout;
  m_yamlStatus = new QLabel(cfg);
  m_yamlStatus->setObjectName(QStringLiteral("yamlStatus"));
  m_yamlStatus->setWordWrap(true);
  m_regenerate = new QPushButton(tr("Regenerate from the form"), cfg);
  m_regenerate->setObjectName(QStringLiteral("regenerate"));
  m_regenerate->setEnabled(false);
  row->addWidget(m_yamlStatus, 1);
  row->addWidget(m_regenerate);
  v->addLayout(row);
  m_tabs->addTab(cfg, tr("Run config"));
  connect(m_regenerate, &QPushButton::clicked, this, &FinetunePage::regenerate);
  connect(m_yaml, &QPlainTextEdit::textChanged, this, [this] {
    if (m_settingYaml) return;
    m_yamlEdited = true;
    m_regenerate->setEnabled(true);
    m_estimateTimer->start();
  });
  return m_tabs;
}

// ---- the base -----------------------------------------------------------------------------------

void FinetunePage::reloadCheckpoints() {
  const QString current = m_base.kind == FinetuneBase::Kind::Checkpoint ? m_base.dir : QString();
  m_checkpoints->blockSignals(true);
  m_checkpoints->clear();
  m_checkpoints->addItem(tr("Choose a checkpoint…"), QString());
  if (m_ws && m_ws->isOpen()) {
    QHash<QString, QString> names;
    for (const cluster::CheckpointRecord& c : m_ws->checkpoints().listAll()) {
      if (!c.isWhole() || c.lora) continue;  // an adapter is no base (Fine-tune from here continues it)
      if (!names.contains(c.runId)) {
        const auto run = m_ws->runs().get(c.runId);
        names.insert(c.runId, run && !run->name.isEmpty() && run->name != c.runId ? QStringLiteral("%1 (%2)").arg(c.runId, run->name) : c.runId);
      }
      m_checkpoints->addItem(tr("%1 · step %2").arg(names.value(c.runId)).arg(c.step), QFileInfo(c.path).absoluteFilePath());
      m_checkpoints->setItemData(m_checkpoints->count() - 1, QDir::toNativeSeparators(c.path), Qt::ToolTipRole);
    }
  }
  if (m_base.kind == FinetuneBase::Kind::HuggingFace) {
    m_checkpoints->addItem(tr("Hugging Face: %1").arg(QFileInfo(m_base.dir).fileName()), m_base.dir);
    m_checkpoints->setCurrentIndex(m_checkpoints->count() - 1);
  } else {
    const int at = current.isEmpty() ? -1 : m_checkpoints->findData(current);
    if (at < 0 && !current.isEmpty()) {
      m_checkpoints->addItem(tr("%1 · step %2").arg(m_base.runName.isEmpty() ? m_base.runId : m_base.runName).arg(m_base.step), current);
      m_checkpoints->setCurrentIndex(m_checkpoints->count() - 1);
    } else {
      m_checkpoints->setCurrentIndex(std::max(0, at));
    }
  }
  m_checkpoints->blockSignals(false);
}

void FinetunePage::setBase(const QString& dir) {
  m_base = inspectBase(QFileInfo(dir).absoluteFilePath());
  m_adapter.clear();
  reloadCheckpoints();
  rebuildModules();
  if (m_base.isValid()) {
    // Defaults that follow the base: the context it was trained for, a name after it.
    const int maxSeq = static_cast<int>(std::max<int64_t>(8, m_base.model.max_seq_len));
    m_filling = true;
    m_seqLen->setMaximum(maxSeq);
    m_seqLen->setValue(std::min(maxSeq, 512));
    const QString stem = m_base.kind == FinetuneBase::Kind::Checkpoint ? (m_base.runName.isEmpty() ? m_base.runId : m_base.runName)
                                                                      : QFileInfo(m_base.dir).fileName();
    m_name->setText(QStringLiteral("%1-lora").arg(stem));
    m_filling = false;
  }
  updateBaseLabel();
  regenerate();
  schedulePreview();
  emit statusMessage(m_base.isValid() ? tr("Fine-tune base: %1").arg(QDir::toNativeSeparators(m_base.dir))
                                      : tr("Cannot fine-tune %1: %2").arg(QDir::toNativeSeparators(dir), m_base.error));
}

void FinetunePage::setAdapter(const QString& dir) {
  m_adapter = dir.isEmpty() ? QString() : QFileInfo(dir).absoluteFilePath();
  QFile f(QDir(m_adapter).filePath(QStringLiteral("adapter_config.json")));
  if (!m_adapter.isEmpty() && f.open(QIODevice::ReadOnly)) {
    // The engine continues with the adapter's own rank and targets; the form shows them, so the
    // estimate and the YAML say what will be trained.
    const QJsonObject a = QJsonDocument::fromJson(f.readAll()).object();
    QStringList targets;
    for (const QJsonValue& v : a.value(QStringLiteral("target_modules")).toArray()) targets << v.toString();
    m_filling = true;
    if (a.value(QStringLiteral("r")).toInt() > 0) m_r->setValue(a.value(QStringLiteral("r")).toInt());
    if (a.value(QStringLiteral("lora_alpha")).toDouble() > 0) m_alpha->setValue(a.value(QStringLiteral("lora_alpha")).toDouble());
    m_rslora->setChecked(a.value(QStringLiteral("use_rslora")).toBool());
    if (!targets.isEmpty())
      for (QCheckBox* b : m_moduleBoxes) b->setChecked(targets.contains(b->text()));
    m_filling = false;
  }
  updateBaseLabel();
  regenerate();
}

void FinetunePage::rebuildModules() {
  QStringList checked;
  for (QCheckBox* b : m_moduleBoxes)
    if (b->isChecked()) checked << b->text();
  qDeleteAll(m_moduleBoxes);
  m_moduleBoxes.clear();
  const QStringList names = m_base.kind == FinetuneBase::Kind::None ? FinetuneBase{}.moduleNames() : m_base.moduleNames();
  const QStringList defaults = m_base.kind == FinetuneBase::Kind::None ? FinetuneBase{}.defaultTargets() : m_base.defaultTargets();
  QStringList keep;
  for (const QString& c : checked)
    if (names.contains(c)) keep << c;
  if (keep.isEmpty()) keep = defaults;
  const int columns = 4;
  for (int i = 0; i < names.size(); ++i) {
    auto* b = new QCheckBox(names[i], m_modules);
    b->setObjectName(QStringLiteral("module_") + names[i]);
    b->setChecked(keep.contains(names[i]));
    if (names[i] == QLatin1String("query_key_value")) b->setToolTip(tr("The fused name from the brief: q, k and v together"));
    if (names[i] == QLatin1String("experts")) b->setToolTip(tr("Every routed expert's gate, up and down projections"));
    connect(b, &QCheckBox::toggled, this, [this] { formChanged(); });
    m_moduleGrid->addWidget(b, i / columns, i % columns);
    m_moduleBoxes << b;
  }
}

QCheckBox* FinetunePage::moduleBox(const QString& name) const {
  for (QCheckBox* b : m_moduleBoxes)
    if (b->text() == name) return b;
  return nullptr;
}

void FinetunePage::updateBaseLabel() {
  if (m_base.kind == FinetuneBase::Kind::None) {
    m_baseInfo->setText(tr("Pick a checkpoint of this workspace, or a Hugging Face model folder (config.json and "
                           "*.safetensors). The Checkpoints page's <i>Fine-tune from here</i> also lands here."));
    setColor(m_baseInfo, QStringLiteral("text.muted"));
    return;
  }
  if (!m_base.error.isEmpty()) {
    m_baseInfo->setText(tr("<b>Cannot use this base:</b> %1").arg(m_base.error.toHtmlEscaped()));
    setColor(m_baseInfo, QStringLiteral("status.failed"));
    return;
  }
  QString html;
  if (m_base.kind == FinetuneBase::Kind::Checkpoint)
    html = tr("<b>Checkpoint</b> of run %1, step %2").arg(m_base.runName.isEmpty() ? m_base.runId : QStringLiteral("%1 (%2)").arg(m_base.runName, m_base.runId)).arg(m_base.step);
  else
    html = tr("<b>Hugging Face</b> %1").arg(m_base.architecture.toHtmlEscaped());
  html += QStringLiteral("<br>") + m_base.architectureText().toHtmlEscaped();
  if (m_estimate.params.total > 0) html += tr(" · %1 parameters").arg(formatSi(double(m_estimate.params.total)));
  html += QStringLiteral("<br><span style='color:%1'>%2</span>")
              .arg(Theme::instance()->color(QStringLiteral("text.muted")).name(), QDir::toNativeSeparators(m_base.dir).toHtmlEscaped());
  if (!m_adapter.isEmpty())
    html += QStringLiteral("<br>") + tr("Continues the LoRA adapter %1 (lora.adapter)").arg(QDir::toNativeSeparators(m_adapter).toHtmlEscaped());
  for (const QString& n : m_base.notes)
    html += QStringLiteral("<br><span style='color:%1'>⚠ %2</span>").arg(Theme::instance()->color(QStringLiteral("status.stopped")).name(), n.toHtmlEscaped());
  m_baseInfo->setText(html);
  setColor(m_baseInfo, QString());
}

// ---- form -> YAML -> estimate ----------------------------------------------------------------------

FinetuneSettings FinetunePage::settings() const {
  FinetuneSettings s;
  s.name = m_name->text().trimmed();
  const QString data = m_data->text().trimmed();
  s.dataFile = data.isEmpty() ? QString() : QFileInfo(data).absoluteFilePath();
  s.chatTemplate = m_template->currentText();
  s.packing = m_packing->isChecked();
  s.seqLen = m_seqLen->value();
  s.r = m_r->value();
  s.alpha = m_alpha->value();
  s.dropout = m_dropout->value();
  s.rslora = m_rslora->isChecked();
  s.targets.clear();
  for (QCheckBox* b : m_moduleBoxes)
    if (b->isChecked()) s.targets << b->text();
  s.int8Base = m_int8->isChecked();
  s.maxSteps = m_steps->value();
  s.microBatch = m_microBatch->value();
  s.lr = m_lr->value();
  s.adapter = m_adapter;
  return s;
}

void FinetunePage::setDataFile(const QString& path) {
  m_data->setText(QDir::toNativeSeparators(path));
  formChanged();
}

void FinetunePage::formChanged() {
  if (m_filling) return;
  if (!m_yamlEdited) regenerate();
  else {
    m_yamlStatus->setText(tr("The YAML was edited by hand, so form changes are not applied to it; "
                             "Regenerate to write it from the form again."));
    updateLaunchState();
  }
  schedulePreview();
}

void FinetunePage::regenerate() {
  m_settingYaml = true;
  m_yaml->setPlainText(finetuneYaml(m_base, settings()));
  m_settingYaml = false;
  m_yamlEdited = false;
  m_regenerate->setEnabled(false);
  updateEstimate();
}

QString FinetunePage::configText() const { return m_yaml->toPlainText(); }

QString FinetunePage::configPath() const {
  QString stem = m_name->text().trimmed();
  stem.replace(QRegularExpression(QStringLiteral("[^A-Za-z0-9_.-]+")), QStringLiteral("-"));
  if (stem.isEmpty() || stem.startsWith(QLatin1Char('.'))) stem.prepend(QStringLiteral("finetune"));
  const QString dir = m_ws && m_ws->isOpen() ? m_ws->projectsDir() : QDir::home().filePath(QStringLiteral(".fathom-projects"));
  return QDir(dir).filePath(stem + QStringLiteral(".yaml"));
}

std::vector<config::DeviceSpec> FinetunePage::estimateDevices() const {
  const QString id = m_device->currentData().toString();
  const qint64 mem = m_device->currentData(Qt::UserRole + 1).toLongLong();
  std::string err;
  std::vector<config::DeviceSpec> d;
  if (id.startsWith(QLatin1String("cuda")) && mem > 0)
    d = config::parse_devices(QStringLiteral("mem=%1MiB").arg(mem >> 20).toStdString(), &err);
  if (d.empty()) d = config::parse_devices("cpu", &err);
  if (!d.empty() && id.startsWith(QLatin1String("cuda"))) d.front().name = m_device->currentText().toStdString();
  return d;
}

void FinetunePage::updateEstimate() {
  m_estimateTimer->stop();
  config::LoadOptions o;
  o.check_paths = false;
  const config::LoadResult r = config::load_config_text(configText().toStdString(), configPath().toStdString(), o);
  m_configOk = r.ok();
  m_configError = r.ok() ? QString() : QString::fromStdString(r.errors.front().message());
  if (!m_yamlEdited) m_yamlStatus->clear();
  if (!r.ok()) {
    m_estimate = config::Estimate{};
    m_estimateLabel->setText(tr("The config does not load: %1").arg(m_configError));
    setColor(m_estimateLabel, QStringLiteral("status.failed"));
    m_yamlStatus->setText(m_configError);
    setColor(m_yamlStatus, QStringLiteral("status.failed"));
    updateLaunchState();
    return;
  }
  setColor(m_yamlStatus, QStringLiteral("text.muted"));
  if (m_yamlEdited) m_yamlStatus->setText(tr("Edited by hand: the estimate and Launch use this text; Regenerate to write it from the form."));
  else m_yamlStatus->setText(tr("Written from the form; edit freely (Launch saves it to %1).").arg(QDir::toNativeSeparators(configPath())));
  m_estimate = config::estimate(r.config, estimateDevices());
  const config::ParamCounts& p = m_estimate.params;
  const config::MemoryBreakdown& mem = m_estimate.memory;
  QString text;
  if (m_base.kind == FinetuneBase::Kind::None) {
    text = tr("Pick a base model to estimate.");
    setColor(m_estimateLabel, QStringLiteral("text.muted"));
  } else {
    const double frac = p.total > 0 ? double(p.trainable) / double(p.total) : 0;
    text = tr("<b>%1 trainable</b> of %2 parameters (%3) — adapters on %4")
               .arg(formatSi(double(p.trainable)), formatSi(double(p.total)), formatFraction(frac, frac < 0.001 ? 3 : 2),
                    QString::fromStdString([&] {
                      std::string s;
                      for (const auto& t : r.config.lora.target_modules) s += (s.empty() ? "" : ", ") + t;
                      return s.empty() ? std::string("nothing") : s;
                    }()));
    text += tr("<br><b>≈ %1</b> per device: base weights %2, adapter gradients %3, optimizer state %4, activations %5")
                .arg(formatBytes(double(mem.total)), formatBytes(double(mem.parameters)), formatBytes(double(mem.gradients)),
                     formatBytes(double(mem.optimizer_state)), formatBytes(double(mem.activations)));
    if (!m_estimate.devices.empty()) {
      const config::DeviceVerdict& v = m_estimate.devices.front();
      const QString color = Theme::instance()->color(v.fits ? QStringLiteral("status.completed") : QStringLiteral("status.failed")).name();
      text += QStringLiteral("<br><span style='color:%1'>%2</span>")
                  .arg(color, v.fits ? tr("fits on %1 (%2 usable)").arg(QString::fromStdString(v.device.name), formatBytes(double(v.usable_bytes)))
                                     : tr("does not fit on %1 (%2 usable)").arg(QString::fromStdString(v.device.name), formatBytes(double(v.usable_bytes))));
    }
    if (p.vocab_assumed) text += tr("<br><i>vocabulary size assumed (%1)</i>").arg(p.vocab_size);
    setColor(m_estimateLabel, QString());
  }
  m_estimateLabel->setText(text);
  updateBaseLabel();
  updateLaunchState();
}

void FinetunePage::updateLaunchState() {
  QString problem;
  const QString data = m_data->text().trimmed();
  if (m_base.kind == FinetuneBase::Kind::None) problem = tr("Step 1: pick a base model.");
  else if (!m_base.error.isEmpty()) problem = tr("The base cannot be used: %1").arg(m_base.error);
  else if (data.isEmpty()) problem = tr("Step 2: pick a .jsonl file of examples.");
  else if (!QFileInfo(data).isFile()) problem = tr("%1 does not exist.").arg(data);
  else if (settings().targets.isEmpty() && !m_yamlEdited) problem = tr("Step 3: choose at least one target module.");
  else if (m_name->text().trimmed().isEmpty()) problem = tr("Give the run a name.");
  else if (!m_configOk) problem = tr("The config does not load: %1").arg(m_configError);
  else if (!m_queue) problem = tr("No job queue: the workspace could not be opened, so nothing can be launched.");
  m_launch->setEnabled(problem.isEmpty());
  m_problem->setText(problem.isEmpty() ? tr("✓ Ready: saves %1 and runs fathom-engine finetune.").arg(QFileInfo(configPath()).fileName()) : problem);
  setColor(m_problem, problem.isEmpty() ? QStringLiteral("status.completed") : QStringLiteral("text.muted"));
}

// ---- preview ---------------------------------------------------------------------------------------

bool FinetunePage::isPreviewRunning() const { return m_tool->isRunning() || m_previewTimer->isActive(); }

void FinetunePage::schedulePreview() {
  if (!m_base.isValid() || !QFileInfo(m_data->text().trimmed()).isFile()) return;
  m_previewTimer->start();
}

void FinetunePage::refreshPreview() {
  m_previewTimer->stop();
  if (!m_base.isValid()) {
    m_preview->setMessage(tr("Pick a base model first: the preview tokenizes with its tokenizer."), false);
    return;
  }
  const QString data = m_data->text().trimmed();
  if (!QFileInfo(data).isFile()) {
    m_preview->setMessage(data.isEmpty() ? tr("Pick a .jsonl file of examples.") : tr("%1 does not exist.").arg(data), !data.isEmpty());
    return;
  }
  if (m_tool->isRunning()) {
    // The answer would be stale: end it; the finished handler starts the new one.
    m_previewPending = true;
    m_tool->cancel();
    return;
  }
  if (!m_tmp.isValid()) {
    m_preview->setMessage(tr("Cannot create a temporary folder for the preview config."), true);
    return;
  }
  const QString path = m_tmp.filePath(QStringLiteral("preview.yaml"));
  QSaveFile f(path);
  if (!f.open(QIODevice::WriteOnly) || f.write(configText().toUtf8()) < 0 || !f.commit()) {
    m_preview->setMessage(tr("Cannot write %1: %2").arg(path, f.errorString()), true);
    return;
  }
  m_tool->setEngineBinary(engineBinary());
  if (!m_tool->start({QStringLiteral("finetune"), path, QStringLiteral("--preview"), QStringLiteral("--examples"), QStringLiteral("5")})) {
    m_previewStatus->setText(m_tool->error());
    setColor(m_previewStatus, QStringLiteral("status.failed"));
    m_preview->setMessage(m_tool->error(), true);
    emit previewFinished(false);
    return;
  }
  m_previewStatus->setText(tr("Tokenizing the examples…"));
  setColor(m_previewStatus, QStringLiteral("text.muted"));
}

void FinetunePage::onPreviewFinished(bool ok) {
  if (m_previewPending) {
    m_previewPending = false;
    QTimer::singleShot(0, this, &FinetunePage::refreshPreview);
    return;
  }
  if (ok) {
    const DataPreview p = parsePreview(m_tool->standardOutput());
    if (p.error.isEmpty()) {
      m_preview->setPreview(p);
      m_previewStatus->setText(tr("%n example(s), %1 truncated at %2 tokens; template %3", nullptr, static_cast<int>(p.count))
                                   .arg(p.truncated)
                                   .arg(p.seqLen)
                                   .arg(p.chatTemplate));
      setColor(m_previewStatus, p.truncated > 0 ? QStringLiteral("status.stopped") : QStringLiteral("status.completed"));
      emit previewFinished(true);
      return;
    }
    m_preview->setMessage(p.error, true);
    m_previewStatus->setText(tr("The engine's preview could not be read."));
    setColor(m_previewStatus, QStringLiteral("status.failed"));
    emit previewFinished(false);
    return;
  }
  // The engine's own words: bad data (file:line: what is wrong), or an engine without --preview.
  QString why = m_tool->error();
  if (why.isEmpty()) why = m_tool->standardError().trimmed();
  if (m_tool->wasCancelled()) why = tr("Preview cancelled.");
  const QString head = m_tool->unknownCommand() ? tr("This fathom-engine cannot preview fine-tune data yet (%1):\n\n")
                                                      .arg(QDir::toNativeSeparators(m_tool->engineBinary()))
                                                : QString();
  m_preview->setMessage(head + why, true);
  m_previewStatus->setText(m_tool->unknownCommand() ? tr("The engine has no finetune --preview.") : tr("The data did not preview: see the error."));
  setColor(m_previewStatus, QStringLiteral("status.failed"));
  emit previewFinished(false);
}

// ---- launch -----------------------------------------------------------------------------------------

void FinetunePage::fillDevices() {
  const QString current = m_device->currentData().toString();
  m_device->blockSignals(true);
  m_device->clear();
  QList<EngineDevice> devs = m_probe ? m_probe->devices() : QList<EngineDevice>{};
  bool haveCpu = false;
  for (const EngineDevice& d : devs) haveCpu |= d.kind == QLatin1String("cpu");
  if (!haveCpu) devs.prepend(EngineDevice{QStringLiteral("cpu"), 0, QStringLiteral("CPU"), 0, 0});
  for (const EngineDevice& d : devs) {
    const QString label = d.kind == QLatin1String("cpu") ? tr("CPU") : QStringLiteral("%1  %2 (%3)").arg(d.id(), d.name, formatBytes(double(d.memoryTotal), 0));
    m_device->addItem(label, d.id());
    m_device->setItemData(m_device->count() - 1, d.memoryTotal, Qt::UserRole + 1);
  }
  // A GPU when there is one: fine-tunes are what GPUs are for.
  int at = m_device->findData(current);
  if (at < 0) at = m_device->count() > 1 ? 1 : 0;
  m_device->setCurrentIndex(at);
  m_device->blockSignals(false);
  updateEstimate();
}

QString FinetunePage::launch() {
  m_estimateTimer->stop();
  updateEstimate();
  if (!m_launch->isEnabled()) return {};
  const QString path = configPath();
  QDir().mkpath(QFileInfo(path).absolutePath());
  QSaveFile f(path);
  if (!f.open(QIODevice::WriteOnly) || f.write(configText().toUtf8()) < 0 || !f.commit()) {
    m_problem->setText(tr("Cannot save %1: %2").arg(QDir::toNativeSeparators(path), f.errorString()));
    setColor(m_problem, QStringLiteral("status.failed"));
    return {};
  }
  cluster::LaunchSpec spec;
  spec.name = m_name->text().trimmed();
  spec.configPath = path;
  spec.command = QStringLiteral("finetune");
  spec.devices = {m_device->currentData().toString()};
  spec.engineBinary = m_queue->engineBinary();
  const QString id = m_queue->enqueue(spec);
  if (id.isEmpty()) {
    m_problem->setText(tr("Could not launch: %1").arg(m_queue->lastError()));
    setColor(m_problem, QStringLiteral("status.failed"));
    return {};
  }
  m_problem->setText(tr("Launched %1.").arg(id));
  setColor(m_problem, QStringLiteral("status.completed"));
  emit statusMessage(tr("Launched fine-tune %1").arg(id));
  emit runLaunched(id);
  return id;
}

// ---- settings ----------------------------------------------------------------------------------------

void FinetunePage::saveState(QSettings& settings) const {
  settings.setValue(QStringLiteral("finetune/splitter"), m_split->saveState());
  settings.setValue(QStringLiteral("finetune/tab"), m_tabs->currentIndex());
}

void FinetunePage::restoreState(const QSettings& settings) {
  m_split->restoreState(settings.value(QStringLiteral("finetune/splitter")).toByteArray());
  m_tabs->setCurrentIndex(settings.value(QStringLiteral("finetune/tab"), 0).toInt());
}

}  // namespace fathom::ui
