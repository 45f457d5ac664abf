// HostsPage: a table over HostRepository plus background SSH work (QThread::create), one host at a
// time, reporting to a log and a progress bar.
#include "ui/pages/hosts/HostsPage.h"

#include <QCheckBox>
#include <QComboBox>
#include <QDialog>
#include <QDialogButtonBox>
#include <QFontDatabase>
#include <QHBoxLayout>
#include <QHeaderView>
#include <QInputDialog>
#include <QLabel>
#include <QLineEdit>
#include <QMessageBox>
#include <QPlainTextEdit>
#include <QProgressBar>
#include <QPushButton>
#include <QSplitter>
#include <QTableWidget>
#include <QThread>
#include <QVBoxLayout>

#include "cluster/hosts/HostProbe.h"
#include "cluster/hosts/Keychain.h"
#include "cluster/hosts/Provisioner.h"
#include "cluster/jobs/JobQueue.h"
#include "cluster/workspace/HostRepository.h"
#include "cluster/workspace/Workspace.h"
#include "ui/Format.h"
#include "ui/pages/hosts/HostDialog.h"

#include <QPointer>
#include <QTime>

#include <mutex>

namespace fathom::ui {

using namespace fathom::cluster;

namespace {
enum Col { ColId, ColAddress, ColGroups, ColOs, ColCpu, ColMemory, ColDisk, ColGpus, ColNet, ColEngine, ColProbed, ColCount };
}

HostsPage::HostsPage(Workspace* workspace, JobQueue* queue, QWidget* parent)
    : QWidget(parent), m_ws(workspace), m_queue(queue) {
  if (m_ws && m_ws->isOpen()) m_repo = std::make_unique<HostRepository>(*m_ws);
  auto* layout = new QVBoxLayout(this);
  auto* bar = new QHBoxLayout;
  auto button = [&](const QString& name, const QString& text, const QString& tip, auto slot) {
    auto* b = new QPushButton(text, this);
    b->setObjectName(name);
    b->setToolTip(tip);
    connect(b, &QPushButton::clicked, this, slot);
    bar->addWidget(b);
    m_actions << b;
    return b;
  };
  button(QStringLiteral("addHost"), tr("Add…"), tr("Add an SSH host"), [this] {
    HostDialog d(HostConfig{}, false, this);
    if (d.exec() == QDialog::Accepted) saveHost(d.host());
  });
  button(QStringLiteral("editHost"), tr("Edit…"), tr("Edit the selected host"), [this] { editSelected(); });
  button(QStringLiteral("removeHost"), tr("Remove"), tr("Remove the selected hosts from the workspace"), [this] {
    const QStringList ids = selectedHostIds();
    if (ids.isEmpty()) return;
    if (QMessageBox::question(this, tr("Remove hosts"), tr("Remove %1 from the workspace? Nothing on the hosts is deleted.")
                                                           .arg(ids.join(QStringLiteral(", ")))) != QMessageBox::Yes)
      return;
    for (const QString& id : ids) removeHost(id);
  });
  button(QStringLiteral("probeHost"), tr("Probe"), tr("Connect and read OS, CPU, memory, disk, GPUs, interfaces, engine version"),
         [this] { probe(selectedHostIds()); });
  button(QStringLiteral("provisionHost"), tr("Provision"), tr("Upload this computer's fathom-engine (skipped when identical)"),
         [this] { provision(selectedHostIds()); });
  button(QStringLiteral("preflightHosts"), tr("Preflight"), tr("fathom-engine bench comm across the selected hosts"),
         [this] { preflight(selectedHostIds()); });
  bar->addStretch(1);
  bar->addWidget(new QLabel(tr("Group:"), this));
  m_group = new QComboBox(this);
  m_group->setObjectName(QStringLiteral("groupFilter"));
  m_group->setMinimumContentsLength(12);
  connect(m_group, &QComboBox::currentIndexChanged, this, [this] { reload(); });
  bar->addWidget(m_group);
  auto* newGroup = new QPushButton(tr("New group…"), this);
  newGroup->setToolTip(tr("A group (cluster) of the selected hosts, for launches"));
  connect(newGroup, &QPushButton::clicked, this, &HostsPage::addGroup);
  bar->addWidget(newGroup);
  layout->addLayout(bar);

  auto* split = new QSplitter(Qt::Vertical, this);
  m_table = new QTableWidget(0, ColCount, split);
  m_table->setObjectName(QStringLiteral("hostTable"));
  m_table->setHorizontalHeaderLabels({tr("Host"), tr("Address"), tr("Groups"), tr("OS"), tr("CPU"), tr("Memory"), tr("Free disk"),
                                      tr("GPUs"), tr("Interfaces"), tr("Engine"), tr("Probed")});
  m_table->setSelectionBehavior(QAbstractItemView::SelectRows);
  m_table->setEditTriggers(QAbstractItemView::NoEditTriggers);
  m_table->horizontalHeader()->setStretchLastSection(true);
  m_table->verticalHeader()->hide();
  connect(m_table, &QTableWidget::cellDoubleClicked, this, [this] { editSelected(); });
  auto* bottom = new QWidget(split);
  auto* bl = new QVBoxLayout(bottom);
  bl->setContentsMargins(0, 0, 0, 0);
  auto* pr = new QHBoxLayout;
  m_progressLabel = new QLabel(bottom);
  m_progress = new QProgressBar(bottom);
  m_progress->setObjectName(QStringLiteral("progress"));
  m_progress->setRange(0, 100);
  m_progress->setValue(0);
  auto* cancel = new QPushButton(tr("Cancel"), bottom);
  connect(cancel, &QPushButton::clicked, this, [this] { m_cancel = true; });
  pr->addWidget(m_progressLabel);
  pr->addWidget(m_progress, 1);
  pr->addWidget(cancel);
  bl->addLayout(pr);
  m_log = new QPlainTextEdit(bottom);
  m_log->setObjectName(QStringLiteral("hostLog"));
  m_log->setReadOnly(true);
  m_log->setPlaceholderText(tr("Add a host, then Probe it. Host keys are checked against ~/.ssh/known_hosts; passwords and "
                               "passphrases are asked when needed; a password is remembered only in the OS keychain, and only when you ask."));
  auto* logs = new QSplitter(Qt::Horizontal, bottom);
  logs->addWidget(m_log);
  m_preflightReport = new QPlainTextEdit(logs);
  m_preflightReport->setObjectName(QStringLiteral("preflightReport"));
  m_preflightReport->setReadOnly(true);
  m_preflightReport->setFont(QFontDatabase::systemFont(QFontDatabase::FixedFont));
  m_preflightReport->setPlaceholderText(tr("Preflight: select two or more provisioned hosts and press Preflight to measure "
                                           "all-reduce / reduce-scatter / all-gather bandwidth between them (fathom-engine "
                                           "bench comm, one rank per host)."));
  logs->addWidget(m_preflightReport);
  bl->addWidget(logs);
  split->setStretchFactor(0, 3);
  split->setStretchFactor(1, 1);
  layout->addWidget(split, 1);

  if (m_queue) m_queue->sshLauncher()->setCallbacks(callbacks());
  reload();
}

HostsPage::~HostsPage() {
  m_cancel = true;
  if (m_worker) {
    m_worker->wait();
    delete m_worker;
  }
}

SshCallbacks HostsPage::callbacks() {
  SshCallbacks cb;
  QPointer<HostsPage> self(this);
  cb.confirmHostKey = [self](const HostKeyInfo& k) {
    bool ok = false;
    if (!self) return false;
    auto ask = [self, k, &ok] {
      if (!self) return;
      if (self->m_hostKeyPrompt) {
        ok = self->m_hostKeyPrompt(k);
        return;
      }
      ok = QMessageBox::question(self, tr("Unknown host key"),
                                 tr("The authenticity of %1 cannot be established.\n\n%2 key fingerprint:\n%3\n\nCompare it "
                                    "with the host's (ssh-keygen -lf /etc/ssh/ssh_host_%4_key.pub on the host). Trust it and "
                                    "add it to %5?")
                                     .arg(k.host, k.keyType, k.fingerprint, k.keyType.section(QLatin1Char('-'), 1), k.knownHostsFile),
                                 QMessageBox::Yes | QMessageBox::No, QMessageBox::No) == QMessageBox::Yes;
    };
    if (QThread::currentThread() == self->thread()) ask();
    else QMetaObject::invokeMethod(self, ask, Qt::BlockingQueuedConnection);
    return ok;
  };
  cb.askSecret = [self](const QString& kind, const QString& prompt, QByteArray* secret) {
    bool ok = false;
    if (!self) return false;
    auto ask = [self, kind, prompt, secret, &ok] {
      if (!self) return;
      if (self->m_secretPrompt) {
        ok = self->m_secretPrompt(kind, prompt, secret);
        return;
      }
      const QString s = QInputDialog::getText(self, kind == QLatin1String("password") ? tr("Password") : tr("Passphrase"), prompt,
                                              QLineEdit::Password, QString(), &ok);
      if (ok) *secret = s.toUtf8();
    };
    if (QThread::currentThread() == self->thread()) ask();
    else QMetaObject::invokeMethod(self, ask, Qt::BlockingQueuedConnection);
    return ok;
  };
  cb.askPassword = [self](const QString& prompt, const QString& note, QByteArray* secret, bool* remember) {
    bool ok = false;
    if (!self) return false;
    auto ask = [self, prompt, note, secret, remember, &ok] {
      if (!self) return;
      if (!note.isEmpty()) self->appendLog(tr("The password cannot be remembered: %1. It is asked each time.").arg(note));
      if (self->m_passwordPrompt) {
        ok = self->m_passwordPrompt(prompt, note, secret, remember);
        return;
      }
      QDialog d(self);
      d.setWindowTitle(tr("Password"));
      auto* form = new QVBoxLayout(&d);
      form->addWidget(new QLabel(prompt, &d));
      auto* edit = new QLineEdit(&d);
      edit->setEchoMode(QLineEdit::Password);
      form->addWidget(edit);
      auto* keep = new QCheckBox(tr("Remember the password in the OS keychain"), &d);
      keep->setObjectName(QStringLiteral("rememberPassword"));
      keep->setEnabled(note.isEmpty());
      keep->setToolTip(note.isEmpty() ? tr("Stored only in the OS keychain (%1), never in the workspace or settings.").arg(QStringLiteral("Secret Service / Keychain"))
                                      : note);
      form->addWidget(keep);
      if (!note.isEmpty()) {
        auto* why = new QLabel(tr("Cannot remember it: %1.").arg(note), &d);
        why->setWordWrap(true);
        form->addWidget(why);
      }
      auto* buttons = new QDialogButtonBox(QDialogButtonBox::Ok | QDialogButtonBox::Cancel, &d);
      QObject::connect(buttons, &QDialogButtonBox::accepted, &d, &QDialog::accept);
      QObject::connect(buttons, &QDialogButtonBox::rejected, &d, &QDialog::reject);
      form->addWidget(buttons);
      ok = d.exec() == QDialog::Accepted;
      if (ok) {
        *secret = edit->text().toUtf8();
        *remember = keep->isEnabled() && keep->isChecked();
      }
      edit->clear();
    };
    if (QThread::currentThread() == self->thread()) ask();
    else QMetaObject::invokeMethod(self, ask, Qt::BlockingQueuedConnection);
    return ok;
  };
  return cb;
}

void HostsPage::reload() {
  if (!m_repo) return;
  const QString group = m_group->currentData().toString();
  {
    const QSignalBlocker b(m_group);
    const QStringList groups = m_repo->groups();
    m_group->clear();
    m_group->addItem(tr("All hosts"), QString());
    for (const QString& g : groups) m_group->addItem(g, g);
    m_group->setCurrentIndex(std::max(0, m_group->findData(group)));
  }
  const QStringList selected = selectedHostIds();
  m_table->setRowCount(0);
  for (const HostConfig& h : m_repo->list()) {
    if (!group.isEmpty() && !h.groups.contains(group)) continue;
    const int row = m_table->rowCount();
    m_table->insertRow(row);
    const HostProbeResult& p = h.probe;
    QStringList gpus, nets;
    for (const GpuInfo& g : p.gpus) gpus << QStringLiteral("%1 (%2)").arg(g.name, formatBytes(double(g.memoryMiB) * 1048576.0, 0));
    for (const NetInterface& n : p.interfaces) nets << QStringLiteral("%1 %2").arg(n.name, n.address);
    const bool probed = p.probedAt.isValid();
    const QString cells[ColCount] = {
        h.displayName(),
        h.destination() + (h.jumpHost.isEmpty() ? QString() : tr(" via %1").arg(h.jumpHost)),
        h.groups.join(QStringLiteral(", ")),
        probed ? (p.ok ? p.os : tr("probe failed: %1").arg(p.error)) : tr("not probed"),
        probed && p.ok ? QStringLiteral("%1 × %2").arg(p.cpus).arg(p.cpuModel.isEmpty() ? tr("CPU") : p.cpuModel) : QString(),
        probed && p.ok ? formatBytes(double(p.memoryBytes), 1) : QString(),
        probed && p.ok ? formatBytes(double(p.diskFreeBytes), 1) : QString(),
        probed && p.ok ? (gpus.isEmpty() ? tr("none") : gpus.join(QStringLiteral(", "))) : QString(),
        nets.join(QStringLiteral(", ")),
        probed ? (p.engineVersion.isEmpty() ? p.engineError : p.engineVersion) : QString(),
        probed ? p.probedAt.toString(QStringLiteral("yyyy-MM-dd HH:mm")) : QString()};
    for (int c = 0; c < ColCount; ++c) {
      auto* it = new QTableWidgetItem(cells[c]);
      it->setToolTip(cells[c]);
      if (c == ColId) it->setData(Qt::UserRole, h.id);
      m_table->setItem(row, c, it);
    }
  }
  m_table->resizeColumnsToContents();
  for (const QString& id : selected) selectHost(id);
}

QStringList HostsPage::selectedHostIds() const {
  QStringList ids;
  for (const QModelIndex& i : m_table->selectionModel()->selectedRows(ColId)) ids << i.data(Qt::UserRole).toString();
  if (ids.isEmpty() && m_table->rowCount() == 1) ids << m_table->item(0, ColId)->data(Qt::UserRole).toString();
  return ids;
}

void HostsPage::selectHost(const QString& id) {
  for (int r = 0; r < m_table->rowCount(); ++r)
    if (m_table->item(r, ColId)->data(Qt::UserRole).toString() == id)
      m_table->selectionModel()->select(m_table->model()->index(r, 0),
                                        QItemSelectionModel::Select | QItemSelectionModel::Rows);
}

bool HostsPage::saveHost(const HostConfig& host) {
  if (!m_repo) return false;
  HostConfig h = host;
  if (auto old = m_repo->get(h.id); old && !h.probe.probedAt.isValid()) h.probe = old->probe;
  if (!m_repo->upsert(h)) {
    appendLog(tr("Cannot save host %1: %2").arg(h.id, m_repo->lastError()));
    return false;
  }
  appendLog(tr("Saved host %1 (%2).").arg(h.displayName(), h.destination()));
  reload();
  return true;
}

bool HostsPage::removeHost(const QString& id) {
  const auto old = m_repo ? m_repo->get(id) : std::nullopt;
  if (!m_repo || !m_repo->remove(id)) return false;
  if (old && old->auth == ssh_auth::password) keychain::deletePassword(*old, 3000);  // a remembered password goes too
  appendLog(tr("Removed host %1.").arg(id));
  reload();
  return true;
}

void HostsPage::editSelected() {
  const QStringList ids = selectedHostIds();
  if (ids.isEmpty() || !m_repo) return;
  const auto h = m_repo->get(ids.first());
  if (!h) return;
  HostDialog d(*h, true, this);
  if (d.exec() == QDialog::Accepted) saveHost(d.host());
}

void HostsPage::addGroup() {
  const QStringList ids = selectedHostIds();
  bool ok = false;
  const QString name = QInputDialog::getText(this, tr("New host group"), tr("Name of the group of %1:").arg(ids.join(QStringLiteral(", "))),
                                             QLineEdit::Normal, QString(), &ok);
  if (!ok || name.trimmed().isEmpty() || !m_repo) return;
  if (!m_repo->setGroupMembers(name.trimmed(), ids)) appendLog(m_repo->lastError());
  reload();
}

void HostsPage::appendLog(const QString& line) {
  m_log->appendPlainText(QStringLiteral("%1  %2").arg(QTime::currentTime().toString(QStringLiteral("HH:mm:ss")), line));
}

void HostsPage::setBusy(bool busy) {
  m_busy = busy;
  for (QPushButton* b : m_actions) b->setEnabled(!busy);
  if (!busy) m_progressLabel->clear();
  Q_EMIT busyChanged(busy);
}

void HostsPage::runInBackground(const QStringList& ids, const QString& what,
                                std::function<QString(SshSession&, const HostConfig&)> work,
                                std::function<void(const QString&, const QString&)> done) {
  if (m_busy || ids.isEmpty() || !m_repo) {
    if (ids.isEmpty()) appendLog(tr("Select a host first."));
    return;
  }
  QList<HostConfig> hosts;
  for (const QString& id : ids)
    if (auto h = m_repo->get(id)) hosts << *h;
  setBusy(true);
  m_cancel = false;
  m_progress->setValue(0);
  m_progressLabel->setText(what);
  const QString known = m_knownHosts;
  const SshCallbacks cb = callbacks();
  QPointer<HostsPage> self(this);
  if (m_worker) {
    m_worker->wait();
    delete m_worker;
  }
  m_worker = QThread::create([self, hosts, known, cb, work, done, what] {
    for (const HostConfig& h : hosts) {
      QMetaObject::invokeMethod(self, [self, h, what] { if (self) self->appendLog(QStringLiteral("%1: %2…").arg(h.displayName(), what)); },
                                Qt::QueuedConnection);
      SshSession s;
      s.setKnownHostsFile(known);
      s.setCallbacks(cb);
      QString error;
      if (!s.connect(h)) {
        error = s.lastError();
      } else {
        error = work(s, h);
      }
      QMetaObject::invokeMethod(self, [self, h, error, done] { if (self) done(h.id, error); }, Qt::QueuedConnection);
    }
    QMetaObject::invokeMethod(self, [self] { if (self) self->setBusy(false); }, Qt::QueuedConnection);
  });
  m_worker->start();
}

void HostsPage::probe(const QStringList& ids) {
  auto results = std::make_shared<QHash<QString, HostProbeResult>>();
  auto mutex = std::make_shared<std::mutex>();
  runInBackground(
      ids, tr("probing"),
      [results, mutex](SshSession& s, const HostConfig& h) {
        const HostProbeResult r = probeHost(s, h);
        std::lock_guard<std::mutex> g(*mutex);
        results->insert(h.id, r);
        return r.ok ? QString() : r.error;
      },
      [this, results, mutex](const QString& id, const QString& error) {
        HostProbeResult r;
        {
          std::lock_guard<std::mutex> g(*mutex);
          r = results->value(id);
        }
        if (!r.probedAt.isValid()) {
          r.ok = false;
          r.error = error;
          r.probedAt = QDateTime::currentDateTime();
        }
        if (m_repo) m_repo->setProbe(id, r);
        m_progress->setValue(100);
        if (error.isEmpty())
          appendLog(tr("%1: %2, %3 CPUs, %4, %5 GPU(s), engine: %6")
                        .arg(id, r.os)
                        .arg(r.cpus)
                        .arg(formatBytes(double(r.memoryBytes), 1))
                        .arg(r.gpus.size())
                        .arg(r.engineVersion.isEmpty() ? r.engineError : r.engineVersion));
        else
          appendLog(tr("%1: probe failed: %2").arg(id, error));
        if (!error.isEmpty() && error.contains(QStringLiteral("CHANGED")))
          QMessageBox::warning(this, tr("Host key changed"), error);
        reload();
        Q_EMIT probeFinished(id, error.isEmpty(), error);
      });
}

void HostsPage::provision(const QStringList& ids) {
  const QString engine = m_queue ? m_queue->engineBinary() : QString();
  QPointer<HostsPage> self(this);
  std::atomic<bool>* cancel = &m_cancel;
  runInBackground(
      ids, tr("provisioning"),
      [self, engine, cancel](SshSession& s, const HostConfig& h) {
        Provisioner p(s, h, engine);
        const ProvisionResult r = p.provisionEngine([self, cancel](const QString& what, qint64 done, qint64 total) {
          const int pct = total > 0 ? static_cast<int>(100 * done / total) : 100;
          QMetaObject::invokeMethod(self, [self, pct, what] {
            if (!self) return;
            self->m_progress->setValue(pct);
            self->m_progressLabel->setText(tr("uploading %1").arg(what));
          }, Qt::QueuedConnection);
          return !cancel->load();
        });
        QString notes = r.notes.join(QLatin1Char('\n'));
        if (!r.ok) return r.error;
        QMetaObject::invokeMethod(self, [self, notes] { if (self && !notes.isEmpty()) self->appendLog(notes); }, Qt::QueuedConnection);
        return QString();
      },
      [this](const QString& id, const QString& error) {
        if (error.isEmpty()) m_progress->setValue(100);
        appendLog(error.isEmpty() ? tr("%1: provisioned").arg(id) : tr("%1: provisioning failed: %2").arg(id, error));
        Q_EMIT provisionFinished(id, error.isEmpty(), error);
      });
}

void HostsPage::preflight(const QStringList& ids) {
  if (m_busy || !m_repo) return;
  QList<HostConfig> hosts;
  for (const QString& id : ids)
    if (auto h = m_repo->get(id)) hosts << *h;
  if (hosts.size() < 2) {
    appendLog(tr("Preflight measures the links between hosts: select at least two."));
    Q_EMIT preflightFinished(false, tr("select at least two hosts"));
    return;
  }
  setBusy(true);
  m_cancel = false;
  m_progress->setRange(0, 0);  // busy: the ranks report at the end
  m_progressLabel->setText(tr("preflight"));
  PreflightOptions o;
  o.knownHostsFile = m_knownHosts;
  o.callbacks = callbacks();
  o.cancel = &m_cancel;
  o.sizes = m_preflightSizes;
  QPointer<HostsPage> self(this);
  o.progress = [self](const QString& line) {
    QMetaObject::invokeMethod(self, [self, line] { if (self) self->appendLog(line); }, Qt::QueuedConnection);
  };
  if (m_worker) {
    m_worker->wait();
    delete m_worker;
  }
  m_worker = QThread::create([self, hosts, o] {
    const PreflightResult r = Provisioner::preflight(hosts, o);
    QMetaObject::invokeMethod(self, [self, r] {
      if (!self) return;
      self->m_progress->setRange(0, 100);
      self->m_progress->setValue(r.ok ? 100 : 0);
      self->m_preflightReport->setPlainText(r.ok ? r.report : tr("Preflight failed: %1").arg(r.error));
      self->appendLog(r.ok ? tr("Preflight done (%1 ranks).").arg(r.worldSize) : tr("Preflight failed: %1").arg(r.error));
      self->setBusy(false);
      Q_EMIT self->preflightFinished(r.ok, r.ok ? r.report : r.error);
    }, Qt::QueuedConnection);
  });
  m_worker->start();
}

}  // namespace fathom::ui
