// KeepRulesDialog; see KeepRulesDialog.h.
#include "ui/pages/checkpoints/KeepRulesDialog.h"

#include <QCheckBox>
#include <QComboBox>
#include <QDialogButtonBox>
#include <QFormLayout>
#include <QHBoxLayout>
#include <QHeaderView>
#include <QLabel>
#include <QLocale>
#include <QPushButton>
#include <QSpinBox>
#include <QTreeWidget>
#include <QVBoxLayout>

#include <cmath>

#include "cluster/workspace/Workspace.h"
#include "ui/Format.h"
#include "ui/Theme.h"

namespace fathom::ui {

KeepRulesDialog::KeepRulesDialog(cluster::Workspace* workspace, const QList<QPair<QString, QString>>& runs,
                                 const QString& runId, QWidget* parent)
    : QDialog(parent), m_ws(workspace) {
  setWindowTitle(tr("Keep rules"));
  resize(680, 520);
  auto* layout = new QVBoxLayout(this);
  auto* form = new QFormLayout;
  m_run = new QComboBox(this);
  for (const auto& r : runs) m_run->addItem(r.second, r.first);
  m_run->setCurrentIndex(std::max(0, m_run->findData(runId)));
  form->addRow(tr("Run"), m_run);
  auto* latestRow = new QHBoxLayout;
  m_latestOn = new QCheckBox(tr("Keep the"), this);
  m_latestOn->setChecked(true);
  m_latest = new QSpinBox(this);
  m_latest->setRange(1, 100000);
  m_latest->setValue(2);
  latestRow->addWidget(m_latestOn);
  latestRow->addWidget(m_latest);
  latestRow->addWidget(new QLabel(tr("latest checkpoints (by step)"), this));
  latestRow->addStretch(1);
  form->addRow(latestRow);
  auto* bestRow = new QHBoxLayout;
  m_bestOn = new QCheckBox(tr("Keep the"), this);
  m_best = new QSpinBox(this);
  m_best->setRange(1, 100000);
  m_best->setValue(1);
  bestRow->addWidget(m_bestOn);
  bestRow->addWidget(m_best);
  bestRow->addWidget(new QLabel(tr("best by validation loss"), this));
  bestRow->addStretch(1);
  form->addRow(bestRow);
  layout->addLayout(form);
  m_preview = new QTreeWidget(this);
  m_preview->setRootIsDecorated(false);
  m_preview->setHeaderLabels({tr("Step"), tr("Val loss"), tr("Size"), tr("Action"), tr("Why")});
  m_preview->header()->setStretchLastSection(true);
  layout->addWidget(m_preview, 1);
  m_summary = new QLabel(this);
  m_summary->setWordWrap(true);
  layout->addWidget(m_summary);
  auto* buttons = new QDialogButtonBox(QDialogButtonBox::Cancel, this);
  m_apply = buttons->addButton(tr("Delete"), QDialogButtonBox::DestructiveRole);
  m_apply->setObjectName(QStringLiteral("apply"));
  layout->addWidget(buttons);
  connect(buttons, &QDialogButtonBox::rejected, this, &QDialog::reject);
  connect(m_apply, &QPushButton::clicked, this, [this] {
    apply();
    accept();
  });
  connect(m_run, &QComboBox::currentIndexChanged, this, &KeepRulesDialog::updatePlan);
  connect(m_latestOn, &QCheckBox::toggled, this, &KeepRulesDialog::updatePlan);
  connect(m_bestOn, &QCheckBox::toggled, this, &KeepRulesDialog::updatePlan);
  connect(m_latest, &QSpinBox::valueChanged, this, &KeepRulesDialog::updatePlan);
  connect(m_best, &QSpinBox::valueChanged, this, &KeepRulesDialog::updatePlan);
  updatePlan();
}

void KeepRulesDialog::setRules(bool latestOn, int latest, bool bestOn, int best) {
  m_latest->setValue(latest);
  m_best->setValue(best);
  m_latestOn->setChecked(latestOn);
  m_bestOn->setChecked(bestOn);
  updatePlan();
}

void KeepRulesDialog::updatePlan() {
  m_latest->setEnabled(m_latestOn->isChecked());
  m_best->setEnabled(m_bestOn->isChecked());
  const QString runId = m_run->currentData().toString();
  m_plan = m_ws ? m_ws->checkpoints().planKeepRules(runId, m_latestOn->isChecked() ? m_latest->value() : 0,
                                                     m_bestOn->isChecked() ? m_best->value() : 0)
                : cluster::CheckpointRepository::KeepPlan{};
  m_preview->clear();
  QHash<QString, QString> why;
  for (int i = 0; i < m_plan.keep.size() && i < m_plan.why.size(); ++i)
    why.insert(m_plan.keep[i].path, m_plan.why[i].section(QStringLiteral(": "), 1));
  QList<cluster::CheckpointRecord> all = m_plan.keep + m_plan.remove;
  std::sort(all.begin(), all.end(), [](const auto& a, const auto& b) { return a.step < b.step; });
  const QColor gone = Theme::instance()->statusColor(QStringLiteral("failed"));
  for (const cluster::CheckpointRecord& c : all) {
    const bool keep = why.contains(c.path);
    auto* item = new QTreeWidgetItem(m_preview, {QLocale().toString(c.step), std::isnan(c.valLoss) ? QString() : formatValue(c.valLoss),
                                                 formatBytes(double(c.bytes)), keep ? tr("keep") : tr("delete"),
                                                 keep ? why.value(c.path) : (c.isDamaged() ? tr("damaged; no rule keeps it") : tr("no rule keeps it"))});
    item->setData(0, Qt::UserRole, c.path);
    item->setTextAlignment(0, Qt::AlignRight | Qt::AlignVCenter);
    if (!keep) item->setForeground(3, gone);
  }
  for (int i = 0; i < 4; ++i) m_preview->resizeColumnToContents(i);
  if (!m_plan.refusal.isEmpty()) {
    m_summary->setText(m_plan.refusal);
  } else if (m_plan.remove.isEmpty()) {
    m_summary->setText(tr("Nothing to delete: every checkpoint of this run is kept."));
  } else {
    m_summary->setText(tr("%1 will be deleted, freeing %2; %3 kept.")
                           .arg(m_plan.remove.size() == 1 ? tr("1 checkpoint") : tr("%1 checkpoints").arg(m_plan.remove.size()))
                           .arg(formatBytes(double(m_plan.freedBytes)))
                           .arg(m_plan.keep.size()));
  }
  m_apply->setEnabled(m_plan.refusal.isEmpty() && !m_plan.remove.isEmpty());
  m_apply->setText(m_plan.remove.isEmpty() ? tr("Delete") : tr("Delete %1").arg(m_plan.remove.size()));
}

QStringList KeepRulesDialog::apply(QString* error) {
  QStringList trash;
  QString err;
  int deleted = 0;
  if (!m_ws || !m_plan.refusal.isEmpty()) {
    err = m_plan.refusal;
  } else {
    // Oldest first: should one fail, the newest (most useful) ones are still there.
    QList<cluster::CheckpointRecord> doomed = m_plan.remove;
    std::sort(doomed.begin(), doomed.end(), [](const auto& a, const auto& b) { return a.step < b.step; });
    for (const cluster::CheckpointRecord& c : doomed) {
      QString t;
      if (!m_ws->checkpoints().deleteCheckpoint(c, &t)) {
        err = m_ws->checkpoints().lastError();
        break;
      }
      ++deleted;
      if (!t.isEmpty()) trash.append(t);
    }
  }
  if (error) *error = err;
  emit applied(deleted, trash, err);
  updatePlan();
  return trash;
}

}  // namespace fathom::ui
