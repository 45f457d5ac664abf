// Checkpoints page: table + a one-line summary; double-click opens the run in the Monitor.
#include "ui/pages/checkpoints/CheckpointsPage.h"

#include <QDesktopServices>
#include <QHeaderView>
#include <QLabel>
#include <QSettings>
#include <QSortFilterProxyModel>
#include <QTableView>
#include <QToolBar>
#include <QUrl>
#include <QVBoxLayout>

#include "ui/Format.h"
#include "ui/models/CheckpointTableModel.h"

namespace fathom::ui {

CheckpointsPage::CheckpointsPage(cluster::Workspace* workspace, QWidget* parent) : QWidget(parent) {
  auto* layout = new QVBoxLayout(this);
  layout->setContentsMargins(0, 0, 0, 0);
  layout->setSpacing(0);
  m_model = new CheckpointTableModel(workspace, this);
  m_proxy = new QSortFilterProxyModel(this);
  m_proxy->setSourceModel(m_model);
  m_proxy->setSortRole(CheckpointTableModel::SortRole);

  auto* bar = new QToolBar(this);
  bar->addAction(tr("Open in Monitor"), this, [this] {
    const QModelIndexList rows = m_view->selectionModel()->selectedRows();
    if (!rows.isEmpty()) emit openRun(rows.first().data(CheckpointTableModel::RunIdRole).toString());
  });
  bar->addAction(tr("Show folder"), this, [this] {
    const QModelIndexList rows = m_view->selectionModel()->selectedRows();
    if (!rows.isEmpty()) QDesktopServices::openUrl(QUrl::fromLocalFile(rows.first().data(CheckpointTableModel::PathRole).toString()));
  });
  bar->addAction(tr("Refresh"), m_model, &CheckpointTableModel::reload);
  m_summary = new QLabel(bar);
  m_summary->setContentsMargins(12, 0, 0, 0);
  m_summary->setForegroundRole(QPalette::PlaceholderText);
  bar->addWidget(m_summary);
  layout->addWidget(bar);

  m_view = new QTableView(this);
  m_view->setModel(m_proxy);
  m_view->setSortingEnabled(true);
  m_view->sortByColumn(CheckpointTableModel::Created, Qt::DescendingOrder);
  m_view->setSelectionBehavior(QAbstractItemView::SelectRows);
  m_view->setSelectionMode(QAbstractItemView::SingleSelection);
  m_view->setAlternatingRowColors(true);
  m_view->setShowGrid(false);
  m_view->verticalHeader()->hide();
  m_view->horizontalHeader()->setStretchLastSection(true);
  m_view->setColumnWidth(CheckpointTableModel::Run, 300);
  m_view->setColumnWidth(CheckpointTableModel::Created, 150);
  layout->addWidget(m_view, 1);
  connect(m_view, &QTableView::doubleClicked, this, [this](const QModelIndex& i) {
    emit openRun(i.data(CheckpointTableModel::RunIdRole).toString());
  });
  auto updateSummary = [this] {
    qint64 bytes = 0;
    int verified = 0;
    for (int i = 0; i < m_model->rowCount(); ++i) {
      bytes += m_model->record(i).bytes;
      verified += m_model->record(i).verified;
    }
    m_summary->setText(tr("%n checkpoint(s)", nullptr, m_model->rowCount()) +
                       tr(" · %1 on disk · %2 verified").arg(formatBytes(double(bytes))).arg(verified));
  };
  connect(m_model, &QAbstractItemModel::modelReset, this, updateSummary);
  updateSummary();
}

void CheckpointsPage::saveState(QSettings& s) const {
  s.setValue(QStringLiteral("checkpoints/header"), m_view->horizontalHeader()->saveState());
}

void CheckpointsPage::restoreState(const QSettings& s) {
  m_view->horizontalHeader()->restoreState(s.value(QStringLiteral("checkpoints/header")).toByteArray());
}

}  // namespace fathom::ui
