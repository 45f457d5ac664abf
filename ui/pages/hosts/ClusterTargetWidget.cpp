// ClusterTargetWidget: hosts from the registry, a group selects its members.
#include "ui/pages/hosts/ClusterTargetWidget.h"

#include <QCheckBox>
#include <QComboBox>
#include <QFormLayout>
#include <QListWidget>
#include <QSpinBox>

#include "cluster/workspace/HostRepository.h"
#include "cluster/workspace/Workspace.h"

namespace fathom::ui {

using namespace fathom::cluster;

ClusterTargetWidget::ClusterTargetWidget(Workspace* workspace, QWidget* parent) : QWidget(parent), m_ws(workspace) {
  auto* form = new QFormLayout(this);
  form->setContentsMargins(0, 0, 0, 0);
  m_group = new QComboBox(this);
  m_group->setObjectName(QStringLiteral("clusterGroup"));
  form->addRow(tr("Host group"), m_group);
  m_hosts = new QListWidget(this);
  m_hosts->setObjectName(QStringLiteral("clusterHosts"));
  m_hosts->setMaximumHeight(100);
  m_hosts->setToolTip(tr("Hosts of the run; the first ticked host holds rank 0 (MASTER_ADDR)"));
  form->addRow(tr("Hosts"), m_hosts);
  m_procs = new QSpinBox(this);
  m_procs->setObjectName(QStringLiteral("procsPerHost"));
  m_procs->setRange(1, 64);
  m_procs->setToolTip(tr("Engine processes per host: one per GPU, or N CPU processes"));
  form->addRow(tr("Processes per host"), m_procs);
  m_provision = new QCheckBox(tr("Upload this computer's engine first (skipped where identical)"), this);
  form->addRow(QString(), m_provision);
  connect(m_group, &QComboBox::currentIndexChanged, this, [this] {
    const QString g = m_group->currentData().toString();
    if (g.isEmpty() || !m_ws) return;
    const QStringList members = HostRepository(*m_ws).groupMembers(g);
    for (int i = 0; i < m_hosts->count(); ++i)
      m_hosts->item(i)->setCheckState(members.contains(m_hosts->item(i)->data(Qt::UserRole).toString()) ? Qt::Checked : Qt::Unchecked);
  });
  connect(m_hosts, &QListWidget::itemChanged, this, &ClusterTargetWidget::changed);
  connect(m_procs, &QSpinBox::valueChanged, this, &ClusterTargetWidget::changed);
  reload();
}

void ClusterTargetWidget::reload() {
  if (!m_ws || !m_ws->isOpen()) return;
  HostRepository repo(*m_ws);
  const QSignalBlocker b1(m_group), b2(m_hosts);
  m_group->clear();
  m_group->addItem(tr("(choose hosts below)"), QString());
  for (const QString& g : repo.groups()) m_group->addItem(g, g);
  m_hosts->clear();
  for (const HostConfig& h : repo.list()) {
    auto* it = new QListWidgetItem(QStringLiteral("%1  —  %2").arg(h.displayName(), h.destination()), m_hosts);
    it->setData(Qt::UserRole, h.id);
    it->setFlags(it->flags() | Qt::ItemIsUserCheckable);
    it->setCheckState(Qt::Unchecked);
  }
  if (m_hosts->count() == 0) {
    auto* it = new QListWidgetItem(tr("(no hosts yet: add them on the Hosts page)"), m_hosts);
    it->setFlags(Qt::NoItemFlags);
  }
}

ClusterSpec ClusterTargetWidget::cluster(const QStringList& devices) const {
  ClusterSpec c;
  c.procsPerHost = m_procs->value();
  c.devices = devices;
  c.provisionEngine = m_provision->isChecked();
  c.knownHostsFile = m_knownHosts;
  if (!m_ws || !m_ws->isOpen()) return c;
  HostRepository repo(*m_ws);
  for (int i = 0; i < m_hosts->count(); ++i) {
    const QListWidgetItem* it = m_hosts->item(i);
    if (it->checkState() != Qt::Checked) continue;
    if (auto h = repo.get(it->data(Qt::UserRole).toString())) c.hosts << *h;
  }
  return c;
}

QString ClusterTargetWidget::problem() const {
  for (int i = 0; i < m_hosts->count(); ++i)
    if (m_hosts->item(i)->checkState() == Qt::Checked) return {};
  return tr("Tick at least one host (or choose a host group).");
}

}  // namespace fathom::ui
