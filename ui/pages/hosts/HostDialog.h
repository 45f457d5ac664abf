// Add/edit one SSH host: destination (user@host:port), how to log in (agent, key file whose
// passphrase is asked when needed, or a password asked each time — remembered only in the OS keychain, if asked), jump host, remote
// work directory and engine path, the rendezvous address other nodes use, groups.
#pragma once

#include <QDialog>

#include "cluster/hosts/HostConfig.h"

class QLineEdit;
class QComboBox;
class QLabel;

namespace fathom::ui {

class HostDialog : public QDialog {
  Q_OBJECT
 public:
  explicit HostDialog(const cluster::HostConfig& host, bool editing, QWidget* parent = nullptr);
  // The host as the fields describe it; ok=false (and problem()) when they do not.
  cluster::HostConfig host(bool* ok = nullptr) const;
  QString problem() const;

  QLineEdit* idEdit() const { return m_id; }
  QLineEdit* destinationEdit() const { return m_dest; }
  QComboBox* authCombo() const { return m_auth; }
  QLineEdit* keyEdit() const { return m_key; }
  QLineEdit* jumpEdit() const { return m_jump; }
  QLineEdit* workDirEdit() const { return m_work; }
  QLineEdit* enginePathEdit() const { return m_engine; }
  QLineEdit* rendezvousEdit() const { return m_rdzv; }
  QLineEdit* groupsEdit() const { return m_groups; }

 private:
  void validate();
  cluster::HostConfig m_base;
  QLineEdit *m_id, *m_name, *m_dest, *m_key, *m_jump, *m_work, *m_engine, *m_rdzv, *m_groups;
  QComboBox* m_auth;
  QLabel* m_problem;
};

}  // namespace fathom::ui
