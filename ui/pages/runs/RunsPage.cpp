// Runs page. Actions enable by status: Stop/Kill for queued or running runs, Resume for ended
// runs that have a checkpoint directory, Delete for ended or queued ones.
#include "ui/pages/runs/RunsPage.h"

#include <QAction>
#include <QDir>
#include <QHeaderView>
#include <QLineEdit>
#include <QMessageBox>
#include <QPlainTextEdit>
#include <QSettings>
#include <QSortFilterProxyModel>
#include <QSplitter>
#include <QTableView>
#include <QToolBar>
#include <QVBoxLayout>

#include "cluster/jobs/JobQueue.h"
#include "cluster/workspace/Workspace.h"
#include "ui/models/RunTableModel.h"

namespace fathom::ui {

RunsPage::RunsPage(cluster::Workspace* workspace, cluster::JobQueue* queue, QWidget* parent)
    : QWidget(parent), m_ws(workspace), m_queue(queue) {
  auto* layout = new QVBoxLayout(this);
  layout->setContentsMargins(0, 0, 0, 0);
  layout->setSpacing(0);
  auto* bar = new QToolBar(this);
  bar->setToolButtonStyle(Qt::ToolButtonTextOnly);
  m_open = bar->addAction(tr("Open in Monitor"), this, [this] {
    if (!selectedRun().isEmpty()) emit openInMonitor(selectedRun());
  });
  bar->addSeparator();
  m_stop = bar->addAction(tr("Stop"), this, &RunsPage::stopSelected);
  m_stop->setToolTip(tr("Checkpoint, then end the run (a queued run is cancelled)"));
  m_kill = bar->addAction(tr("Kill"), this, &RunsPage::killSelected);
  m_kill->setToolTip(tr("End the run's processes at once, without a checkpoint"));
  m_resume = bar->addAction(tr("Resume"), this, &RunsPage::resumeSelected);
  m_resume->setToolTip(tr("Continue an ended run from its latest checkpoint, in the same run directory"));
  m_duplicate = bar->addAction(tr("Duplicate"), this, &RunsPage::duplicateSelected);
  m_duplicate->setToolTip(tr("Queue a new run with the same config, overrides and devices"));
  m_delete = bar->addAction(tr("Delete…"), this, [this] { deleteSelected(true); });
  m_delete->setToolTip(tr("Remove the run from the registry and delete its run directory"));
  bar->addSeparator();
  bar->addAction(tr("Rescan workspace"), this, &RunsPage::rescan)->setToolTip(
      tr("Rebuild the registry from the run directories (the files are the truth)"));
  auto* spacer = new QWidget(bar);
  spacer->setSizePolicy(QSizePolicy::Expanding, QSizePolicy::Preferred);
  bar->addWidget(spacer);
  m_filter = new QLineEdit(bar);
  m_filter->setPlaceholderText(tr("Filter runs"));
  m_filter->setClearButtonEnabled(true);
  m_filter->setMaximumWidth(240);
  bar->addWidget(m_filter);
  layout->addWidget(bar);

  m_model = new RunTableModel(workspace, queue, this);
  m_proxy = new QSortFilterProxyModel(this);
  m_proxy->setSourceModel(m_model);
  m_proxy->setSortRole(RunTableModel::SortRole);
  m_proxy->setFilterCaseSensitivity(Qt::CaseInsensitive);
  m_proxy->setFilterKeyColumn(-1);
  connect(m_filter, &QLineEdit::textChanged, m_proxy, &QSortFilterProxyModel::setFilterFixedString);

  m_split = new QSplitter(Qt::Vertical, this);
  m_view = new QTableView(m_split);
  m_view->setModel(m_proxy);
  m_view->setSortingEnabled(true);
  m_view->sortByColumn(RunTableModel::Started, Qt::DescendingOrder);
  m_view->setSelectionBehavior(QAbstractItemView::SelectRows);
  m_view->setSelectionMode(QAbstractItemView::SingleSelection);
  m_view->setAlternatingRowColors(true);
  m_view->verticalHeader()->hide();
  m_view->setShowGrid(false);
  m_view->setWordWrap(false);
  m_view->horizontalHeader()->setStretchLastSection(true);
  m_view->horizontalHeader()->setSectionResizeMode(RunTableModel::Name, QHeaderView::Interactive);
  m_view->setColumnWidth(RunTableModel::Name, 220);
  m_view->setColumnWidth(RunTableModel::Status, 110);
  m_view->setColumnWidth(RunTableModel::Started, 150);
  m_view->setContextMenuPolicy(Qt::ActionsContextMenu);
  m_view->addActions({m_open, m_stop, m_kill, m_resume, m_duplicate, m_delete});
  m_details = new QPlainTextEdit(m_split);
  m_details->setReadOnly(true);
  m_details->setPlaceholderText(tr("Select a run to see its directory, overrides and errors."));
  m_split->addWidget(m_view);
  m_split->addWidget(m_details);
  m_split->setStretchFactor(0, 4);
  m_split->setStretchFactor(1, 1);
  layout->addWidget(m_split, 1);

  connect(m_view, &QTableView::doubleClicked, this, [this] {
    if (!selectedRun().isEmpty()) emit openInMonitor(selectedRun());
  });
  connect(m_view->selectionModel(), &QItemSelectionModel::selectionChanged, this, [this] {
    updateActions();
    updateDetails();
  });
  connect(m_model, &QAbstractItemModel::dataChanged, this, [this] {
    updateActions();
  });
  connect(m_model, &QAbstractItemModel::modelReset, this, [this] { updateActions(); updateDetails(); });
  updateActions();
}

QString RunsPage::selectedRun() const {
  const QModelIndexList rows = m_view->selectionModel()->selectedRows();
  return rows.isEmpty() ? QString() : rows.first().data(RunTableModel::RunIdRole).toString();
}

void RunsPage::selectRun(const QString& id) {
  const int row = m_model->rowOf(id);
  if (row < 0) return;
  const QModelIndex i = m_proxy->mapFromSource(m_model->index(row, 0));
  m_view->selectionModel()->select(i, QItemSelectionModel::ClearAndSelect | QItemSelectionModel::Rows);
  m_view->scrollTo(i);
}

void RunsPage::updateActions() {
  const int row = m_model->rowOf(selectedRun());
  const QString status = row >= 0 ? m_model->record(row).status : QString();
  const bool live = status == QLatin1String("running") || status == QLatin1String("queued");
  m_open->setEnabled(row >= 0);
  m_stop->setEnabled(live);
  m_kill->setEnabled(live);
  m_resume->setEnabled(row >= 0 && !live);
  m_duplicate->setEnabled(row >= 0);
  m_delete->setEnabled(row >= 0 && status != QLatin1String("running"));
}

void RunsPage::updateDetails() {
  const int row = m_model->rowOf(selectedRun());
  if (row < 0) {
    m_details->clear();
    return;
  }
  const cluster::RunRecord& r = m_model->record(row);
  QStringList lines;
  lines << tr("Run %1 (%2)").arg(r.id, r.status);
  lines << tr("Directory: %1").arg(QDir::toNativeSeparators(r.runDir));
  lines << tr("Config: %1").arg(QDir::toNativeSeparators(r.configPath));
  if (!r.overrides.isEmpty()) lines << tr("Overrides: %1").arg(r.overrides.join(QStringLiteral("  ")));
  if (!r.parentRunId.isEmpty()) lines << tr("Duplicated from: %1").arg(r.parentRunId);
  if (r.pid) lines << tr("Process: pid %1, group %2").arg(r.pid).arg(r.pgid);
  if (r.endedAt.isValid()) lines << tr("Ended: %1 with code %2").arg(r.endedAt.toLocalTime().toString(Qt::ISODate)).arg(r.exitCode);
  if (!r.error.isEmpty()) lines << QString() << tr("Error:") << r.error;
  m_details->setPlainText(lines.join(QLatin1Char('\n')));
}

void RunsPage::stopSelected() {
  const QString id = selectedRun();
  if (id.isEmpty() || !m_queue) return;
  if (!m_queue->stop(id)) QMessageBox::warning(this, tr("Stop"), tr("Could not stop %1: %2").arg(id, m_queue->lastError()));
  else emit statusMessage(tr("Stopping %1: checkpoint, then exit").arg(id));
}

void RunsPage::killSelected() {
  const QString id = selectedRun();
  if (id.isEmpty() || !m_queue) return;
  if (QMessageBox::question(this, tr("Kill"), tr("Kill %1 now? Progress since its last checkpoint is lost.").arg(id)) != QMessageBox::Yes) return;
  if (!m_queue->kill(id)) QMessageBox::warning(this, tr("Kill"), tr("Could not kill %1: %2").arg(id, m_queue->lastError()));
}

void RunsPage::resumeSelected() {
  const QString id = selectedRun();
  if (id.isEmpty() || !m_queue) return;
  if (!m_queue->resume(id)) QMessageBox::warning(this, tr("Resume"), tr("Could not resume %1: %2").arg(id, m_queue->lastError()));
  else emit statusMessage(tr("Resuming %1 from its latest checkpoint").arg(id));
}

void RunsPage::duplicateSelected() {
  const QString id = selectedRun();
  if (id.isEmpty() || !m_queue) return;
  const QString copy = m_queue->duplicate(id);
  if (copy.isEmpty()) QMessageBox::warning(this, tr("Duplicate"), tr("Could not duplicate %1: %2").arg(id, m_queue->lastError()));
  else {
    emit statusMessage(tr("Queued %1 (a copy of %2)").arg(copy, id));
    selectRun(copy);
  }
}

void RunsPage::deleteSelected(bool confirm) {
  const QString id = selectedRun();
  if (id.isEmpty() || !m_queue) return;
  const int row = m_model->rowOf(id);
  const QString dir = row >= 0 ? m_model->record(row).runDir : QString();
  if (confirm &&
      QMessageBox::question(this, tr("Delete run"),
                            tr("Delete run %1?\n\nIts directory %2 (checkpoints, logs, metrics) is deleted too. This cannot be undone.")
                                .arg(id, QDir::toNativeSeparators(dir)),
                            QMessageBox::Yes | QMessageBox::Cancel, QMessageBox::Cancel) != QMessageBox::Yes)
    return;
  if (!m_queue->remove(id, true)) QMessageBox::warning(this, tr("Delete run"), tr("Could not delete %1: %2").arg(id, m_queue->lastError()));
  else emit statusMessage(tr("Deleted %1").arg(id));
}

void RunsPage::rescan() {
  if (!m_ws) return;
  QString report;
  const int n = m_ws->rescan(&report);
  m_model->reload();
  emit statusMessage(tr("Rescanned the workspace: %n run(s) indexed", nullptr, n));
  if (!report.trimmed().isEmpty()) m_details->setPlainText(tr("Rescan of %1\n\n%2").arg(QDir::toNativeSeparators(m_ws->runsDir()), report));
}

void RunsPage::saveState(QSettings& s) const {
  s.setValue(QStringLiteral("runs/header"), m_view->horizontalHeader()->saveState());
  s.setValue(QStringLiteral("runs/split"), m_split->saveState());
}

void RunsPage::restoreState(const QSettings& s) {
  m_view->horizontalHeader()->restoreState(s.value(QStringLiteral("runs/header")).toByteArray());
  m_split->restoreState(s.value(QStringLiteral("runs/split")).toByteArray());
}

}  // namespace fathom::ui
