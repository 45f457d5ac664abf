// The Checkpoints page (issue 5 extends it with export, diff and resume-from-here): every
// checkpoint in the registry with its run, step, validation loss, size and verification.
#pragma once

#include <QWidget>

class QTableView;
class QSortFilterProxyModel;
class QLabel;
class QSettings;

namespace fathom::cluster {
class Workspace;
}

namespace fathom::ui {

class CheckpointTableModel;

class CheckpointsPage : public QWidget {
  Q_OBJECT
 public:
  explicit CheckpointsPage(cluster::Workspace* workspace, QWidget* parent = nullptr);
  CheckpointTableModel* model() const { return m_model; }
  QTableView* view() const { return m_view; }
  void saveState(QSettings& settings) const;
  void restoreState(const QSettings& settings);

 signals:
  void openRun(const QString& runId);

 private:
  CheckpointTableModel* m_model;
  QSortFilterProxyModel* m_proxy;
  QTableView* m_view;
  QLabel* m_summary;
};

}  // namespace fathom::ui
