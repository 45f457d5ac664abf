// The Launch dialog's "Cluster" target: which SSH hosts (or a host group), how many processes per
// host, and on hosts whose probe found GPUs which of them to use (one process per ticked GPU, the
// same number on every host); builds the ClusterSpec the job queue's SSH launcher runs.
#pragma once

#include <QHash>
#include <QWidget>

#include "cluster/launch/ClusterSpec.h"

class QListWidget;
class QTreeWidget;
class QComboBox;
class QSpinBox;
class QCheckBox;

namespace fathom::cluster {
class Workspace;
}

namespace fathom::ui {

class ClusterTargetWidget : public QWidget {
  Q_OBJECT
 public:
  explicit ClusterTargetWidget(cluster::Workspace* workspace, QWidget* parent = nullptr);
  // The hosts ticked, in list order (the first holds rank 0); `devices` per host ("cpu" or GPUs).
  cluster::ClusterSpec cluster(const QStringList& devices) const;
  // "" when the choice can launch, else what is missing.
  QString problem() const;
  void reload();

  QListWidget* hostList() const { return m_hosts; }
  QComboBox* groupCombo() const { return m_group; }
  QSpinBox* processesPerHost() const { return m_procs; }
  // Per ticked host with probed GPUs: a host item whose children are its GPUs (checkable).
  QTreeWidget* gpuTree() const { return m_gpus; }
  QCheckBox* provisionCheck() const { return m_provision; }
  // known_hosts for the launch ("" = ~/.ssh/known_hosts); tests set it.
  void setKnownHostsFile(const QString& path) { m_knownHosts = path; }

 Q_SIGNALS:
  void changed();

 private:
  cluster::Workspace* m_ws;
  QString m_knownHosts;
  QListWidget* m_hosts;
  QTreeWidget* m_gpus;
  void rebuildGpus();
  void updateProcs();
  // host id -> "cuda:N" ticked, for hosts with probed GPUs.
  QHash<QString, QStringList> chosenGpus() const;
  QComboBox* m_group;
  QSpinBox* m_procs;
  QCheckBox* m_provision;
};

}  // namespace fathom::ui
