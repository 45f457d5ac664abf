// HostDialog: a form over HostConfig; parseDestination() checks user@host:port as you type.
#include "ui/pages/hosts/HostDialog.h"

#include <QComboBox>
#include <QDialogButtonBox>
#include <QDir>
#include <QFileDialog>
#include <QFormLayout>
#include <QHBoxLayout>
#include <QLabel>
#include <QLineEdit>
#include <QPushButton>
#include <QRegularExpression>
#include <QVBoxLayout>

namespace fathom::ui {

using namespace fathom::cluster;

HostDialog::HostDialog(const HostConfig& h, bool editing, QWidget* parent) : QDialog(parent), m_base(h) {
  setWindowTitle(editing ? tr("Edit host %1").arg(h.displayName()) : tr("Add SSH host"));
  auto* layout = new QVBoxLayout(this);
  auto* form = new QFormLayout;
  m_id = new QLineEdit(h.id, this);
  m_id->setObjectName(QStringLiteral("hostId"));
  m_id->setReadOnly(editing);
  m_id->setPlaceholderText(tr("gpu1"));
  form->addRow(tr("Id"), m_id);
  m_name = new QLineEdit(h.name, this);
  m_name->setPlaceholderText(tr("(the id)"));
  form->addRow(tr("Name"), m_name);
  m_dest = new QLineEdit(this);
  m_dest->setObjectName(QStringLiteral("destination"));
  if (!h.address.isEmpty())
    m_dest->setText(QStringLiteral("%1%2%3").arg(h.user.isEmpty() ? QString() : h.user + QLatin1Char('@'),
                                                h.address.contains(QLatin1Char(':')) ? QLatin1Char('[') + h.address + QLatin1Char(']') : h.address,
                                                h.port == 22 ? QString() : QStringLiteral(":%1").arg(h.port)));
  m_dest->setPlaceholderText(tr("user@host:port"));
  form->addRow(tr("Destination"), m_dest);
  m_auth = new QComboBox(this);
  m_auth->setObjectName(QStringLiteral("auth"));
  m_auth->addItem(tr("Automatic (agent, key file, default keys)"), ssh_auth::automatic);
  m_auth->addItem(tr("ssh-agent"), ssh_auth::agent);
  m_auth->addItem(tr("Key file (passphrase asked, never stored)"), ssh_auth::key);
  m_auth->addItem(tr("Password (asked; remembered only in the OS keychain, if you say so)"), ssh_auth::password);
  m_auth->setCurrentIndex(std::max(0, m_auth->findData(h.auth)));
  form->addRow(tr("Log in with"), m_auth);
  auto* keyRow = new QHBoxLayout;
  m_key = new QLineEdit(h.identityFile, this);
  m_key->setObjectName(QStringLiteral("keyFile"));
  m_key->setPlaceholderText(QDir::home().filePath(QStringLiteral(".ssh/id_ed25519")));
  auto* browse = new QPushButton(tr("Browse…"), this);
  connect(browse, &QPushButton::clicked, this, [this] {
    const QString f = QFileDialog::getOpenFileName(this, tr("Private key"), QDir::home().filePath(QStringLiteral(".ssh")));
    if (!f.isEmpty()) m_key->setText(f);
  });
  keyRow->addWidget(m_key, 1);
  keyRow->addWidget(browse);
  form->addRow(tr("Key file"), keyRow);
  m_jump = new QLineEdit(h.jumpHost, this);
  m_jump->setPlaceholderText(tr("(none) or user@bastion:22"));
  form->addRow(tr("Jump host"), m_jump);
  m_work = new QLineEdit(h.workDir, this);
  m_work->setObjectName(QStringLiteral("workDir"));
  m_work->setPlaceholderText(tr("fathom (under the login directory)"));
  form->addRow(tr("Work directory"), m_work);
  m_engine = new QLineEdit(h.enginePath, this);
  m_engine->setPlaceholderText(tr("<work directory>/bin/fathom-engine (Provision uploads it)"));
  form->addRow(tr("Engine path"), m_engine);
  m_rdzv = new QLineEdit(h.rendezvousAddress, this);
  m_rdzv->setPlaceholderText(tr("(the address above) — the address other nodes reach this one at"));
  form->addRow(tr("Rendezvous address"), m_rdzv);
  m_groups = new QLineEdit(h.groups.join(QStringLiteral(", ")), this);
  m_groups->setObjectName(QStringLiteral("groups"));
  m_groups->setPlaceholderText(tr("lab, a100-pool"));
  form->addRow(tr("Groups"), m_groups);
  layout->addLayout(form);
  m_problem = new QLabel(this);
  m_problem->setWordWrap(true);
  layout->addWidget(m_problem);
  auto* buttons = new QDialogButtonBox(QDialogButtonBox::Ok | QDialogButtonBox::Cancel, this);
  layout->addWidget(buttons);
  connect(buttons, &QDialogButtonBox::accepted, this, [this] {
    if (problem().isEmpty()) accept();
  });
  connect(buttons, &QDialogButtonBox::rejected, this, &QDialog::reject);
  for (QLineEdit* e : {m_id, m_dest, m_key, m_jump}) connect(e, &QLineEdit::textChanged, this, &HostDialog::validate);
  connect(m_auth, &QComboBox::currentIndexChanged, this, &HostDialog::validate);
  validate();
}

HostConfig HostDialog::host(bool* ok) const {
  HostConfig h = m_base;
  h.id = m_id->text().trimmed();
  h.name = m_name->text().trimmed();
  QString user, address;
  int port = 22;
  const bool good = parseDestination(m_dest->text(), &user, &address, &port);
  h.user = user;
  h.address = address;
  h.port = port;
  h.auth = m_auth->currentData().toString();
  h.identityFile = m_key->text().trimmed();
  h.jumpHost = m_jump->text().trimmed();
  h.workDir = m_work->text().trimmed();
  h.enginePath = m_engine->text().trimmed();
  h.rendezvousAddress = m_rdzv->text().trimmed();
  h.groups.clear();
  for (const QString& g : m_groups->text().split(QLatin1Char(','), Qt::SkipEmptyParts))
    if (!g.trimmed().isEmpty()) h.groups << g.trimmed();
  if (ok) *ok = good && problem().isEmpty();
  return h;
}

QString HostDialog::problem() const {
  static const QRegularExpression idRe(QStringLiteral("^[A-Za-z0-9][A-Za-z0-9_.-]*$"));
  if (!idRe.match(m_id->text().trimmed()).hasMatch()) return tr("The id must start with a letter or digit (letters, digits, _ . -).");
  if (!parseDestination(m_dest->text(), nullptr, nullptr, nullptr)) return tr("Destination must be [user@]host[:port].");
  if (!m_jump->text().trimmed().isEmpty() && !parseDestination(m_jump->text(), nullptr, nullptr, nullptr))
    return tr("Jump host must be [user@]host[:port].");
  if (m_auth->currentData().toString() == ssh_auth::key && m_key->text().trimmed().isEmpty())
    return tr("Choose the private key file.");
  return {};
}

void HostDialog::validate() { m_problem->setText(problem()); }

}  // namespace fathom::ui
