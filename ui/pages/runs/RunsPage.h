// The Runs page: every run of the workspace in a sortable, filterable table with the job
// actions (Open in Monitor, Stop, Kill, Resume, Duplicate, Delete, Rescan workspace) and the
// selected run's details (directory, overrides, error with the tail of stderr.log).
#pragma once

#include <QWidget>

class QTableView;
class QSortFilterProxyModel;
class QPlainTextEdit;
class QLineEdit;
class QSettings;
class QSplitter;
class QAction;

namespace fathom::cluster {
class Workspace;
class JobQueue;
}  // namespace fathom::cluster

namespace fathom::ui {

class RunTableModel;

class RunsPage : public QWidget {
  Q_OBJECT
 public:
  RunsPage(cluster::Workspace* workspace, cluster::JobQueue* queue, QWidget* parent = nullptr);

  RunTableModel* model() const { return m_model; }
  QTableView* view() const { return m_view; }
  QString selectedRun() const;
  void selectRun(const QString& id);

  void saveState(QSettings& settings) const;
  void restoreState(const QSettings& settings);

  // Actions on the selected run (also the toolbar's); each reports failures to the user.
  void stopSelected();
  void killSelected();
  void resumeSelected();
  void duplicateSelected();
  void deleteSelected(bool confirm = true);
  void rescan();

 signals:
  void openInMonitor(const QString& runId);
  void statusMessage(const QString& text);

 private:
  void updateActions();
  void updateDetails();

  cluster::Workspace* m_ws;
  cluster::JobQueue* m_queue;
  RunTableModel* m_model;
  QSortFilterProxyModel* m_proxy;
  QTableView* m_view;
  QLineEdit* m_filter;
  QPlainTextEdit* m_details;
  QSplitter* m_split;
  QAction *m_open, *m_stop, *m_kill, *m_resume, *m_duplicate, *m_delete;
};

}  // namespace fathom::ui
