// ExportDialog; see ExportDialog.h.
#include "ui/pages/checkpoints/ExportDialog.h"

#include <QDialogButtonBox>
#include <QDir>
#include <QFileDialog>
#include <QFileInfo>
#include <QFontDatabase>
#include <QHBoxLayout>
#include <QLabel>
#include <QLineEdit>
#include <QPlainTextEdit>
#include <QProgressBar>
#include <QPushButton>
#include <QVBoxLayout>

#include "cluster/jobs/EngineTool.h"
#include "cluster/workspace/CheckpointRepository.h"
#include "cluster/workspace/Workspace.h"
#include "ui/Theme.h"
#include "ui/pages/checkpoints/ToolLog.h"

namespace fathom::ui {

ExportDialog::ExportDialog(const cluster::CheckpointRecord& checkpoint, cluster::Workspace* workspace,
                           const QString& engineBinary, QWidget* parent)
    : QDialog(parent), m_checkpoint(checkpoint), m_ws(workspace) {
  setWindowTitle(checkpoint.lora ? tr("Export step %1 merged into its base to Hugging Face format").arg(checkpoint.step)
                                 : tr("Export step %1 to Hugging Face format").arg(checkpoint.step));
  resize(720, 440);
  auto* layout = new QVBoxLayout(this);
  // An adapter checkpoint holds only the adapter tensors: what transformers can load is the
  // base with the adapter folded in, which `lora merge --to hf` writes in one go.
  auto* intro = new QLabel(
      checkpoint.lora
          ? tr("This checkpoint is a LoRA adapter, so the export merges it into its base first (<code>fathom-engine lora "
               "merge --to hf</code>: W + (alpha/r)·B·A) and writes the merged model — config.json, model.safetensors and "
               "the tokenizer — into a directory that transformers loads with from_pretrained.<br>Base: <code>%1</code>. "
               "Neither the adapter nor the base is changed. (The adapter directory itself is already a PEFT adapter.)")
                .arg(QDir::toNativeSeparators(checkpoint.loraBase).toHtmlEscaped())
          : tr("Writes config.json, model.safetensors and the tokenizer into a directory that "
               "transformers loads with from_pretrained. The checkpoint itself is not changed."),
      this);
  intro->setWordWrap(true);
  layout->addWidget(intro);
  auto* row = new QHBoxLayout;
  row->addWidget(new QLabel(tr("Output directory"), this));
  m_out = new QLineEdit(this);
  // <run dir>/exports/hf-step-N by default: next to the run, found by whoever looks at it.
  const QString runDir = QDir::cleanPath(checkpoint.path + QStringLiteral("/../.."));
  m_out->setText(QDir(runDir).filePath((checkpoint.lora ? QStringLiteral("exports/hf-merged-step-%1") : QStringLiteral("exports/hf-step-%1")).arg(checkpoint.step)));
  row->addWidget(m_out, 1);
  m_browse = new QPushButton(tr("Browse…"), this);
  row->addWidget(m_browse);
  layout->addLayout(row);
  const ToolLog tl = addToolLog(this, layout, checkpoint.lora ? tr("fathom-engine lora merge's progress appears here.")
                                             : tr("fathom-engine convert's progress appears here."));
  m_busy = tl.busy;
  m_log = tl.log;
  m_result = tl.result;
  auto* buttons = new QDialogButtonBox(this);
  m_start = buttons->addButton(tr("Export"), QDialogButtonBox::AcceptRole);
  m_start->setObjectName(QStringLiteral("export"));
  m_cancel = buttons->addButton(QDialogButtonBox::Cancel);
  auto* close = buttons->addButton(QDialogButtonBox::Close);
  layout->addWidget(buttons);
  connect(m_start, &QPushButton::clicked, this, [this] { start(); });
  connect(m_cancel, &QPushButton::clicked, this, &ExportDialog::cancel);
  connect(close, &QPushButton::clicked, this, &ExportDialog::reject);
  connect(m_browse, &QPushButton::clicked, this, [this] {
    const QString d = QFileDialog::getExistingDirectory(this, tr("Export to"), QFileInfo(m_out->text()).absolutePath());
    if (!d.isEmpty()) m_out->setText(d);
  });
  m_cancel->setEnabled(false);

  m_tool = new cluster::EngineTool(this);
  m_tool->setEngineBinary(engineBinary);
  connect(m_tool, &cluster::EngineTool::progress, this, [this](const QString& line) { m_log->appendPlainText(line); });
  connect(m_tool, &cluster::EngineTool::finished, this, &ExportDialog::onFinished);
}

bool ExportDialog::isRunning() const { return m_tool->isRunning(); }

void ExportDialog::setBusy(bool busy) {
  m_busy->setVisible(busy);
  m_start->setEnabled(!busy);
  m_out->setEnabled(!busy);
  m_browse->setEnabled(!busy);
  m_cancel->setEnabled(busy);
}

bool ExportDialog::start() {
  const QString out = QDir::cleanPath(m_out->text().trimmed());
  auto fail = [this](const QString& why) {
    m_result->setText(why);
    QPalette p = m_result->palette();
    p.setColor(QPalette::WindowText, Theme::instance()->color(QStringLiteral("status.failed")));
    m_result->setPalette(p);
    return false;
  };
  if (out.isEmpty()) return fail(tr("Choose an output directory."));
  if (QFileInfo(out).isDir() && !QDir(out).isEmpty())
    return fail(tr("%1 exists and is not empty; choose a new directory so nothing is overwritten.").arg(out));
  if (!QDir().mkpath(QFileInfo(out).absolutePath()))
    return fail(tr("Cannot create %1; check the permissions.").arg(QFileInfo(out).absolutePath()));
  m_log->clear();
  m_result->clear();
  const QStringList args = m_checkpoint.lora
                               ? QStringList{QStringLiteral("lora"), QStringLiteral("merge"), m_checkpoint.path, QStringLiteral("--to"),
                                             QStringLiteral("hf"), QStringLiteral("--out"), out}
                               : QStringList{QStringLiteral("convert"), m_checkpoint.path, QStringLiteral("--to"), QStringLiteral("hf"),
                                             QStringLiteral("--out"), out};
  m_log->appendPlainText(QStringLiteral("$ fathom-engine %1").arg(args.join(QLatin1Char(' '))));
  if (!m_tool->start(args)) return fail(m_tool->error());
  setBusy(true);
  return true;
}

void ExportDialog::cancel() { m_tool->cancel(); }

void ExportDialog::reject() {
  // Closing while convert runs ends it first (a half-written export is said so), then closes.
  if (m_tool->isRunning()) {
    m_closeWhenDone = true;
    m_tool->cancel();
    return;
  }
  QDialog::reject();
}

void ExportDialog::onFinished(bool ok) {
  setBusy(false);
  const QString out = QDir::cleanPath(m_out->text().trimmed());
  QPalette p = m_result->palette();
  // lora merge --to hf merges into a temporary Fathom run next to the output first; a stopped or
  // failed merge may leave it behind.
  if (!ok && m_checkpoint.lora && QFileInfo(out + QStringLiteral(".fathom.tmp")).isDir())
    cluster::CheckpointRepository::removeTree(out + QStringLiteral(".fathom.tmp"));
  if (ok && m_ws) {
    if (!m_ws->checkpoints().addExport(m_checkpoint.runId, m_checkpoint.path, out))
      m_log->appendPlainText(tr("(the export is done but could not be recorded: %1)").arg(m_ws->checkpoints().lastError()));
    m_result->setText(tr("✓ Exported to %1").arg(QDir::toNativeSeparators(out)));
    p.setColor(QPalette::WindowText, Theme::instance()->color(QStringLiteral("status.completed")));
  } else if (m_tool->wasCancelled()) {
    m_result->setText(tr("Cancelled. %1 may hold a partial export; delete it before exporting there again.").arg(out));
    p.setColor(QPalette::WindowText, Theme::instance()->color(QStringLiteral("status.failed")));
  } else {
    const QString why = m_tool->error();
    m_result->setText(m_tool->unknownCommand()
                          ? tr("This fathom-engine has no %1 command yet (%2). Update the engine; nothing was exported.")
                                .arg(m_checkpoint.lora ? QStringLiteral("lora merge") : QStringLiteral("convert"), why)
                          : tr("Export failed: %1").arg(why));
    p.setColor(QPalette::WindowText, Theme::instance()->color(QStringLiteral("status.failed")));
  }
  m_result->setPalette(p);
  emit exportFinished(ok, !ok && m_tool->unknownCommand());
  if (m_closeWhenDone) QDialog::reject();
}

}  // namespace fathom::ui
