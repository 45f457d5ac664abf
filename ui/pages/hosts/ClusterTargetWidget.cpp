// ClusterTargetWidget: hosts from the registry, a group selects its members.
#include "ui/pages/hosts/ClusterTargetWidget.h"

#include <QCheckBox>
#include <QComboBox>
#include <QFormLayout>
#include <QListWidget>
#include <QSet>
#include <QSpinBox>
#include <QTreeWidget>

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
  m_gpus = new QTreeWidget(this);
  m_gpus->setObjectName(QStringLiteral("clusterGpus"));
  m_gpus->setHeaderHidden(true);
  m_gpus->setMaximumHeight(120);
  m_gpus->setToolTip(tr("GPUs per host (from the probe): one process per ticked GPU; the same number on every host"));
  m_gpus->setVisible(false);
  form->addRow(tr("GPUs"), m_gpus);
  connect(m_gpus, &QTreeWidget::itemChanged, this, [this] {
    updateProcs();
    Q_EMIT changed();
  });
  m_provision = new QCheckBox(tr("Upload this computer's engine first (skipped where identical)"), this);
  form->addRow(QString(), m_provision);
  connect(m_group, &QComboBox::currentIndexChanged, this, [this] {
    const QString g = m_group->currentData().toString();
    if (g.isEmpty() || !m_ws) return;
    const QStringList members = HostRepository(*m_ws).groupMembers(g);
    for (int i = 0; i < m_hosts->count(); ++i)
      m_hosts->item(i)->setCheckState(members.contains(m_hosts->item(i)->data(Qt::UserRole).toString()) ? Qt::Checked : Qt::Unchecked);
    rebuildGpus();
  });
  connect(m_hosts, &QListWidget::itemChanged, this, [this] {
    rebuildGpus();
    Q_EMIT changed();
  });
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
  rebuildGpus();
}

void ClusterTargetWidget::rebuildGpus() {
  // Keep what was unticked before, per host and GPU.
  QSet<QString> off;
  for (int i = 0; i < m_gpus->topLevelItemCount(); ++i)
    for (int g = 0; g < m_gpus->topLevelItem(i)->childCount(); ++g)
      if (m_gpus->topLevelItem(i)->child(g)->checkState(0) != Qt::Checked)
        off.insert(m_gpus->topLevelItem(i)->data(0, Qt::UserRole).toString() + QLatin1Char('/') +
                   m_gpus->topLevelItem(i)->child(g)->data(0, Qt::UserRole).toString());
  const QSignalBlocker b(m_gpus);
  m_gpus->clear();
  if (!m_ws || !m_ws->isOpen()) return;
  HostRepository repo(*m_ws);
  for (int i = 0; i < m_hosts->count(); ++i) {
    const QListWidgetItem* it = m_hosts->item(i);
    if (it->checkState() != Qt::Checked) continue;
    const auto h = repo.get(it->data(Qt::UserRole).toString());
    if (!h || h->probe.gpus.isEmpty()) continue;
    auto* top = new QTreeWidgetItem(m_gpus, {h->displayName()});
    top->setData(0, Qt::UserRole, h->id);
    for (const GpuInfo& g : h->probe.gpus) {
      auto* c = new QTreeWidgetItem(top, {tr("GPU %1: %2 (%3 GiB)").arg(g.index).arg(g.name).arg(double(g.memoryMiB) / 1024.0, 0, 'f', 0)});
      c->setData(0, Qt::UserRole, QString::number(g.index));
      c->setFlags(c->flags() | Qt::ItemIsUserCheckable);
      c->setCheckState(0, off.contains(h->id + QLatin1Char('/') + QString::number(g.index)) ? Qt::Unchecked : Qt::Checked);
    }
    top->setExpanded(true);
  }
  m_gpus->setVisible(m_gpus->topLevelItemCount() > 0);
  updateProcs();
}

QHash<QString, QStringList> ClusterTargetWidget::chosenGpus() const {
  QHash<QString, QStringList> out;
  for (int i = 0; i < m_gpus->topLevelItemCount(); ++i) {
    const QTreeWidgetItem* top = m_gpus->topLevelItem(i);
    QStringList d;
    for (int g = 0; g < top->childCount(); ++g)
      if (top->child(g)->checkState(0) == Qt::Checked) d << QStringLiteral("cuda:") + top->child(g)->data(0, Qt::UserRole).toString();
    out.insert(top->data(0, Qt::UserRole).toString(), d);
  }
  return out;
}

void ClusterTargetWidget::updateProcs() {
  // With GPUs chosen per host the process count follows them.
  const auto gpus = chosenGpus();
  m_procs->setEnabled(gpus.isEmpty());
  if (!gpus.isEmpty()) {
    const QSignalBlocker b(m_procs);
    m_procs->setValue(std::max<int>(1, static_cast<int>(gpus.cbegin()->size())));
  }
}

ClusterSpec ClusterTargetWidget::cluster(const QStringList& devices) const {
  ClusterSpec c;
  c.procsPerHost = m_procs->value();
  c.devices = devices;
  const auto gpus = chosenGpus();
  if (!gpus.isEmpty()) {
    c.hostDevices = gpus;
    c.procsPerHost = 0;  // one per chosen GPU
  }
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
  const auto gpus = chosenGpus();
  QStringList counts;
  QSet<qsizetype> distinct;
  for (int i = 0; i < m_gpus->topLevelItemCount(); ++i) {
    const QTreeWidgetItem* top = m_gpus->topLevelItem(i);
    const qsizetype n = gpus.value(top->data(0, Qt::UserRole).toString()).size();
    counts << QStringLiteral("%1: %2").arg(top->text(0)).arg(n);
    distinct.insert(n);
  }
  if (distinct.contains(0)) return tr("Tick at least one GPU on every host (%1).").arg(counts.join(QStringLiteral(", ")));
  if (distinct.size() > 1) return tr("Tick the same number of GPUs on every host (%1).").arg(counts.join(QStringLiteral(", ")));
  // Hosts without probed GPUs mixed with GPU hosts cannot share one layout.
  int ticked = 0;
  for (int i = 0; i < m_hosts->count(); ++i)
    if (m_hosts->item(i)->checkState() == Qt::Checked) ++ticked;
  if (!gpus.isEmpty() && gpus.size() != ticked)
    return tr("Some ticked hosts have no probed GPUs: probe them, or tick only GPU hosts.");
  for (int i = 0; i < m_hosts->count(); ++i)
    if (m_hosts->item(i)->checkState() == Qt::Checked) return {};
  return tr("Tick at least one host (or choose a host group).");
}

}  // namespace fathom::ui
