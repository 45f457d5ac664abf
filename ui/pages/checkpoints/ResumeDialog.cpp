// ResumeDialog. The new run gets its own directory, with a copy of the source's resolved config as
// its config.yaml, so that it does not depend on the source run's files after it starts (the
// source may be deleted later) and Resume on the new run works like on any other.
#include "ui/pages/checkpoints/ResumeDialog.h"

#include <QDialogButtonBox>
#include <QDir>
#include <QFile>
#include <QFileInfo>
#include <QFontDatabase>
#include <QFormLayout>
#include <QLabel>
#include <QLineEdit>
#include <QPlainTextEdit>
#include <QPushButton>
#include <QRandomGenerator>
#include <QTimer>
#include <QVBoxLayout>

#include "cluster/jobs/JobQueue.h"
#include "cluster/workspace/RunFiles.h"
#include "cluster/workspace/Workspace.h"
#include "engine/config/config.h"
#include "ui/Theme.h"

namespace fathom::ui {

ResumeDialog::ResumeDialog(const cluster::CheckpointRecord& checkpoint, const cluster::RunRecord& run, cluster::JobQueue* queue,
                           QWidget* parent)
    : QDialog(parent), m_checkpoint(checkpoint), m_run(run), m_queue(queue) {
  setWindowTitle(tr("Resume from step %1").arg(checkpoint.step));
  resize(720, 520);
  const QString resolved = QDir(run.runDir).filePath(cluster::run_files::configFile());
  m_config = QFileInfo::exists(resolved) ? resolved : run.configPath;

  auto* layout = new QVBoxLayout(this);
  auto* intro = new QLabel(tr("A new run continues training from step %1 of %2 (weights, optimizer state, data position "
                              "and schedule), with that run's resolved config, devices (%3) and %4 process(es). The "
                              "source run is not changed.")
                               .arg(checkpoint.step)
                               .arg(run.name.isEmpty() ? checkpoint.runId : run.name)
                               .arg(run.devices.isEmpty() ? tr("as its config says") : run.devices.join(QStringLiteral(", ")))
                               .arg(std::max(1, run.nprocs)),
                           this);
  intro->setWordWrap(true);
  layout->addWidget(intro);
  auto* form = new QFormLayout;
  m_name = new QLineEdit(this);
  m_name->setText((run.name.isEmpty() ? checkpoint.runId : run.name) + QStringLiteral("-from-%1").arg(checkpoint.step));
  form->addRow(tr("Run name"), m_name);
  m_overrides = new QPlainTextEdit(this);
  m_overrides->setObjectName(QStringLiteral("overrides"));
  m_overrides->setPlaceholderText(tr("One key=value per line, passed as --set, e.g.\ntrain.max_steps=2000\noptimizer.lr=1e-4"));
  m_overrides->setFont(QFontDatabase::systemFont(QFontDatabase::FixedFont));
  m_overrides->setMaximumHeight(110);
  form->addRow(tr("Overrides"), m_overrides);
  layout->addLayout(form);
  m_problem = new QLabel(this);
  m_problem->setWordWrap(true);
  layout->addWidget(m_problem);
  layout->addWidget(new QLabel(tr("Command preview:"), this));
  m_preview = new QPlainTextEdit(this);
  m_preview->setReadOnly(true);
  m_preview->setFont(QFontDatabase::systemFont(QFontDatabase::FixedFont));
  layout->addWidget(m_preview, 1);
  auto* buttons = new QDialogButtonBox(QDialogButtonBox::Cancel, this);
  QPushButton* go = buttons->addButton(tr("Launch"), QDialogButtonBox::AcceptRole);
  go->setObjectName(QStringLiteral("launch"));
  go->setDefault(true);
  layout->addWidget(buttons);
  connect(buttons, &QDialogButtonBox::rejected, this, &QDialog::reject);
  connect(buttons, &QDialogButtonBox::accepted, this, [this] {
    if (launch()) accept();
  });
  m_debounce = new QTimer(this);
  m_debounce->setSingleShot(true);
  m_debounce->setInterval(250);
  connect(m_debounce, &QTimer::timeout, this, &ResumeDialog::update);
  connect(m_name, &QLineEdit::textChanged, m_debounce, qOverload<>(&QTimer::start));
  connect(m_overrides, &QPlainTextEdit::textChanged, m_debounce, qOverload<>(&QTimer::start));
  update();
}

QStringList ResumeDialog::overrideList() const {
  QStringList out;
  for (const QString& line : m_overrides->toPlainText().split(QLatin1Char('\n'))) {
    const QString t = line.trimmed();
    if (!t.isEmpty() && !t.startsWith(QLatin1Char('#'))) out << t;
  }
  return out;
}

cluster::LaunchSpec ResumeDialog::spec() const {
  cluster::LaunchSpec s;
  s.name = m_name->text().trimmed();
  s.configPath = m_config;
  s.overrides = overrideList();
  s.nprocs = std::max(1, m_run.nprocs);
  s.devices = m_run.devices;
  s.resume = m_checkpoint.path;
  if (m_queue) s.engineBinary = m_queue->engineBinary();
  return s;
}

void ResumeDialog::update() {
  cluster::LaunchSpec s = spec();
  s.runId = (s.name.isEmpty() ? QStringLiteral("run") : s.name) + QStringLiteral("-<timestamp>");
  if (m_queue && m_queue->workspace()) s.runDir = QDir(m_queue->workspace()->runsDir()).filePath(s.runId);
  m_preview->setPlainText(cluster::LocalLauncher().commandPreview(s).join(QStringLiteral("\n\n")));
  QString problem;
  if (!m_queue) problem = tr("No job queue: the workspace could not be opened.");
  else if (s.name.isEmpty()) problem = tr("Give the run a name.");
  else if (!QFileInfo(m_checkpoint.path).isDir()) problem = tr("The checkpoint %1 no longer exists.").arg(m_checkpoint.path);
  else if (!QFileInfo(m_config).isFile()) problem = tr("The source run's config %1 no longer exists.").arg(m_config);
  else {
    config::LoadOptions opts;
    opts.check_paths = false;
    for (const QString& o : s.overrides) {
      if (!o.contains(QLatin1Char('='))) {
        problem = tr("Override '%1' is not key=value (e.g. train.max_steps=200).").arg(o);
        break;
      }
      opts.overrides.push_back(o.toStdString());
    }
    if (problem.isEmpty()) {
      const config::LoadResult r = config::load_config_file(m_config.toStdString(), opts);
      if (!r.ok()) problem = QString::fromStdString(r.errors.front().message());
      else if (r.config.train.max_steps <= m_checkpoint.step)
        problem = tr("train.max_steps is %1 but the checkpoint is at step %2: nothing would be trained. Raise it, "
                     "e.g. train.max_steps=%3.")
                      .arg(r.config.train.max_steps)
                      .arg(m_checkpoint.step)
                      .arg(m_checkpoint.step * 2);
    }
  }
  m_problem->setText(problem.isEmpty() ? tr("✓ Ready to launch.") : problem);
  QPalette p = m_problem->palette();
  p.setColor(QPalette::WindowText,
             Theme::instance()->color(problem.isEmpty() ? QStringLiteral("status.completed") : QStringLiteral("status.failed")));
  m_problem->setPalette(p);
  if (QPushButton* go = findChild<QPushButton*>(QStringLiteral("launch"))) go->setEnabled(problem.isEmpty());
}

bool ResumeDialog::launch() {
  m_debounce->stop();
  update();
  if (QPushButton* go = findChild<QPushButton*>(QStringLiteral("launch")); go && !go->isEnabled()) return false;
  cluster::LaunchSpec s = spec();
  // Its own directory with a copy of the config (see the file comment); the id follows the
  // queue's pattern <name>-<yyyyMMdd-HHmmss>-<4 hex>.
  s.runId = QStringLiteral("%1-%2-%3")
                .arg(s.name, QDateTime::currentDateTime().toString(QStringLiteral("yyyyMMdd-HHmmss")))
                .arg(QRandomGenerator::global()->bounded(0x10000), 4, 16, QLatin1Char('0'));
  s.runDir = QDir(m_queue->workspace()->runsDir()).filePath(s.runId);
  const QString copy = QDir(s.runDir).filePath(cluster::run_files::configFile());
  if (!QDir().mkpath(s.runDir) || !QFile::copy(m_config, copy)) {
    m_problem->setText(tr("Could not copy %1 into %2; check the workspace's permissions.").arg(m_config, s.runDir));
    return false;
  }
  s.configPath = copy;
  const QString id = m_queue->enqueue(s);
  if (id.isEmpty()) {
    m_problem->setText(tr("Could not launch: %1").arg(m_queue->lastError()));
    QDir(s.runDir).removeRecursively();
    return false;
  }
  if (auto r = m_queue->workspace()->runs().get(id)) {
    r->parentRunId = m_checkpoint.runId;
    m_queue->workspace()->runs().upsert(*r);
  }
  m_runId = id;
  return true;
}

}  // namespace fathom::ui
