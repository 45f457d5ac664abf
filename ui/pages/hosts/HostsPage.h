// The Hosts page: SSH hosts of the workspace (add, edit, remove), host groups ("clusters"), probe
// (OS, CPU, memory, disk, GPUs, interfaces, engine version) shown as a table and kept in the
// registry, provisioning with progress, preflight. SSH work runs on a worker thread; host-key
// questions (unknown key: fingerprint, accept or not; changed key: a refusal with a warning) and
// passphrases come back to the GUI thread as dialogs. Nothing secret is stored, except a password
// the user asks to remember, and that only in the OS keychain (cluster/hosts/Keychain.h).
#pragma once

#include <QWidget>

#include <atomic>
#include <functional>
#include <memory>

#include "cluster/hosts/SshSession.h"

class QTableWidget;
class QComboBox;
class QPlainTextEdit;
class QProgressBar;
class QPushButton;
class QLabel;

namespace fathom::cluster {
class Workspace;
class JobQueue;
class HostRepository;
}  // namespace fathom::cluster

namespace fathom::ui {

class HostsPage : public QWidget {
  Q_OBJECT
 public:
  HostsPage(cluster::Workspace* workspace, cluster::JobQueue* queue, QWidget* parent = nullptr);
  ~HostsPage() override;

  // known_hosts used for every connection ("" = ~/.ssh/known_hosts); tests point it elsewhere.
  void setKnownHostsFile(const QString& path) { m_knownHosts = path; }
  // Replaces the dialogs (tests): unknown host key, secrets.
  void setHostKeyPrompt(std::function<bool(const cluster::HostKeyInfo&)> f) { m_hostKeyPrompt = std::move(f); }
  void setSecretPrompt(std::function<bool(const QString&, const QString&, QByteArray*)> f) { m_secretPrompt = std::move(f); }
  // Password prompt (prompt, keychain note, password, remember); see SshCallbacks::askPassword.
  using PasswordPrompt = std::function<bool(const QString&, const QString&, QByteArray*, bool*)>;
  void setPasswordPrompt(PasswordPrompt f) { m_passwordPrompt = std::move(f); }
  // The SSH callbacks this page uses, marshalled to the GUI thread (also handed to the job queue's launcher).
  cluster::SshCallbacks callbacks();

  // Actions (the buttons call these; tests too).
  bool saveHost(const cluster::HostConfig& host);  // add or update
  bool removeHost(const QString& id);
  void probe(const QStringList& ids);              // background; probeFinished per host
  void provision(const QStringList& ids);          // engine upload (or check) per host
  // bench comm across the hosts (background); the table goes to preflightReport().
  void preflight(const QStringList& ids);
  void setPreflightSizes(const QString& sizes) { m_preflightSizes = sizes; }
  void reload();
  QStringList selectedHostIds() const;
  void selectHost(const QString& id);
  bool isBusy() const { return m_busy; }

  QTableWidget* hostTable() const { return m_table; }
  QComboBox* groupFilter() const { return m_group; }
  QPlainTextEdit* logView() const { return m_log; }
  QProgressBar* progressBar() const { return m_progress; }
  QPlainTextEdit* preflightReport() const { return m_preflightReport; }

 Q_SIGNALS:
  void probeFinished(const QString& hostId, bool ok, const QString& error);
  void provisionFinished(const QString& hostId, bool ok, const QString& error);
  void busyChanged(bool busy);
  // ok: `text` is the bandwidth table; else why it failed (naming host and rank).
  void preflightFinished(bool ok, const QString& text);

 private:
  void runInBackground(const QStringList& ids, const QString& what,
                       std::function<QString(cluster::SshSession&, const cluster::HostConfig&)> work,
                       std::function<void(const QString&, const QString&)> done);
  void appendLog(const QString& line);
  void setBusy(bool busy);
  void editSelected();
  void addGroup();

  cluster::Workspace* m_ws;
  cluster::JobQueue* m_queue;
  std::unique_ptr<cluster::HostRepository> m_repo;
  QString m_knownHosts;
  std::function<bool(const cluster::HostKeyInfo&)> m_hostKeyPrompt;
  std::function<bool(const QString&, const QString&, QByteArray*)> m_secretPrompt;
  PasswordPrompt m_passwordPrompt;
  bool m_busy = false;
  std::atomic<bool> m_cancel{false};
  QThread* m_worker = nullptr;
  QTableWidget* m_table;
  QComboBox* m_group;
  QPlainTextEdit* m_log;
  QPlainTextEdit* m_preflightReport;
  QString m_preflightSizes = QStringLiteral("64K..16M");
  QProgressBar* m_progress;
  QLabel* m_progressLabel;
  QList<QPushButton*> m_actions;
};

}  // namespace fathom::ui
