// The checkpoint browser; see CheckpointsPage.h. Widgets only: what a checkpoint is and how it is
// deleted lives in cluster::CheckpointRepository, the engine calls in cluster::EngineTool.
#include "ui/pages/checkpoints/CheckpointsPage.h"

#include <QAction>
#include <QCheckBox>
#include <QComboBox>
#include <QDesktopServices>
#include <QDir>
#include <QFile>
#include <QFileInfo>
#include <QHBoxLayout>
#include <QHeaderView>
#include <QJsonArray>
#include <QJsonDocument>
#include <QJsonObject>
#include <QLabel>
#include <QLineEdit>
#include <QLocale>
#include <QMenu>
#include <QMessageBox>
#include <QProgressBar>
#include <QPushButton>
#include <QSettings>
#include <QSplitter>
#include <QStorageInfo>
#include <QTableView>
#include <QTextBrowser>
#include <QThreadPool>
#include <QTimer>
#include <QToolBar>
#include <QUrl>
#include <QVBoxLayout>

#include <cmath>

#include "cluster/jobs/EngineTool.h"
#include "cluster/jobs/JobQueue.h"
#include "cluster/workspace/CheckpointRepository.h"
#include "cluster/workspace/RunFiles.h"
#include "cluster/workspace/Workspace.h"
#include "ui/Format.h"
#include "ui/Theme.h"
#include "ui/models/CheckpointTableModel.h"
#include "ui/pages/checkpoints/ExportDialog.h"
#include "ui/pages/checkpoints/InspectDialog.h"
#include "ui/pages/checkpoints/KeepRulesDialog.h"
#include "ui/pages/checkpoints/MergeDialog.h"
#include "ui/pages/checkpoints/ResumeDialog.h"
#include "ui/pages/designer/YamlKeyEdit.h"

namespace fathom::ui {

namespace integrity = cluster::checkpoint_integrity;

namespace {

// "1 checkpoint", "3 checkpoints" (no translations are installed, so tr() plurals would show "(s)").
QString count(qint64 n, const char* one, const char* many) {
  return QStringLiteral("%1 %2").arg(QLocale().toString(n), QString::fromLatin1(n == 1 ? one : many));
}

}  // namespace

CheckpointsPage::CheckpointsPage(cluster::Workspace* workspace, cluster::JobQueue* queue, QWidget* parent)
    : QWidget(parent), m_ws(workspace), m_queue(queue) {
  auto* layout = new QVBoxLayout(this);
  layout->setContentsMargins(0, 0, 0, 0);
  layout->setSpacing(0);
  m_model = new CheckpointTableModel(workspace, this);
  m_proxy = new CheckpointFilterModel(this);
  m_proxy->setSourceTable(m_model);

  buildActions();
  auto* bar = new QToolBar(this);
  bar->setToolButtonStyle(Qt::ToolButtonTextOnly);
  for (const char* name : {"verify", "inspect", "", "resume", "finetune", "merge", "playground", "export", "", "delete", "keep",
                           "", "folder", "monitor"}) {
    if (!*name) bar->addSeparator();
    else bar->addAction(m_actions.value(QLatin1String(name)));
  }
  layout->addWidget(bar);

  // Filter row: text, run picker, verified only; the summary on the right.
  auto* filterRow = new QWidget(this);
  auto* fl = new QHBoxLayout(filterRow);
  fl->setContentsMargins(8, 4, 8, 4);
  m_filter = new QLineEdit(filterRow);
  m_filter->setPlaceholderText(tr("Filter by run"));
  m_filter->setClearButtonEnabled(true);
  m_filter->setMinimumWidth(160);
  m_filter->setMaximumWidth(220);
  fl->addWidget(m_filter);
  m_runPicker = new QComboBox(filterRow);
  m_runPicker->setSizeAdjustPolicy(QComboBox::AdjustToMinimumContentsLengthWithIcon);
  m_runPicker->setMinimumContentsLength(30);
  m_runPicker->setToolTip(tr("Show one run's checkpoints; each entry shows the run's disk use"));
  fl->addWidget(m_runPicker);
  m_verifiedOnly = new QCheckBox(tr("Verified only"), filterRow);
  m_verifiedOnly->setToolTip(tr("Only checkpoints whose files all matched their sha256 at the last Verify"));
  fl->addWidget(m_verifiedOnly);
  fl->addSpacing(12);
  m_summary = new QLabel(filterRow);
  m_summary->setForegroundRole(QPalette::PlaceholderText);
  m_summary->setTextInteractionFlags(Qt::TextSelectableByMouse);
  // A long summary must not widen the window; what does not fit is in the tooltip.
  m_summary->setSizePolicy(QSizePolicy::Ignored, QSizePolicy::Preferred);
  fl->addWidget(m_summary, 1);
  layout->addWidget(filterRow);

  m_banner = new QLabel(this);
  m_banner->setObjectName(QStringLiteral("diskBanner"));
  m_banner->setWordWrap(true);
  m_banner->setContentsMargins(10, 6, 10, 6);
  m_banner->setAutoFillBackground(true);
  m_banner->hide();
  layout->addWidget(m_banner);

  m_split = new QSplitter(Qt::Horizontal, this);
  m_view = new QTableView(m_split);
  m_view->setModel(m_proxy);
  m_view->setSortingEnabled(true);
  m_view->sortByColumn(CheckpointTableModel::Created, Qt::DescendingOrder);
  m_view->setSelectionBehavior(QAbstractItemView::SelectRows);
  m_view->setSelectionMode(QAbstractItemView::ExtendedSelection);
  m_view->setAlternatingRowColors(true);
  m_view->setShowGrid(false);
  m_view->setWordWrap(false);
  m_view->verticalHeader()->hide();
  m_view->horizontalHeader()->setStretchLastSection(true);
  m_view->setColumnWidth(CheckpointTableModel::Run, 200);
  m_view->setColumnWidth(CheckpointTableModel::Step, 70);
  m_view->setColumnWidth(CheckpointTableModel::Tokens, 70);
  m_view->setColumnWidth(CheckpointTableModel::Created, 152);
  m_view->setColumnWidth(CheckpointTableModel::ValLoss, 70);
  m_view->setColumnWidth(CheckpointTableModel::Size, 80);
  m_view->setColumnWidth(CheckpointTableModel::Integrity, 200);
  m_view->setColumnWidth(CheckpointTableModel::Lineage, 250);
  m_view->setContextMenuPolicy(Qt::CustomContextMenu);
  m_details = new QTextBrowser(m_split);
  m_details->setOpenLinks(false);
  m_details->setMinimumWidth(220);
  m_split->addWidget(m_view);
  m_split->addWidget(m_details);
  m_split->setStretchFactor(0, 3);
  m_split->setStretchFactor(1, 1);
  m_split->setSizes({900, 320});
  layout->addWidget(m_split, 1);

  // Busy row: what runs in the background, with Cancel.
  m_busyRow = new QWidget(this);
  auto* bl = new QHBoxLayout(m_busyRow);
  bl->setContentsMargins(8, 3, 8, 3);
  m_busyLabel = new QLabel(m_busyRow);
  m_busyBar = new QProgressBar(m_busyRow);
  m_busyBar->setMaximumWidth(220);
  m_busyBar->setMaximumHeight(12);
  m_busyBar->setTextVisible(false);
  m_busyCancel = new QPushButton(tr("Cancel"), m_busyRow);
  bl->addWidget(m_busyLabel, 1);
  bl->addWidget(m_busyBar);
  bl->addWidget(m_busyCancel);
  m_busyRow->hide();
  layout->addWidget(m_busyRow);

  m_verifyTool = new cluster::EngineTool(this);
  connect(m_verifyTool, &cluster::EngineTool::finished, this, &CheckpointsPage::onVerificationFinished);
  connect(m_busyCancel, &QPushButton::clicked, this, [this] {
    m_verifyQueue.clear();
    m_verifyTool->cancel();
  });

  connect(m_filter, &QLineEdit::textChanged, m_proxy, &CheckpointFilterModel::setText);
  connect(m_verifiedOnly, &QCheckBox::toggled, m_proxy, &CheckpointFilterModel::setVerifiedOnly);
  connect(m_runPicker, &QComboBox::currentIndexChanged, this, [this] {
    m_proxy->setRunId(m_runPicker->currentData().toString());
    updateSummary();
    updateActions();
  });
  connect(m_view, &QTableView::doubleClicked, this, [this](const QModelIndex& i) {
    emit openRun(i.data(CheckpointTableModel::RunIdRole).toString());
  });
  connect(m_view->selectionModel(), &QItemSelectionModel::selectionChanged, this, [this] {
    updateActions();
    updateDetails();
    updateSummary();
  });
  connect(m_view, &QWidget::customContextMenuRequested, this, [this](const QPoint& pos) {
    QMenu menu(this);
    for (const char* name : {"verify", "inspect", "", "resume", "finetune", "merge", "playground", "export", "", "delete",
                             "keep", "", "folder", "monitor"}) {
      if (!*name) menu.addSeparator();
      else menu.addAction(m_actions.value(QLatin1String(name)));
    }
    menu.exec(m_view->viewport()->mapToGlobal(pos));
  });
  // A reload (a checkpoint saved by a live run, a verification result) resets the model; the
  // user's selection survives it.
  connect(m_model, &QAbstractItemModel::modelAboutToBeReset, this, [this] {
    m_keepSelection.clear();
    for (const auto& c : selectedCheckpoints()) m_keepSelection << c.path;
  });
  connect(m_model, &QAbstractItemModel::modelReset, this, [this] {
    if (!m_keepSelection.isEmpty()) {
      QItemSelection sel;
      for (const QString& path : std::as_const(m_keepSelection)) {
        const int row = m_model->rowOf(path);
        if (row < 0) continue;
        const QModelIndex p = m_proxy->mapFromSource(m_model->index(row, 0));
        if (p.isValid()) sel.select(p, p);
      }
      m_view->selectionModel()->select(sel, QItemSelectionModel::ClearAndSelect | QItemSelectionModel::Rows);
      m_keepSelection.clear();
    }
    fillRunPicker();
    updateSummary();
    updateActions();
    updateDetails();
    refreshDiskSpace();
  });

  m_diskTimer = new QTimer(this);
  m_diskTimer->setInterval(15000);
  connect(m_diskTimer, &QTimer::timeout, this, &CheckpointsPage::refreshDiskSpace);
  m_diskTimer->start();
  fillRunPicker();
  refreshDiskSpace();
  updateActions();
  updateDetails();
}

CheckpointsPage::~CheckpointsPage() = default;

QAction* CheckpointsPage::action(const QString& name) const { return m_actions.value(name); }

QString CheckpointsPage::engineBinary() const {
  if (!m_engineBinary.isEmpty()) return m_engineBinary;
  return m_queue ? m_queue->engineBinary() : QString();
}

void CheckpointsPage::buildActions() {
  auto add = [this](const QString& name, const QString& text, const QString& tip, auto slot) {
    auto* a = new QAction(text, this);
    a->setObjectName(name);
    a->setToolTip(tip);
    a->setStatusTip(tip);
    connect(a, &QAction::triggered, this, slot);
    m_actions.insert(name, a);
    return a;
  };
  add(QStringLiteral("verify"), tr("Verify"),
      tr("Hash every file of the selected checkpoints and compare with MANIFEST.json (runs in the background)"),
      [this] { verifySelected(); });
  add(QStringLiteral("inspect"), tr("Inspect…"),
      tr("Tensors of the checkpoint's model.safetensors: names, dtypes, shapes, sizes (header only)"),
      [this] { inspectSelected(); });
  add(QStringLiteral("resume"), tr("Resume from here…"),
      tr("Start a new run that continues training from this checkpoint, with config overrides"),
      [this] { resumeSelected(); });
  add(QStringLiteral("finetune"), tr("Fine-tune from here"),
      tr("Open the Fine-tune page (LoRA, issue #6) with this checkpoint as the base; on a LoRA adapter, with the "
         "adapter's base and lora.adapter set to it, so training continues from that adapter"),
      [this] { fineTuneSelected(); });
  add(QStringLiteral("merge"), tr("Merge into base…"),
      tr("Fold this LoRA adapter into its base (fathom-engine lora merge): a new run in this workspace, or a Hugging "
         "Face folder"),
      [this] { mergeSelected(); });
  add(QStringLiteral("playground"), tr("Open in Playground"),
      tr("Serve this checkpoint (a LoRA adapter merged into its base on load) with fathom-engine serve and chat with it"),
      [this] {
        if (auto c = current()) emit openInPlayground(c->path);
      });
  add(QStringLiteral("export"), tr("Export to Hugging Face…"),
      tr("Convert to a directory transformers loads with from_pretrained (fathom-engine convert --to hf; a LoRA adapter "
         "is exported merged into its base, by lora merge --to hf)"),
      [this] { exportSelected(); });
  add(QStringLiteral("delete"), tr("Delete…"),
      tr("Delete the selected checkpoints from disk (asks first; never the last whole checkpoint of a running run)"),
      [this] { deleteSelected(); });
  add(QStringLiteral("keep"), tr("Keep rules…"),
      tr("Keep the N latest and/or the K best by validation loss of a run; preview, then delete the rest"),
      [this] { openKeepRules(); });
  add(QStringLiteral("folder"), tr("Show folder"), tr("Open the checkpoint directory in the file manager"), [this] {
    if (auto c = current()) QDesktopServices::openUrl(QUrl::fromLocalFile(c->path));
  });
  add(QStringLiteral("monitor"), tr("Open run in Monitor"), tr("Charts of the run that saved this checkpoint"), [this] {
    if (auto c = current()) emit openRun(c->runId);
  });
  m_actions.value(QStringLiteral("delete"))->setShortcut(QKeySequence::Delete);
  m_actions.value(QStringLiteral("delete"))->setShortcutContext(Qt::WidgetWithChildrenShortcut);
  addAction(m_actions.value(QStringLiteral("delete")));
}

// ---- selection ------------------------------------------------------------------------------------

bool CheckpointsPage::selectCheckpoint(const QString& path) {
  const int row = m_model->rowOf(path);
  if (row < 0) return false;
  const QModelIndex p = m_proxy->mapFromSource(m_model->index(row, 0));
  if (!p.isValid()) return false;
  m_view->selectionModel()->select(p, QItemSelectionModel::ClearAndSelect | QItemSelectionModel::Rows);
  m_view->selectionModel()->setCurrentIndex(p, QItemSelectionModel::NoUpdate);
  m_view->scrollTo(p);
  return true;
}

QList<cluster::CheckpointRecord> CheckpointsPage::selectedCheckpoints() const {
  QList<cluster::CheckpointRecord> out;
  for (const QModelIndex& i : m_view->selectionModel()->selectedRows()) {
    const int row = m_proxy->mapToSource(i).row();
    if (row >= 0 && row < m_model->rowCount()) out.append(m_model->record(row));
  }
  std::sort(out.begin(), out.end(), [](const auto& a, const auto& b) { return a.runId != b.runId ? a.runId < b.runId : a.step < b.step; });
  return out;
}

std::optional<cluster::CheckpointRecord> CheckpointsPage::current() const {
  const auto sel = selectedCheckpoints();
  if (sel.size() != 1) return std::nullopt;
  return sel.first();
}

void CheckpointsPage::updateActions() {
  const auto sel = selectedCheckpoints();
  const bool one = sel.size() == 1;
  const bool whole = one && sel.first().isWhole();
  m_actions.value(QStringLiteral("verify"))->setEnabled(!sel.isEmpty());
  m_actions.value(QStringLiteral("inspect"))->setEnabled(one);
  m_actions.value(QStringLiteral("resume"))->setEnabled(whole && m_queue);
  m_actions.value(QStringLiteral("finetune"))->setEnabled(whole);
  m_actions.value(QStringLiteral("export"))->setEnabled(whole);
  m_actions.value(QStringLiteral("merge"))->setEnabled(whole && sel.first().lora);
  m_actions.value(QStringLiteral("playground"))->setEnabled(whole);
  m_actions.value(QStringLiteral("delete"))->setEnabled(!sel.isEmpty());
  m_actions.value(QStringLiteral("keep"))->setEnabled(m_model->rowCount() > 0);
  m_actions.value(QStringLiteral("folder"))->setEnabled(one);
  m_actions.value(QStringLiteral("monitor"))->setEnabled(one);
}

// ---- summary, details, run picker, disk guard -------------------------------------------------------

void CheckpointsPage::fillRunPicker() {
  const QString keep = m_runPicker->currentData().toString();
  QHash<QString, QPair<int, qint64>> perRun;
  for (const auto& c : m_model->records()) {
    auto& p = perRun[c.runId];
    ++p.first;
    p.second += c.bytes;
  }
  QSignalBlocker block(m_runPicker);
  m_runPicker->clear();
  m_runPicker->addItem(tr("All runs"), QString());
  for (const QString& id : m_model->runIds()) {
    const auto p = perRun.value(id);
    m_runPicker->addItem(QStringLiteral("%1 — %2, %3").arg(m_model->runLabel(id), count(p.first, "checkpoint", "checkpoints"), formatBytes(double(p.second))), id);
  }
  const int i = m_runPicker->findData(keep);
  m_runPicker->setCurrentIndex(i < 0 ? 0 : i);
  m_proxy->setRunId(m_runPicker->currentData().toString());
}

void CheckpointsPage::updateSummary() {
  qint64 total = 0;
  int verified = 0, damaged = 0;
  QSet<QString> runs;
  for (const auto& c : m_model->records()) {
    total += c.bytes;
    verified += !c.isDamaged() && c.integrity == integrity::verified;
    damaged += c.isDamaged();
    runs.insert(c.runId);
  }
  QStringList parts;
  parts << tr("%1 in %2").arg(count(m_model->rowCount(), "checkpoint", "checkpoints"), count(runs.size(), "run", "runs"))
        << tr("%1 on disk").arg(formatBytes(double(total)));
  // Free space right after the total: it matters more than the per-run detail when space is short.
  if (m_total > 0)
    parts << tr("%1 free of %2 (%3)").arg(formatBytes(double(m_free)), formatBytes(double(m_total)),
                                          formatFraction(double(m_free) / double(m_total), 0));
  if (verified) parts << tr("%1 verified").arg(verified);
  if (damaged) parts << tr("%1 damaged").arg(damaged);
  // Per-run use for the run in focus (the picker's, else the selection's).
  QString focus = m_runPicker->currentData().toString();
  if (focus.isEmpty()) {
    const auto sel = selectedCheckpoints();
    if (!sel.isEmpty()) focus = sel.first().runId;
  }
  if (!focus.isEmpty()) {
    qint64 bytes = 0;
    int n = 0;
    for (const auto& c : m_model->records())
      if (c.runId == focus) {
        bytes += c.bytes;
        ++n;
      }
    parts << QStringLiteral("%1: %2, %3").arg(m_model->runLabel(focus), count(n, "checkpoint", "checkpoints"), formatBytes(double(bytes)));
  }
  m_summary->setText(parts.join(QStringLiteral(" · ")));
  m_summary->setToolTip(parts.join(QLatin1Char('\n')));
}

QString CheckpointsPage::diskWarning(qint64 freeBytes, qint64 totalBytes, qint64 latestBytes, const QString& runLabel,
                                     const QString& volume) {
  if (freeBytes < 0 || totalBytes <= 0) return {};
  const QString where = volume.isEmpty() ? tr("the workspace volume") : volume;
  if (latestBytes > 0 && freeBytes < 2 * latestBytes)
    return tr("⚠ Only %1 free on %2: less than twice the latest checkpoint of %3 (%4), so its next checkpoint may not "
              "fit. Delete old checkpoints (Keep rules) or free space before it saves again.")
        .arg(formatBytes(double(freeBytes)), where, runLabel, formatBytes(double(latestBytes)));
  if (double(freeBytes) < 0.05 * double(totalBytes))
    return tr("⚠ Only %1 free on %2 (%3 of %4). Checkpoints may soon fail to save; delete old ones (Keep rules) or "
              "free space.")
        .arg(formatBytes(double(freeBytes)), where, formatFraction(double(freeBytes) / double(totalBytes)),
             formatBytes(double(totalBytes)));
  return {};
}

void CheckpointsPage::setDiskSpaceForTesting(qint64 freeBytes, qint64 totalBytes) {
  m_freeOverride = freeBytes;
  m_totalOverride = totalBytes;
  refreshDiskSpace();
}

void CheckpointsPage::refreshDiskSpace() {
  if (m_freeOverride >= 0) {
    m_free = m_freeOverride;
    m_total = m_totalOverride;
    m_volume = m_ws ? m_ws->dir() : QString();
  } else if (m_ws && !m_ws->dir().isEmpty()) {
    QStorageInfo si(m_ws->dir());
    si.refresh();
    m_free = si.isValid() ? si.bytesAvailable() : -1;
    m_total = si.isValid() ? si.bytesTotal() : -1;
    m_volume = si.isValid() ? QDir::toNativeSeparators(si.rootPath()) : QString();
  }
  // The next checkpoint of a live run is about as big as its latest; with no run live, the
  // biggest latest checkpoint stands for the next resume.
  qint64 latest = 0;
  QString who;
  bool anyLive = false;
  QHash<QString, cluster::CheckpointRecord> newest;
  for (const auto& c : m_model->records())
    if (!newest.contains(c.runId) || c.step > newest.value(c.runId).step) newest.insert(c.runId, c);
  for (auto it = newest.begin(); it != newest.end(); ++it) {
    const QString status = m_model->run(it.key()).status;
    const bool live = status == cluster::run_status::running || status == cluster::run_status::queued;
    if (live && !anyLive) {
      anyLive = true;
      latest = 0;
    }
    if ((live || !anyLive) && it->bytes > latest) {
      latest = it->bytes;
      who = m_model->runLabel(it.key());
    }
  }
  const QString warning = diskWarning(m_free, m_total, latest, who, m_volume);
  m_banner->setText(warning);
  m_banner->setVisible(!warning.isEmpty());
  if (!warning.isEmpty()) {
    QPalette p = m_banner->palette();
    QColor bg = Theme::instance()->statusColor(QStringLiteral("failed"));
    bg.setAlpha(40);
    p.setColor(QPalette::Window, bg);
    m_banner->setPalette(p);
  }
  updateSummary();
}

void CheckpointsPage::updateDetails() {
  const auto c = current();
  if (!c) {
    const int n = int(selectedCheckpoints().size());
    m_details->setHtml(n > 1 ? tr("<p>%1 checkpoints selected.</p>").arg(n)
                             : tr("<p style='color:gray'>Select a checkpoint to see its files, integrity and lineage.</p>"));
    return;
  }
  auto esc = [](const QString& s) { return s.toHtmlEscaped(); };
  QString h;
  h += QStringLiteral("<h3>%1 · step %2</h3>").arg(esc(m_model->runLabel(c->runId))).arg(QLocale().toString(c->step));
  h += QStringLiteral("<p><code>%1</code></p>").arg(esc(QDir::toNativeSeparators(c->path)));
  h += QStringLiteral("<table cellspacing=3>");
  auto row = [&](const QString& k, const QString& v) { h += QStringLiteral("<tr><td><b>%1</b></td><td>%2</td></tr>").arg(k, v); };
  row(tr("Created"), c->createdAt.isValid() ? esc(QLocale().toString(c->createdAt.toLocalTime(), QLocale::LongFormat)) : QString());
  row(tr("Tokens"), c->tokens > 0 ? QLocale().toString(c->tokens) : tr("—"));
  row(tr("Val loss"), std::isnan(c->valLoss) ? tr("—") : formatValue(c->valLoss));
  row(tr("Size"), formatBytes(double(c->bytes)));
  row(tr("Integrity"), esc(CheckpointTableModel::integrityText(*c)));
  if (c->lora) {
    row(tr("Kind"), c->loraR > 0 ? tr("LoRA adapter, r %1, lora_alpha %2").arg(c->loraR).arg(c->loraAlpha) : tr("LoRA adapter"));
    row(tr("Base"), c->loraBase.isEmpty() ? tr("not recorded") : QStringLiteral("<code>%1</code>").arg(esc(QDir::toNativeSeparators(c->loraBase))));
    row(tr("Targets"), c->loraTargets.isEmpty() ? tr("—") : esc(c->loraTargets.join(QStringLiteral(", "))));
  } else if (!c->mergedFrom.isEmpty()) {
    row(tr("Kind"), tr("merged model (base + adapter)"));
  }
  const QString latest = cluster::CheckpointRepository::latestName(QFileInfo(c->path).absolutePath());
  row(tr("Latest"), latest == QFileInfo(c->path).fileName() ? tr("yes (named by <code>latest</code>)") : tr("no"));
  h += QStringLiteral("</table>");
  h += QStringLiteral("<p>%1</p>").arg(esc(CheckpointTableModel::integrityTip(*c)).replace(QLatin1Char('\n'), QStringLiteral("<br>")));
  h += QStringLiteral("<h4>%1</h4><p>%2</p>").arg(tr("Lineage"), esc(CheckpointTableModel::lineageTip(*c)).replace(QLatin1Char('\n'), QStringLiteral("<br>")));
  // The files, from MANIFEST.json.
  QFile mf(QDir(c->path).filePath(QStringLiteral("MANIFEST.json")));
  if (mf.open(QIODevice::ReadOnly)) {
    const QJsonArray files = QJsonDocument::fromJson(mf.readAll()).object().value(QStringLiteral("files")).toArray();
    if (!files.isEmpty()) {
      h += QStringLiteral("<h4>%1</h4><table cellspacing=3>").arg(tr("Files"));
      for (const QJsonValue& v : files) {
        const QJsonObject f = v.toObject();
        h += QStringLiteral("<tr><td>%1</td><td align=right>%2</td></tr>")
                 .arg(esc(f.value(QStringLiteral("name")).toString()), formatBytes(f.value(QStringLiteral("bytes")).toDouble()));
      }
      h += QStringLiteral("</table>");
    }
  }
  m_details->setHtml(h);
}

// ---- Verify ---------------------------------------------------------------------------------------

void CheckpointsPage::verifySelected() { verify(selectedCheckpoints()); }

void CheckpointsPage::verify(const QList<cluster::CheckpointRecord>& checkpoints) {
  for (const auto& c : checkpoints) {
    bool queued = m_verifying.path == c.path && m_verifyTool->isRunning();
    for (const auto& q : m_verifyQueue) queued |= q.path == c.path;
    if (!queued) {
      m_verifyQueue.append(c);
      ++m_verifyTotal;
    }
  }
  if (!m_verifyTool->isRunning()) startNextVerification();
}

bool CheckpointsPage::isVerifying() const { return m_verifyTool->isRunning() || !m_verifyQueue.isEmpty(); }

void CheckpointsPage::startNextVerification() {
  if (m_verifyQueue.isEmpty()) {
    m_busyRow->hide();
    m_verifyTotal = 0;
    return;
  }
  m_verifying = m_verifyQueue.takeFirst();
  m_verifyTool->setEngineBinary(engineBinary());
  const int done = m_verifyTotal - int(m_verifyQueue.size()) - 1;
  m_busyLabel->setText(tr("Verifying %1 step %2 (sha256 of %3)… %4 of %5")
                           .arg(m_model->runLabel(m_verifying.runId))
                           .arg(m_verifying.step)
                           .arg(formatBytes(double(m_verifying.bytes)))
                           .arg(done + 1)
                           .arg(m_verifyTotal));
  m_busyBar->setRange(0, m_verifyTotal > 1 ? m_verifyTotal : 0);
  m_busyBar->setValue(done);
  m_busyRow->show();
  if (!m_verifyTool->start({QStringLiteral("inspect"), m_verifying.path, QStringLiteral("--json")})) {
    const QString err = m_verifyTool->error();
    emit statusMessage(tr("Cannot verify: %1").arg(err));
    emit verificationFinished(m_verifying.path, QString(), err);
    m_verifyQueue.clear();
    m_busyRow->hide();
    m_verifyTotal = 0;
  }
}

void CheckpointsPage::onVerificationFinished(bool) {
  const cluster::CheckpointRecord c = m_verifying;
  // inspect exits 1 for a damaged checkpoint but still answers with its report.
  const QJsonObject r = QJsonDocument::fromJson(m_verifyTool->standardOutput()).object();
  QString status, error;
  if (m_verifyTool->wasCancelled()) {
    error = tr("cancelled");
  } else if (r.value(QStringLiteral("kind")).toString() != QLatin1String("checkpoint")) {
    error = m_verifyTool->error().isEmpty() ? tr("fathom-engine inspect gave no report") : m_verifyTool->error();
  } else {
    QStringList bad;
    for (const QJsonValue& v : r.value(QStringLiteral("files")).toArray()) {
      const QJsonObject f = v.toObject();
      const QString st = f.value(QStringLiteral("status")).toString();
      if (st == QLatin1String("ok")) continue;
      const QString detail = f.value(QStringLiteral("detail")).toString();
      bad << QStringLiteral("%1: %2%3").arg(f.value(QStringLiteral("name")).toString(), st,
                                            detail.isEmpty() ? QString() : QStringLiteral(" (%1)").arg(detail));
    }
    const bool ok = r.value(QStringLiteral("verified")).toBool() && bad.isEmpty();
    if (!ok && bad.isEmpty()) bad << r.value(QStringLiteral("error")).toString();
    status = ok ? integrity::verified : integrity::damaged;
    if (m_ws) m_ws->checkpoints().setIntegrity(c.runId, c.path, status, bad.join(QLatin1Char('\n')));
    if (ok) {
      emit statusMessage(tr("%1 step %2: every file matches its sha256").arg(m_model->runLabel(c.runId)).arg(c.step));
    } else {
      emit statusMessage(tr("%1 step %2 is damaged: %3").arg(m_model->runLabel(c.runId)).arg(c.step).arg(bad.join(QStringLiteral("; "))));
      showMessage(QMessageBox::Warning, tr("Damaged checkpoint"),
                  tr("%1 step %2 is damaged and cannot be resumed from safely:\n\n%3\n\nDelete it, or resume from another "
                     "checkpoint.")
                      .arg(m_model->runLabel(c.runId))
                      .arg(c.step)
                      .arg(bad.join(QLatin1Char('\n'))));
    }
  }
  if (!error.isEmpty()) emit statusMessage(tr("Could not verify %1: %2").arg(c.path, error));
  emit verificationFinished(c.path, status, error);
  startNextVerification();
}

// ---- Inspect, Resume, Fine-tune, Export -----------------------------------------------------------

InspectDialog* CheckpointsPage::inspectSelected() {
  const auto c = current();
  if (!c) return nullptr;
  if (m_inspect) m_inspect->close();
  auto* d = new InspectDialog(QDir(c->path).filePath(QStringLiteral("model.safetensors")),
                              tr("%1 step %2").arg(m_model->runLabel(c->runId)).arg(c->step), engineBinary(), this);
  d->setAttribute(Qt::WA_DeleteOnClose);
  m_inspect = d;
  d->show();
  return d;
}

ResumeDialog* CheckpointsPage::resumeSelected() {
  const auto c = current();
  if (!c || !m_queue) return nullptr;
  if (m_resume) m_resume->close();
  auto* d = new ResumeDialog(*c, m_model->run(c->runId), m_queue, this);
  d->setAttribute(Qt::WA_DeleteOnClose);
  m_resume = d;
  connect(d, &QDialog::accepted, this, [this, d] {
    emit statusMessage(tr("Launched %1").arg(d->launchedRunId()));
    emit runLaunched(d->launchedRunId());
  });
  d->open();
  return d;
}

QString CheckpointsPage::fineTuneYaml(const cluster::CheckpointRecord& c, const cluster::RunRecord& run) {
  QString source = run.configPath;
  if (source.isEmpty() || !QFileInfo(source).isFile()) source = QDir(run.runDir).filePath(cluster::run_files::configFile());
  QString text;
  QFile f(source);
  if (f.open(QIODevice::ReadOnly)) text = QString::fromUtf8(f.readAll());
  if (text.trimmed().isEmpty()) text = QStringLiteral("extends: demo\n");
  const QString name = (run.name.isEmpty() ? c.runId : run.name) + QStringLiteral("-ft");
  auto quoted = [](const QString& s) {
    return QLatin1Char('"') + QString(s).replace(QLatin1Char('\\'), QStringLiteral("\\\\")).replace(QLatin1Char('"'), QStringLiteral("\\\"")) + QLatin1Char('"');
  };
  // The run's --set overrides were part of what it trained with; the fine-tune keeps them.
  if (source == run.configPath)
    for (const QString& o : run.overrides) {
      const int eq = o.indexOf(QLatin1Char('='));
      if (eq > 0) text = YamlKeyEdit::setValue(text, o.left(eq).trimmed(), o.mid(eq + 1).trimmed());
    }
  text = YamlKeyEdit::setValue(text, QStringLiteral("run.name"), quoted(name));
  if (c.lora) {
    // An adapter is continued on its own base: the fine-tune's config already names it (lora.base).
    text = YamlKeyEdit::setValue(text, QStringLiteral("lora.enabled"), QStringLiteral("true"));
    if (!c.loraBase.isEmpty()) text = YamlKeyEdit::setValue(text, QStringLiteral("lora.base"), quoted(c.loraBase));
    text = YamlKeyEdit::setValue(text, QStringLiteral("lora.adapter"), quoted(c.path));
    return QStringLiteral(
               "# Continue the LoRA fine-tune %1 from its adapter at step %2 (%3).\n"
               "# lora.adapter loads that adapter (its rank and targets) onto lora.base; training starts at step 0\n"
               "# with a fresh optimizer. Based on %4.\n")
               .arg(run.name.isEmpty() ? c.runId : run.name)
               .arg(c.step)
               .arg(c.path, source) +
           text;
  }
  text = YamlKeyEdit::setValue(text, QStringLiteral("model.init_from"), quoted(c.path));
  const QString header = QStringLiteral(
                             "# Fine-tune from %1, step %2 (%3).\n"
                             "# model.init_from loads that checkpoint's weights; training starts at step 0 with a fresh\n"
                             "# optimizer. For a LoRA fine-tune use the Fine-tune page. Based on %4.\n")
                             .arg(run.name.isEmpty() ? c.runId : run.name)
                             .arg(c.step)
                             .arg(c.path, source);
  return header + text;
}

void CheckpointsPage::fineTuneSelected() {
  const auto c = current();
  if (!c) return;
  const cluster::RunRecord run = m_model->run(c->runId);
  const QString who = run.name.isEmpty() ? c->runId : run.name;
  emit fineTuneRequested(fineTuneYaml(*c, run), c->lora ? tr("Continue the LoRA adapter of %1 from step %2").arg(who).arg(c->step)
                                                        : tr("Fine-tune of %1 from step %2").arg(who).arg(c->step));
}

ExportDialog* CheckpointsPage::exportSelected() {
  const auto c = current();
  if (!c) return nullptr;
  if (m_export && !m_export->isRunning()) m_export->close();
  if (m_export) {
    m_export->raise();
    return m_export;
  }
  auto* d = new ExportDialog(*c, m_ws, engineBinary(), this);
  d->setAttribute(Qt::WA_DeleteOnClose);
  m_export = d;
  connect(d, &ExportDialog::exportFinished, this, [this](bool ok, bool) {
    emit statusMessage(ok ? tr("Export finished") : tr("Export failed"));
  });
  d->show();
  return d;
}

MergeDialog* CheckpointsPage::mergeSelected() {
  const auto c = current();
  if (!c || !c->lora || !c->isWhole()) return nullptr;
  if (m_merge && !m_merge->isRunning()) m_merge->close();
  if (m_merge) {
    m_merge->raise();
    return m_merge;
  }
  auto* d = new MergeDialog(*c, m_ws, engineBinary(), this);
  d->setAttribute(Qt::WA_DeleteOnClose);
  m_merge = d;
  connect(d, &MergeDialog::mergeFinished, this, [this](bool ok, const QString& output) {
    if (!ok) {
      emit statusMessage(tr("Merge failed"));
      return;
    }
    emit statusMessage(tr("Merged into %1").arg(output));
    // The merged run's checkpoint, selected, so its lineage shows in the details.
    if (m_ws && m_ws->runs().get(output)) {
      const auto merged = m_ws->checkpoints().listForRun(output);
      if (!merged.isEmpty()) selectCheckpoint(merged.last().path);
    }
  });
  d->show();
  return d;
}

// ---- Delete and keep rules ------------------------------------------------------------------------

QMessageBox* CheckpointsPage::showMessage(int icon, const QString& title, const QString& text) {
  if (m_message) m_message->close();
  auto* box = new QMessageBox(static_cast<QMessageBox::Icon>(icon), title, text, QMessageBox::Ok, this);
  box->setAttribute(Qt::WA_DeleteOnClose);
  m_message = box;
  box->open();
  return box;
}

QMessageBox* CheckpointsPage::deleteSelected() {
  const auto sel = selectedCheckpoints();
  if (sel.isEmpty() || !m_ws) return nullptr;
  const QString refusal = m_ws->checkpoints().deletionRefusal(sel);
  if (!refusal.isEmpty()) {
    emit statusMessage(refusal);
    return showMessage(QMessageBox::Warning, tr("Cannot delete"), refusal);
  }
  qint64 bytes = 0;
  QStringList names;
  for (const auto& c : sel) {
    bytes += c.bytes;
    if (names.size() < 8) names << tr("%1 step %2 (%3)").arg(m_model->runLabel(c.runId)).arg(c.step).arg(formatBytes(double(c.bytes)));
  }
  if (sel.size() > names.size()) names << tr("… and %1 more").arg(sel.size() - names.size());
  if (m_message) m_message->close();
  auto* box = new QMessageBox(QMessageBox::Question, tr("Delete checkpoints"),
                              tr("Delete %1, %2 in all, from disk?\n\n%3\n\nThis cannot be undone.")
                                  .arg(count(sel.size(), "checkpoint", "checkpoints"), formatBytes(double(bytes)),
                                       names.join(QLatin1Char('\n'))),
                              QMessageBox::Yes | QMessageBox::Cancel, this);
  box->setDefaultButton(QMessageBox::Cancel);
  box->button(QMessageBox::Yes)->setText(tr("Delete"));
  box->setAttribute(Qt::WA_DeleteOnClose);
  m_message = box;
  connect(box, &QMessageBox::finished, this, [this, sel](int result) {
    if (result != QMessageBox::Yes) return;
    QString err;
    if (!deleteCheckpoints(sel, &err)) showMessage(QMessageBox::Warning, tr("Delete checkpoints"), err);
  });
  box->open();
  return box;
}

bool CheckpointsPage::deleteCheckpoints(const QList<cluster::CheckpointRecord>& sel, QString* error) {
  if (!m_ws) return false;
  const QString refusal = m_ws->checkpoints().deletionRefusal(sel);
  if (!refusal.isEmpty()) {
    if (error) *error = refusal;
    emit statusMessage(refusal);
    return false;
  }
  QStringList trash, gone;
  qint64 freed = 0;
  QString err;
  for (const auto& c : sel) {
    QString t;
    if (!m_ws->checkpoints().deleteCheckpoint(c, &t)) {
      err = m_ws->checkpoints().lastError();
      break;
    }
    if (!t.isEmpty()) trash << t;
    gone << c.path;
    freed += c.bytes;
  }
  removeTrashLater(trash);
  if (!gone.isEmpty()) {
    emit statusMessage(tr("Deleted %1, %2 freed").arg(count(gone.size(), "checkpoint", "checkpoints"), formatBytes(double(freed))));
    emit deleted(gone);
  }
  if (error) *error = err;
  return err.isEmpty();
}

void CheckpointsPage::removeTrashLater(const QStringList& dirs) {
  // Removing gigabytes of files can take a while on some file systems: not on the GUI thread.
  for (const QString& d : dirs)
    QThreadPool::globalInstance()->start([d] { cluster::CheckpointRepository::removeTree(d); });
}

KeepRulesDialog* CheckpointsPage::openKeepRules() {
  if (!m_ws) return nullptr;
  QList<QPair<QString, QString>> runs;
  for (const QString& id : m_model->runIds()) runs.append({id, m_model->runLabel(id)});
  QString runId = m_runPicker->currentData().toString();
  if (runId.isEmpty()) {
    const auto sel = selectedCheckpoints();
    if (!sel.isEmpty()) runId = sel.first().runId;
  }
  if (m_keep) m_keep->close();
  auto* d = new KeepRulesDialog(m_ws, runs, runId, this);
  d->setAttribute(Qt::WA_DeleteOnClose);
  m_keep = d;
  connect(d, &KeepRulesDialog::applied, this, [this](int n, const QStringList& trash, const QString& err) {
    removeTrashLater(trash);
    if (n > 0) emit statusMessage(tr("Keep rules deleted %1").arg(count(n, "checkpoint", "checkpoints")));
    if (!err.isEmpty()) showMessage(QMessageBox::Warning, tr("Keep rules"), err);
  });
  d->open();
  return d;
}

// ---- state ----------------------------------------------------------------------------------------

void CheckpointsPage::saveState(QSettings& s) const {
  s.setValue(QStringLiteral("checkpoints/header2"), m_view->horizontalHeader()->saveState());
  s.setValue(QStringLiteral("checkpoints/split"), m_split->saveState());
}

void CheckpointsPage::restoreState(const QSettings& s) {
  // header2: the columns changed with issue 5; an older saved header would misplace them.
  m_view->horizontalHeader()->restoreState(s.value(QStringLiteral("checkpoints/header2")).toByteArray());
  m_split->restoreState(s.value(QStringLiteral("checkpoints/split")).toByteArray());
}

}  // namespace fathom::ui
