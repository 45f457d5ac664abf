// Keep rules for one run: "keep the N latest" and/or "keep the K best by validation loss". The
// dialog previews, for every checkpoint of the run, whether it is kept and why, and how much
// space deleting the rest frees; Apply deletes them through CheckpointRepository (the same
// safety rule as Delete: never the last whole checkpoint of a running run).
#pragma once

#include <QDialog>

#include "cluster/workspace/CheckpointRepository.h"

class QCheckBox;
class QComboBox;
class QLabel;
class QPushButton;
class QSpinBox;
class QTreeWidget;

namespace fathom::cluster {
class Workspace;
}

namespace fathom::ui {

class KeepRulesDialog : public QDialog {
  Q_OBJECT
 public:
  // `runs`: (id, label) of the runs to choose from; `runId` preselected.
  KeepRulesDialog(cluster::Workspace* workspace, const QList<QPair<QString, QString>>& runs, const QString& runId,
                  QWidget* parent = nullptr);

  QComboBox* runCombo() const { return m_run; }
  QCheckBox* latestCheck() const { return m_latestOn; }
  QSpinBox* latestSpin() const { return m_latest; }
  QCheckBox* bestCheck() const { return m_bestOn; }
  QSpinBox* bestSpin() const { return m_best; }
  QTreeWidget* preview() const { return m_preview; }
  QPushButton* applyButton() const { return m_apply; }
  const cluster::CheckpointRepository::KeepPlan& plan() const { return m_plan; }

  void setRules(bool latestOn, int latest, bool bestOn, int best);
  // Deletes what the plan removes. Returns the directories moved aside (see
  // CheckpointRepository::deleteCheckpoint) for the caller to remove off the GUI thread.
  QStringList apply(QString* error = nullptr);

 signals:
  // After apply(): how many were deleted, the trash directories, and the error ("" when none).
  void applied(int deleted, const QStringList& trash, const QString& error);

 private:
  void updatePlan();

  cluster::Workspace* m_ws;
  cluster::CheckpointRepository::KeepPlan m_plan;
  QComboBox* m_run;
  QCheckBox* m_latestOn;
  QSpinBox* m_latest;
  QCheckBox* m_bestOn;
  QSpinBox* m_best;
  QTreeWidget* m_preview;
  QLabel* m_summary;
  QPushButton* m_apply;
};

}  // namespace fathom::ui
