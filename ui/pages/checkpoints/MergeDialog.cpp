// MergeDialog; see MergeDialog.h.
#include "ui/pages/checkpoints/MergeDialog.h"

#include <QButtonGroup>
#include <QComboBox>
#include <QDialogButtonBox>
#include <QDir>
#include <QFile>
#include <QFileDialog>
#include <QFileInfo>
#include <QFontDatabase>
#include <QFormLayout>
#include <QHBoxLayout>
#include <QLabel>
#include <QLineEdit>
#include <QPlainTextEdit>
#include <QProgressBar>
#include <QPushButton>
#include <QRadioButton>
#include <QRegularExpression>
#include <QSaveFile>
#include <QVBoxLayout>

#include "cluster/jobs/EngineTool.h"
#include "cluster/workspace/CheckpointRepository.h"
#include "cluster/workspace/Workspace.h"
#include "ui/Theme.h"
#include "ui/pages/checkpoints/ToolLog.h"
#include "ui/pages/designer/YamlKeyEdit.h"

namespace fathom::ui {

namespace {

// A run id is a directory name: letters, digits, '_', '.', '-'.
QString runIdOf(const QString& name) {
  QString id = name.trimmed();
  id.replace(QRegularExpression(QStringLiteral("[^A-Za-z0-9_.-]+")), QStringLiteral("-"));
  while (id.startsWith(QLatin1Char('.'))) id.remove(0, 1);
  return id;
}

QString quoted(const QString& s) {
  return QLatin1Char('"') + QString(s).replace(QLatin1Char('\\'), QStringLiteral("\\\\")).replace(QLatin1Char('"'), QStringLiteral("\\\"")) +
         QLatin1Char('"');
}

}  // namespace

QString MergeDialog::defaultRunName(const cluster::CheckpointRecord& adapter, const QString& runsDir) {
  const QString stem = QStringLiteral("%1-merged-step%2").arg(adapter.runId).arg(adapter.step);
  QString name = stem;
  for (int i = 2; !runsDir.isEmpty() && QFileInfo::exists(QDir(runsDir).filePath(runIdOf(name))); ++i)
    name = QStringLiteral("%1-%2").arg(stem).arg(i);
  return name;
}

MergeDialog::MergeDialog(const cluster::CheckpointRecord& adapter, cluster::Workspace* workspace, const QString& engineBinary,
                         QWidget* parent)
    : QDialog(parent), m_adapter(adapter), m_ws(workspace) {
  setWindowTitle(tr("Merge the adapter of %1 step %2 into its base").arg(adapter.runId).arg(adapter.step));
  resize(760, 520);
  auto* layout = new QVBoxLayout(this);
  auto* intro = new QLabel(tr("Folds this LoRA adapter (r %1, lora_alpha %2) into the base it was trained on: every adapted "
                              "weight becomes W + (alpha/r)·B·A, so the result is a plain model that needs no adapter. "
                              "Neither the adapter nor the base is changed.<br>Base: <code>%3</code>")
                               .arg(adapter.loraR)
                               .arg(adapter.loraAlpha)
                               .arg(QDir::toNativeSeparators(adapter.loraBase.isEmpty() ? tr("(not recorded; the merge will fail)")
                                                                                        : adapter.loraBase)
                                        .toHtmlEscaped()),
                           this);
  intro->setWordWrap(true);
  intro->setTextFormat(Qt::RichText);
  layout->addWidget(intro);

  auto* form = new QFormLayout;
  m_toFathom = new QRadioButton(tr("A Fathom run in this workspace"), this);
  m_toFathom->setToolTip(tr("fathom-engine lora merge --to fathom: config.yaml and checkpoints/step-0, listed here at once; "
                            "resume, fine-tune or export it like any run"));
  m_toHf = new QRadioButton(tr("A Hugging Face folder"), this);
  m_toHf->setToolTip(tr("fathom-engine lora merge --to hf: config.json, model.safetensors and the tokenizer, for "
                        "transformers' from_pretrained"));
  auto* group = new QButtonGroup(this);
  group->addButton(m_toFathom);
  group->addButton(m_toHf);
  m_toFathom->setChecked(true);

  m_name = new QLineEdit(this);
  m_name->setText(defaultRunName(adapter, m_ws ? m_ws->runsDir() : QString()));
  m_runPath = new QLabel(this);
  m_runPath->setForegroundRole(QPalette::PlaceholderText);
  m_runPath->setTextInteractionFlags(Qt::TextSelectableByMouse);
  auto* runBox = new QVBoxLayout;
  runBox->setSpacing(2);
  runBox->addWidget(m_toFathom);
  auto* nameRow = new QHBoxLayout;
  nameRow->setContentsMargins(24, 0, 0, 0);
  nameRow->addWidget(new QLabel(tr("Run name"), this));
  nameRow->addWidget(m_name, 1);
  runBox->addLayout(nameRow);
  auto* pathRow = new QHBoxLayout;
  pathRow->setContentsMargins(24, 0, 0, 0);
  pathRow->addWidget(m_runPath, 1);
  runBox->addLayout(pathRow);
  form->addRow(runBox);

  m_hfOut = new QLineEdit(this);
  const QString runDir = QDir::cleanPath(adapter.path + QStringLiteral("/../.."));
  m_hfOut->setText(QDir(runDir).filePath(QStringLiteral("exports/hf-merged-step-%1").arg(adapter.step)));
  m_browse = new QPushButton(tr("Browse…"), this);
  m_dtype = new QComboBox(this);
  m_dtype->addItems({QStringLiteral("fp32"), QStringLiteral("bf16"), QStringLiteral("fp16")});
  m_dtype->setToolTip(tr("--dtype: the weights' type in model.safetensors"));
  auto* hfBox = new QVBoxLayout;
  hfBox->setSpacing(2);
  hfBox->addWidget(m_toHf);
  auto* hfRow = new QHBoxLayout;
  hfRow->setContentsMargins(24, 0, 0, 0);
  hfRow->addWidget(new QLabel(tr("Folder"), this));
  hfRow->addWidget(m_hfOut, 1);
  hfRow->addWidget(m_browse);
  hfRow->addWidget(new QLabel(tr("dtype"), this));
  hfRow->addWidget(m_dtype);
  hfBox->addLayout(hfRow);
  form->addRow(hfBox);
  layout->addLayout(form);

  const ToolLog tl = addToolLog(this, layout, tr("fathom-engine lora merge's progress appears here."));
  m_busy = tl.busy;
  m_log = tl.log;
  m_result = tl.result;
  auto* buttons = new QDialogButtonBox(this);
  m_start = buttons->addButton(tr("Merge"), QDialogButtonBox::AcceptRole);
  m_start->setObjectName(QStringLiteral("merge"));
  m_cancel = buttons->addButton(QDialogButtonBox::Cancel);
  auto* close = buttons->addButton(QDialogButtonBox::Close);
  layout->addWidget(buttons);
  connect(m_start, &QPushButton::clicked, this, [this] { start(); });
  connect(m_cancel, &QPushButton::clicked, this, &MergeDialog::cancel);
  connect(close, &QPushButton::clicked, this, &MergeDialog::reject);
  connect(m_browse, &QPushButton::clicked, this, [this] {
    const QString d = QFileDialog::getExistingDirectory(this, tr("Merge into"), QFileInfo(m_hfOut->text()).absolutePath());
    if (!d.isEmpty()) m_hfOut->setText(d);
  });
  connect(m_toFathom, &QRadioButton::toggled, this, [this] { updateForm(); });
  connect(m_name, &QLineEdit::textChanged, this, [this] { updateForm(); });
  m_cancel->setEnabled(false);

  m_tool = new cluster::EngineTool(this);
  m_tool->setEngineBinary(engineBinary);
  connect(m_tool, &cluster::EngineTool::progress, this, [this](const QString& line) { m_log->appendPlainText(line); });
  connect(m_tool, &cluster::EngineTool::finished, this, &MergeDialog::onFinished);
  updateForm();
}

bool MergeDialog::isRunning() const { return m_tool->isRunning(); }

QString MergeDialog::outputDir() const {
  if (m_toHf->isChecked()) return QDir::cleanPath(m_hfOut->text().trimmed());
  const QString id = runIdOf(m_name->text());
  return m_ws && !id.isEmpty() ? QDir(m_ws->runsDir()).filePath(id) : QString();
}

void MergeDialog::updateForm() {
  const bool busy = m_tool && m_tool->isRunning();
  const bool hf = m_toHf->isChecked();
  m_name->setEnabled(!busy && !hf);
  m_hfOut->setEnabled(!busy && hf);
  m_browse->setEnabled(!busy && hf);
  m_dtype->setEnabled(!busy && hf);
  const QString dir = m_toHf->isChecked() || !m_ws ? QString() : outputDir();
  m_runPath->setText(dir.isEmpty() ? QString() : QDir::toNativeSeparators(dir));
}

void MergeDialog::setBusy(bool busy) {
  m_busy->setVisible(busy);
  m_start->setEnabled(!busy);
  m_toFathom->setEnabled(!busy);
  m_toHf->setEnabled(!busy);
  m_cancel->setEnabled(busy);
  updateForm();
}

bool MergeDialog::fail(const QString& why) {
  m_result->setText(why);
  QPalette p = m_result->palette();
  p.setColor(QPalette::WindowText, Theme::instance()->color(QStringLiteral("status.failed")));
  m_result->setPalette(p);
  return false;
}

bool MergeDialog::start() {
  if (m_tool->isRunning()) return false;
  m_outToHf = m_toHf->isChecked();
  const QString out = outputDir();
  m_runId.clear();
  if (!m_outToHf) {
    if (!m_ws || !m_ws->isOpen()) return fail(tr("No workspace is open to hold the merged run."));
    const QString id = runIdOf(m_name->text());
    if (id.isEmpty()) return fail(tr("Give the merged run a name."));
    if (m_ws->runs().get(id)) return fail(tr("The workspace already has a run %1; choose another name.").arg(id));
  }
  if (out.isEmpty()) return fail(tr("Choose an output directory."));
  if (QFileInfo(out).exists() && !(QFileInfo(out).isDir() && QDir(out).isEmpty()))
    return fail(tr("%1 exists and is not empty; choose a new one so nothing is overwritten.").arg(QDir::toNativeSeparators(out)));
  if (!QDir().mkpath(QFileInfo(out).absolutePath()))
    return fail(tr("Cannot create %1; check the permissions.").arg(QFileInfo(out).absolutePath()));
  m_out = out;
  m_log->clear();
  m_result->clear();
  QStringList args{QStringLiteral("lora"), QStringLiteral("merge"), m_adapter.path, QStringLiteral("--out"), out,
                   QStringLiteral("--to"), m_outToHf ? QStringLiteral("hf") : QStringLiteral("fathom")};
  if (m_outToHf) args << QStringLiteral("--dtype") << m_dtype->currentText();
  m_log->appendPlainText(QStringLiteral("$ fathom-engine %1").arg(args.join(QLatin1Char(' '))));
  if (!m_tool->start(args)) return fail(m_tool->error());
  setBusy(true);
  return true;
}

void MergeDialog::cancel() { m_tool->cancel(); }

void MergeDialog::reject() {
  if (m_tool->isRunning()) {
    m_closeWhenDone = true;
    m_tool->cancel();
    return;
  }
  QDialog::reject();
}

bool MergeDialog::registerMergedRun(const QString& runDir, QString* error) {
  const QString id = QFileInfo(runDir).fileName();
  const QString name = m_name->text().trimmed().isEmpty() ? id : m_name->text().trimmed();
  // lora merge copies the base run's config.yaml, run.name included; the merged run is named for
  // itself, so that a later rescan (which reads the name from config.yaml) keeps the name.
  const QString configPath = QDir(runDir).filePath(QStringLiteral("config.yaml"));
  QFile in(configPath);
  if (in.open(QIODevice::ReadOnly)) {
    const QString text = QString::fromUtf8(in.readAll());
    in.close();
    QString err;
    const QString renamed = YamlKeyEdit::setValue(text, QStringLiteral("run.name"), quoted(name), nullptr, &err);
    QSaveFile f(configPath);
    if (err.isEmpty() && renamed != text && f.open(QIODevice::WriteOnly)) {
      f.write(renamed.toUtf8());
      f.commit();
    }
  }
  cluster::RunRecord r;
  r.id = id;
  r.name = name;
  r.runDir = QFileInfo(runDir).absoluteFilePath();
  r.configPath = configPath;
  r.status = cluster::run_status::completed;
  r.createdAt = r.startedAt = r.endedAt = QDateTime::currentDateTime();
  r.parentRunId = m_adapter.runId;
  if (!m_ws->checkpoints().registerRun(r)) {
    if (error) *error = m_ws->checkpoints().lastError();
    return false;
  }
  return true;
}

void MergeDialog::onFinished(bool ok) {
  setBusy(false);
  QPalette p = m_result->palette();
  QString output;
  QString why;
  if (ok && m_outToHf) {
    if (m_ws && !m_ws->checkpoints().addExport(m_adapter.runId, m_adapter.path, m_out))
      m_log->appendPlainText(tr("(the merge is done but could not be recorded: %1)").arg(m_ws->checkpoints().lastError()));
    output = m_out;
    m_result->setText(tr("✓ Merged into %1 (Hugging Face format)").arg(QDir::toNativeSeparators(m_out)));
  } else if (ok) {
    if (!m_ws || !registerMergedRun(m_out, &why)) {
      ok = false;
      m_result->setText(tr("The merge wrote %1 but it could not be registered: %2. Rescan the workspace (Runs page) to list it.")
                            .arg(QDir::toNativeSeparators(m_out), why));
    } else {
      m_runId = QFileInfo(m_out).fileName();
      output = m_runId;
      m_result->setText(tr("✓ Merged into the run %1 (%2)").arg(m_runId, QDir::toNativeSeparators(m_out)));
    }
  } else {
    // Whatever a stopped or failed merge wrote is incomplete, and the output did not exist (or
    // was empty) before: remove it, and the engine's temporary run of an --to hf merge.
    for (const QString& d : {m_out, m_out + QStringLiteral(".fathom.tmp")})
      if (QFileInfo(d).isDir()) cluster::CheckpointRepository::removeTree(d);
    if (m_tool->wasCancelled()) {
      m_result->setText(tr("Cancelled; nothing was written."));
    } else {
      m_result->setText(m_tool->unknownCommand()
                            ? tr("This fathom-engine has no lora merge command yet (%1). Update the engine.").arg(m_tool->error())
                            : tr("Merge failed: %1").arg(m_tool->error()));
    }
  }
  p.setColor(QPalette::WindowText, Theme::instance()->color(ok ? QStringLiteral("status.completed") : QStringLiteral("status.failed")));
  m_result->setPalette(p);
  emit mergeFinished(ok, output);
  if (m_closeWhenDone) QDialog::reject();
}

}  // namespace fathom::ui
