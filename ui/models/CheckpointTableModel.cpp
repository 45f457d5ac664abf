// CheckpointTableModel: small (tens to hundreds of rows), so a change reloads it whole.
#include "ui/models/CheckpointTableModel.h"

#include <QDir>
#include <QFileInfo>
#include <QLocale>

#include <algorithm>
#include <cmath>

#include "cluster/workspace/Workspace.h"
#include "ui/Format.h"
#include "ui/Theme.h"

namespace fathom::ui {

namespace integrity = cluster::checkpoint_integrity;

CheckpointTableModel::CheckpointTableModel(cluster::Workspace* workspace, QObject* parent)
    : QAbstractTableModel(parent), m_ws(workspace) {
  if (m_ws) {
    connect(m_ws, &cluster::Workspace::checkpointsChanged, this, [this] { reload(); });
    connect(m_ws, &cluster::Workspace::runsChanged, this, [this] { reload(); });
    connect(m_ws, &cluster::Workspace::reloaded, this, [this] { reload(); });
  }
  reload();
}

void CheckpointTableModel::reload() {
  beginResetModel();
  m_rows = m_ws && m_ws->isOpen() ? m_ws->checkpoints().listAll() : QList<cluster::CheckpointRecord>{};
  m_runs.clear();
  if (m_ws && m_ws->isOpen())
    for (const cluster::RunRecord& r : m_ws->runs().list()) m_runs.insert(r.id, r);
  endResetModel();
}

int CheckpointTableModel::rowOf(const QString& path) const {
  for (int i = 0; i < m_rows.size(); ++i)
    if (m_rows[i].path == path) return i;
  return -1;
}

int CheckpointTableModel::countForRun(const QString& runId) const {
  int n = 0;
  for (const auto& c : m_rows) n += c.runId == runId;
  return n;
}

QStringList CheckpointTableModel::runIds() const {
  QStringList ids;
  for (const auto& c : m_rows)
    if (!ids.contains(c.runId)) ids.append(c.runId);
  std::sort(ids.begin(), ids.end(), [this](const QString& a, const QString& b) {
    return runLabel(a).compare(runLabel(b), Qt::CaseInsensitive) < 0;
  });
  return ids;
}

QString CheckpointTableModel::runLabel(const QString& runId) const {
  const QString name = m_runs.value(runId).name;
  return name.isEmpty() || name == runId ? runId : QStringLiteral("%1 (%2)").arg(name, runId);
}

QString CheckpointTableModel::shortCheckpointName(const QString& path, const QString& ownRunId) {
  // <runs>/<run-id>/checkpoints/step-N -> "run-id step N"; anything else (a Hugging Face model
  // directory) by its directory name.
  const QFileInfo fi(QDir::cleanPath(path));
  const QString name = fi.fileName();
  if (!name.startsWith(QLatin1String("step-"))) return name.isEmpty() ? path : name;
  const QString step = name.mid(5);
  const QDir saveDir = fi.dir();
  const QString runId = QFileInfo(saveDir.absolutePath()).dir().dirName();
  if (runId == ownRunId || runId.isEmpty()) return QStringLiteral("step %1").arg(step);
  return QStringLiteral("%1 step %2").arg(runId, step);
}

QString CheckpointTableModel::integrityText(const cluster::CheckpointRecord& c) {
  if (!c.verified) return tr("✗ damaged: a file is missing or has another size");
  if (c.integrity == integrity::damaged) {
    // "model.safetensors: sha256 mismatch (file hashes to ...)": the cell keeps what and where.
    const QString first = c.integrityDetail.section(QLatin1Char('\n'), 0, 0).section(QStringLiteral(" ("), 0, 0);
    return first.isEmpty() ? tr("✗ damaged") : tr("✗ damaged: %1").arg(first);
  }
  if (c.integrity == integrity::verified) return tr("✓ verified");
  return tr("unverified");
}

QString CheckpointTableModel::integrityTip(const cluster::CheckpointRecord& c) {
  if (!c.verified)
    return tr("MANIFEST.json is missing, or a file it lists is missing or has another size: this checkpoint is not "
              "whole and cannot be resumed from. Verify lists the damaged files.");
  const QString when = c.checkedAt.isValid() ? QLocale().toString(c.checkedAt.toLocalTime(), QLocale::ShortFormat) : QString();
  if (c.integrity == integrity::damaged)
    return tr("Verification on %1 found damaged files:\n%2").arg(when, c.integrityDetail);
  if (c.integrity == integrity::verified)
    return tr("Every file matches the sha256 in MANIFEST.json (verified %1)").arg(when);
  return tr("Every file MANIFEST.json lists is present with its size; contents not hashed yet (Verify checks sha256)");
}

namespace {

// state.json's parent_checkpoint names the init_from checkpoint in a fine-tune's first segment:
// that is where it was fine-tuned from, not a resume.
// A merge's parent_checkpoint is the base the adapter was folded into: not a resume either.
bool resumed(const cluster::CheckpointRecord& c) {
  return !c.parentCheckpoint.isEmpty() && c.mergedFrom.isEmpty() && QDir::cleanPath(c.parentCheckpoint) != QDir::cleanPath(c.initFrom);
}

}  // namespace

QString CheckpointTableModel::adapterText(const cluster::CheckpointRecord& c) {
  if (!c.lora) return {};
  const QString rank = c.loraR > 0 ? tr("LoRA adapter (r %1)").arg(c.loraR) : tr("LoRA adapter");
  return c.loraBase.isEmpty() ? rank : tr("%1 on %2").arg(rank, shortCheckpointName(c.loraBase));
}

QString CheckpointTableModel::lineageText(const cluster::CheckpointRecord& c) {
  QStringList parts;
  if (c.lora) parts.append(adapterText(c));
  if (!c.mergedFrom.isEmpty()) parts.append(tr("merged from %1").arg(shortCheckpointName(c.mergedFrom)));
  if (resumed(c)) parts.append(tr("resumed from %1").arg(shortCheckpointName(c.parentCheckpoint, c.runId)));
  if (!c.initFrom.isEmpty() && c.mergedFrom.isEmpty()) parts.append(tr("fine-tuned from %1").arg(shortCheckpointName(c.initFrom)));
  if (!c.exports.isEmpty()) {
    QString e = tr("exported to %1").arg(QFileInfo(c.exports.last()).fileName());
    if (c.exports.size() > 1) e += tr(" (+%1)").arg(c.exports.size() - 1);
    parts.append(e);
  }
  return parts.join(QStringLiteral(" · "));
}

QString CheckpointTableModel::lineageTip(const cluster::CheckpointRecord& c) {
  QStringList lines;
  if (c.lora) {
    QString l = tr("LoRA adapter");
    if (c.loraR > 0) l += tr(" (r %1, lora_alpha %2)").arg(c.loraR).arg(c.loraAlpha);
    if (!c.loraBase.isEmpty()) l += tr(" on the base %1").arg(QDir::toNativeSeparators(c.loraBase));
    if (!c.loraTargets.isEmpty()) l += tr("; adapts %1").arg(c.loraTargets.join(QStringLiteral(", ")));
    lines.append(l);
  }
  if (!c.mergedFrom.isEmpty()) {
    QString l = tr("Merged from the adapter %1").arg(QDir::toNativeSeparators(c.mergedFrom));
    if (!c.parentCheckpoint.isEmpty()) l += tr(" into the base %1").arg(QDir::toNativeSeparators(c.parentCheckpoint));
    lines.append(l);
  }
  if (resumed(c)) lines.append(tr("Resumed from %1").arg(QDir::toNativeSeparators(c.parentCheckpoint)));
  if (!c.initFrom.isEmpty() && c.mergedFrom.isEmpty()) lines.append(tr("Fine-tuned from %1 (model.init_from)").arg(QDir::toNativeSeparators(c.initFrom)));
  for (const QString& e : c.exports) lines.append(tr("Exported to %1").arg(QDir::toNativeSeparators(e)));
  return lines.isEmpty() ? tr("Trained from scratch in this run; not exported") : lines.join(QLatin1Char('\n'));
}

int CheckpointTableModel::rowCount(const QModelIndex& parent) const { return parent.isValid() ? 0 : static_cast<int>(m_rows.size()); }

int CheckpointTableModel::columnCount(const QModelIndex& parent) const { return parent.isValid() ? 0 : ColumnCount; }

QVariant CheckpointTableModel::data(const QModelIndex& index, int role) const {
  if (!index.isValid() || index.row() >= m_rows.size() || index.column() >= ColumnCount) return {};
  const cluster::CheckpointRecord& c = m_rows[index.row()];
  if (role == RunIdRole) return c.runId;
  if (role == PathRole) return c.path;
  if (role == IntegrityRole) return c.isDamaged() ? QString(integrity::damaged) : c.integrity;
  if (role == Qt::DisplayRole) {
    switch (index.column()) {
      case Run: return runLabel(c.runId);  // "name (id)", or the id alone when the name is the id
      case Step: return QLocale().toString(c.step);
      case Tokens: return c.tokens > 0 ? formatSi(double(c.tokens)) : QString();
      case ValLoss: return std::isnan(c.valLoss) ? QString() : formatValue(c.valLoss);
      case Size: return formatBytes(double(c.bytes));
      case Integrity: return integrityText(c);
      case Lineage: return lineageText(c);
      case Created: return c.createdAt.isValid() ? QLocale().toString(c.createdAt.toLocalTime(), QLocale::ShortFormat) : QString();
      case Path: return QDir::toNativeSeparators(c.path);
    }
  }
  if (role == SortRole) {
    switch (index.column()) {
      case Step: return c.step;
      case Tokens: return c.tokens;
      case ValLoss: return std::isnan(c.valLoss) ? 1e300 : c.valLoss;
      case Size: return c.bytes;
      case Integrity: return c.isDamaged() ? 0 : (c.integrity == integrity::verified ? 2 : 1);
      case Created: return c.createdAt.isValid() ? c.createdAt.toMSecsSinceEpoch() : 0;
      default: return data(index, Qt::DisplayRole);
    }
  }
  if (role == Qt::ForegroundRole && index.column() == Integrity) {
    if (c.isDamaged()) return Theme::instance()->statusColor(QStringLiteral("failed"));
    if (c.integrity == integrity::verified) return Theme::instance()->statusColor(QStringLiteral("completed"));
    return {};
  }
  if (role == Qt::ToolTipRole) {
    switch (index.column()) {
      case Integrity: return integrityTip(c);
      case Lineage: return lineageTip(c);
      case Tokens: return c.tokens > 0 ? tr("%1 tokens seen").arg(QLocale().toString(c.tokens)) : tr("not recorded");
      case Size: return tr("%1 bytes").arg(QLocale().toString(c.bytes));
      default: return QDir::toNativeSeparators(c.path);
    }
  }
  if (role == Qt::TextAlignmentRole &&
      (index.column() == Step || index.column() == Tokens || index.column() == ValLoss || index.column() == Size))
    return QVariant(Qt::AlignRight | Qt::AlignVCenter);
  return {};
}

QVariant CheckpointTableModel::headerData(int section, Qt::Orientation orientation, int role) const {
  if (orientation != Qt::Horizontal) return QAbstractTableModel::headerData(section, orientation, role);
  if (role == Qt::ToolTipRole) {
    switch (section) {
      case Tokens: return tr("Tokens seen up to this step (state.json)");
      case ValLoss: return tr("Best validation loss up to this step");
      case Integrity: return tr("verified: sha256 of every file checked · unverified: files present with their sizes, "
                                "not hashed · damaged: cannot be resumed from");
      case Lineage: return tr("LoRA adapter on its base (adapter_config.json), merged from (lora merge), resumed from "
                              "(state.json parent_checkpoint), fine-tuned from (model.init_from), exported to (Hugging Face "
                              "exports made here)");
      default: return {};
    }
  }
  if (role != Qt::DisplayRole) return QAbstractTableModel::headerData(section, orientation, role);
  switch (section) {
    case Run: return tr("Run");
    case Step: return tr("Step");
    case Tokens: return tr("Tokens");
    case ValLoss: return tr("Val loss");
    case Size: return tr("Size");
    case Integrity: return tr("Integrity");
    case Lineage: return tr("Lineage");
    case Created: return tr("Created");
    case Path: return tr("Path");
  }
  return {};
}

// ---- CheckpointFilterModel -----------------------------------------------------------------------

CheckpointFilterModel::CheckpointFilterModel(QObject* parent) : QSortFilterProxyModel(parent) {
  setSortRole(CheckpointTableModel::SortRole);
  setDynamicSortFilter(true);
}

void CheckpointFilterModel::setSourceTable(CheckpointTableModel* model) {
  m_table = model;
  setSourceModel(model);
}

void CheckpointFilterModel::setText(const QString& text) {
  m_text = text.trimmed();
  invalidateFilter();
}

void CheckpointFilterModel::setRunId(const QString& runId) {
  m_runId = runId;
  invalidateFilter();
}

void CheckpointFilterModel::setVerifiedOnly(bool on) {
  m_verifiedOnly = on;
  invalidateFilter();
}

bool CheckpointFilterModel::filterAcceptsRow(int sourceRow, const QModelIndex&) const {
  if (!m_table || sourceRow >= m_table->rowCount()) return false;
  const cluster::CheckpointRecord& c = m_table->record(sourceRow);
  if (!m_runId.isEmpty() && c.runId != m_runId) return false;
  if (m_verifiedOnly && (c.isDamaged() || c.integrity != integrity::verified)) return false;
  if (!m_text.isEmpty() && !m_table->runLabel(c.runId).contains(m_text, Qt::CaseInsensitive)) return false;
  return true;
}

}  // namespace fathom::ui
