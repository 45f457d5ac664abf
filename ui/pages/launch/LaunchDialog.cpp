// Launch dialog. The overrides are validated with load_config_file(config, {overrides}) so a
// typo fails here, with the loader's message, not after the engine started.
#include "ui/pages/launch/LaunchDialog.h"

#include <QDialogButtonBox>
#include <QDir>
#include <QFileInfo>
#include <QFontDatabase>
#include <QFormLayout>
#include <QLabel>
#include <QLineEdit>
#include <QListWidget>
#include <QPlainTextEdit>
#include <QPushButton>
#include <QSpinBox>
#include <QTimer>
#include <QVBoxLayout>

#include "cluster/jobs/JobQueue.h"
#include "cluster/workspace/Workspace.h"
#include "engine/config/config.h"
#include "ui/Format.h"
#include "ui/Theme.h"
#include "ui/pages/hosts/ClusterTargetWidget.h"

#include <QComboBox>

namespace fathom::ui {

LaunchDialog::LaunchDialog(const QString& configPath, cluster::JobQueue* queue, DeviceProbe* devices, QWidget* parent)
    : QDialog(parent), m_configPath(configPath), m_queue(queue), m_probe(devices) {
  setWindowTitle(tr("Launch %1").arg(QFileInfo(configPath).fileName()));
  resize(760, 620);
  auto* layout = new QVBoxLayout(this);
  auto* form = new QFormLayout;
  form->setLabelAlignment(Qt::AlignRight);
  auto* cfg = new QLabel(QDir::toNativeSeparators(configPath), this);
  cfg->setTextInteractionFlags(Qt::TextSelectableByMouse);
  form->addRow(tr("Config"), cfg);
  m_name = new QLineEdit(this);
  m_name->setObjectName(QStringLiteral("runName"));
  m_name->setToolTip(tr("Shown in the Runs table; the run id is this name plus a timestamp"));
  form->addRow(tr("Run name"), m_name);
  m_devices = new QListWidget(this);
  m_devices->setObjectName(QStringLiteral("devices"));
  m_devices->setMaximumHeight(110);
  m_devices->setToolTip(tr("CPU, or one or more GPUs of this computer (one process per GPU)"));
  form->addRow(tr("Devices"), m_devices);
  m_procs = new QSpinBox(this);
  m_procs->setObjectName(QStringLiteral("processes"));
  m_procs->setRange(1, 64);
  m_procs->setToolTip(tr("Processes (ranks) of the run; more than one trains data-parallel with a torchrun-style rendezvous"));
  form->addRow(tr("Processes"), m_procs);
  m_overrides = new QPlainTextEdit(this);
  m_overrides->setObjectName(QStringLiteral("overrides"));
  m_overrides->setPlaceholderText(tr("One key=value per line, e.g.\ntrain.max_steps=200\noptimizer.lr=1e-3"));
  m_overrides->setFont(QFontDatabase::systemFont(QFontDatabase::FixedFont));
  m_overrides->setMaximumHeight(100);
  form->addRow(tr("Overrides"), m_overrides);
  // ---- cluster section (issue 9): run on SSH hosts instead of this computer ----
  m_target = new QComboBox(this);
  m_target->setObjectName(QStringLiteral("target"));
  m_target->addItem(tr("This computer"));
  m_target->addItem(tr("Cluster (SSH hosts)"));
  form->addRow(tr("Target"), m_target);
  m_cluster = new ClusterTargetWidget(queue ? queue->workspace() : nullptr, this);
  m_cluster->setVisible(false);
  form->addRow(m_cluster);
  connect(m_target, &QComboBox::currentIndexChanged, this, [this] {
    m_cluster->setVisible(isClusterTarget());
    m_procs->setEnabled(!isClusterTarget());
    updatePreview();
  });
  connect(m_cluster, &ClusterTargetWidget::changed, this, [this] { m_debounce->start(); });
  // ---- end of the cluster section ----
  layout->addLayout(form);
  m_problem = new QLabel(this);
  m_problem->setWordWrap(true);
  layout->addWidget(m_problem);
  layout->addWidget(new QLabel(tr("Command preview (what the launcher runs, one line per process):"), this));
  m_preview = new QPlainTextEdit(this);
  m_preview->setReadOnly(true);
  m_preview->setFont(QFontDatabase::systemFont(QFontDatabase::FixedFont));
  m_preview->setLineWrapMode(QPlainTextEdit::WidgetWidth);
  layout->addWidget(m_preview, 1);
  m_buttons = new QDialogButtonBox(QDialogButtonBox::Cancel, this);
  QPushButton* go = m_buttons->addButton(tr("Launch"), QDialogButtonBox::AcceptRole);
  go->setObjectName(QStringLiteral("launch"));
  go->setDefault(true);
  layout->addWidget(m_buttons);
  connect(m_buttons, &QDialogButtonBox::rejected, this, &QDialog::reject);
  connect(m_buttons, &QDialogButtonBox::accepted, this, [this] {
    if (launch()) accept();
  });

  config::LoadOptions o;
  o.check_paths = false;
  const config::LoadResult lr = config::load_config_file(configPath.toStdString(), o);
  m_name->setText(QString::fromStdString(lr.config.run.name));
  m_procs->setValue(static_cast<int>(std::max<int64_t>(1, lr.config.distributed.world_size)));

  m_debounce = new QTimer(this);
  m_debounce->setSingleShot(true);
  m_debounce->setInterval(250);
  connect(m_debounce, &QTimer::timeout, this, &LaunchDialog::updatePreview);
  connect(m_name, &QLineEdit::textChanged, m_debounce, qOverload<>(&QTimer::start));
  connect(m_procs, &QSpinBox::valueChanged, m_debounce, qOverload<>(&QTimer::start));
  connect(m_overrides, &QPlainTextEdit::textChanged, m_debounce, qOverload<>(&QTimer::start));
  connect(m_devices, &QListWidget::itemChanged, this, [this](QListWidgetItem* changed) {
    if (m_fillingDevices) return;
    // CPU excludes GPUs and the other way round; one process per chosen GPU.
    m_fillingDevices = true;
    const bool cpu = changed->data(Qt::UserRole).toString() == QLatin1String("cpu");
    if (changed->checkState() == Qt::Checked)
      for (int i = 0; i < m_devices->count(); ++i) {
        QListWidgetItem* it = m_devices->item(i);
        const bool itCpu = it->data(Qt::UserRole).toString() == QLatin1String("cpu");
        if (it != changed && itCpu != cpu) it->setCheckState(Qt::Unchecked);
      }
    int gpus = 0;
    for (int i = 0; i < m_devices->count(); ++i)
      gpus += m_devices->item(i)->checkState() == Qt::Checked && m_devices->item(i)->data(Qt::UserRole).toString() != QLatin1String("cpu");
    if (gpus > 0) m_procs->setValue(gpus);
    m_fillingDevices = false;
    m_debounce->start();
  });
  if (m_probe) {
    connect(m_probe, &DeviceProbe::devicesChanged, this, &LaunchDialog::fillDevices);
    if (!m_probe->isReady()) m_probe->refresh();
  }
  fillDevices();
  updatePreview();
}

void LaunchDialog::fillDevices() {
  QStringList checked;
  for (int i = 0; i < m_devices->count(); ++i)
    if (m_devices->item(i)->checkState() == Qt::Checked) checked << m_devices->item(i)->data(Qt::UserRole).toString();
  m_fillingDevices = true;
  m_devices->clear();
  QList<EngineDevice> devs = m_probe ? m_probe->devices() : QList<EngineDevice>{};
  bool haveCpu = false;
  for (const EngineDevice& d : devs) haveCpu |= d.kind == QLatin1String("cpu");
  if (!haveCpu) devs.prepend(EngineDevice{QStringLiteral("cpu"), 0, QStringLiteral("CPU"), 0, 0});
  for (const EngineDevice& d : devs) {
    QString label = d.kind == QLatin1String("cpu")
                        ? tr("CPU%1").arg(d.threads ? tr(" (%1 threads, %2)").arg(d.threads).arg(formatBytes(double(d.memoryTotal), 0)) : QString())
                        : QStringLiteral("%1  %2  (%3)").arg(d.id(), d.name, formatBytes(double(d.memoryTotal), 0));
    auto* item = new QListWidgetItem(label, m_devices);
    item->setData(Qt::UserRole, d.id());
    item->setFlags(item->flags() | Qt::ItemIsUserCheckable);
    item->setCheckState(checked.contains(d.id()) ? Qt::Checked : Qt::Unchecked);
  }
  if (checked.isEmpty() && m_devices->count() > 0) m_devices->item(0)->setCheckState(Qt::Checked);  // CPU by default
  if (m_probe && !m_probe->isReady()) new QListWidgetItem(tr("(asking the engine for GPUs…)"), m_devices);
  else if (m_probe && !m_probe->error().isEmpty()) new QListWidgetItem(tr("(GPUs unknown: %1)").arg(m_probe->error()), m_devices);
  m_fillingDevices = false;
  updatePreview();
}

QStringList LaunchDialog::overrideList() const {
  QStringList out;
  for (const QString& line : m_overrides->toPlainText().split(QLatin1Char('\n'))) {
    const QString t = line.trimmed();
    if (!t.isEmpty() && !t.startsWith(QLatin1Char('#'))) out << t;
  }
  return out;
}

cluster::LaunchSpec LaunchDialog::spec() const {
  cluster::LaunchSpec s;
  s.name = m_name->text().trimmed();
  s.configPath = m_configPath;
  s.overrides = overrideList();
  s.nprocs = m_procs->value();
  for (int i = 0; i < m_devices->count(); ++i) {
    const QListWidgetItem* it = m_devices->item(i);
    if (it->checkState() == Qt::Checked && !it->data(Qt::UserRole).toString().isEmpty()) s.devices << it->data(Qt::UserRole).toString();
  }
  if (m_queue) s.engineBinary = m_queue->engineBinary();
  return s;
}

void LaunchDialog::updatePreview() {
  cluster::LaunchSpec s = spec();
  // The preview shows where the run will live; the queue assigns the real id at launch.
  const QString previewId = (s.name.isEmpty() ? QStringLiteral("run") : s.name) + QStringLiteral("-<timestamp>");
  s.runId = previewId;
  if (m_queue && m_queue->workspace()) s.runDir = QDir(m_queue->workspace()->runsDir()).filePath(previewId);
  m_preview->setPlainText(m_launcher.commandPreview(s).join(QStringLiteral("\n\n")));
  if (isClusterTarget())  // cluster section
    m_preview->setPlainText(cluster::SshLauncher::commandPreview(s, m_cluster->cluster(s.devices)).join(QStringLiteral("\n\n")));

  QString problem;
  if (s.name.isEmpty()) problem = tr("Give the run a name.");
  else if (s.devices.isEmpty()) problem = tr("Choose CPU or at least one GPU.");
  else if (isClusterTarget() && !m_cluster->problem().isEmpty()) problem = m_cluster->problem();  // cluster section
  else {
    std::vector<std::string> ov;
    for (const QString& o : s.overrides) {
      if (!o.contains(QLatin1Char('='))) {
        problem = tr("Override '%1' is not key=value (e.g. train.max_steps=200).").arg(o);
        break;
      }
      ov.push_back(o.toStdString());
    }
    if (problem.isEmpty()) {
      config::LoadOptions opts;
      opts.overrides = ov;
      const config::LoadResult r = config::load_config_file(m_configPath.toStdString(), opts);
      if (!r.ok()) problem = QString::fromStdString(r.errors.front().message());
    }
  }
  m_problem->setText(problem.isEmpty() ? tr("✓ Ready to launch.") : problem);
  QPalette p = m_problem->palette();
  p.setColor(QPalette::WindowText, Theme::instance()->color(problem.isEmpty() ? QStringLiteral("status.completed") : QStringLiteral("status.failed")));
  m_problem->setPalette(p);
  if (QPushButton* go = findChild<QPushButton*>(QStringLiteral("launch"))) go->setEnabled(problem.isEmpty());
}

bool LaunchDialog::launch() {
  m_debounce->stop();
  updatePreview();
  if (QPushButton* go = findChild<QPushButton*>(QStringLiteral("launch")); go && !go->isEnabled()) return false;
  if (!m_queue) {
    m_problem->setText(tr("No job queue: the workspace could not be opened."));
    return false;
  }
  const QString id = isClusterTarget() ? m_queue->enqueueCluster(spec(), m_cluster->cluster(spec().devices))  // cluster section
                                       : m_queue->enqueue(spec());
  if (id.isEmpty()) {
    m_problem->setText(tr("Could not launch: %1").arg(m_queue->lastError()));
    QPalette p = m_problem->palette();
    p.setColor(QPalette::WindowText, Theme::instance()->color(QStringLiteral("status.failed")));
    m_problem->setPalette(p);
    return false;
  }
  m_runId = id;
  return true;
}

bool LaunchDialog::isClusterTarget() const { return m_target && m_target->currentIndex() == 1; }  // cluster section

}  // namespace fathom::ui
