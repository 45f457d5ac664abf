// checkpoints rows <-> CheckpointRecord, reading a checkpoint directory from disk, and the file
// operations of Delete and Keep rules.
#include "cluster/workspace/CheckpointRepository.h"

#include <QDir>
#include <QDirIterator>
#include <QFile>
#include <QFileInfo>
#include <QHash>
#include <QJsonArray>
#include <QJsonDocument>
#include <QJsonObject>
#include <QMutex>
#include <QRegularExpression>
#include <QSaveFile>
#include <QSet>

#include <algorithm>
#include <tuple>

#include "cluster/workspace/Sqlite.h"
#include "cluster/workspace/Workspace.h"
#include "engine/config/config.h"

namespace fathom::cluster {

namespace {

// Columns of kSelect, in readCheckpoint's order.
constexpr const char* kSelect =
    "SELECT c.run_id, c.path, c.step, c.bytes, c.val_loss, c.verified, c.created_at, c.tokens, c.parent_checkpoint, "
    "c.init_from, k.status, k.detail, k.checked_at, "
    "(SELECT group_concat(out_dir, char(10)) FROM (SELECT out_dir FROM checkpoint_exports e "
    "  WHERE e.run_id = c.run_id AND e.path = c.path ORDER BY created_at)) "
    "FROM checkpoints c LEFT JOIN checkpoint_checks k ON k.run_id = c.run_id AND k.path = c.path ";

void readAdapterFacts(CheckpointRecord& c);

CheckpointRecord readCheckpoint(const sql::Statement& st) {
  CheckpointRecord c;
  c.runId = st.text(0);
  c.path = st.text(1);
  c.step = st.integer(2);
  c.bytes = st.integer(3);
  c.valLoss = st.real(4);
  c.verified = st.integer(5) != 0;
  c.createdAt = st.time(6);
  c.tokens = st.integer(7);
  c.parentCheckpoint = st.text(8);
  c.initFrom = st.text(9);
  c.integrity = st.text(10);
  c.integrityDetail = st.text(11);
  c.checkedAt = st.time(12);
  const QString exports = st.text(13);
  if (!exports.isEmpty()) c.exports = exports.split(QLatin1Char('\n'));
  readAdapterFacts(c);
  return c;
}

// model.init_from of a run's resolved config.yaml; cached by path and modification time, since
// every checkpoint of a run asks for the same file.
QString initFromOfConfig(const QString& configPath) {
  const QFileInfo fi(configPath);
  if (!fi.isFile()) return {};
  static QMutex mutex;
  static QHash<QString, QPair<QDateTime, QString>> cache;
  QMutexLocker lock(&mutex);
  const auto it = cache.constFind(configPath);
  if (it != cache.constEnd() && it->first == fi.lastModified()) return it->second;
  fathom::config::LoadOptions opts;
  opts.check_paths = false;
  const auto loaded = fathom::config::load_config_file(configPath.toStdString(), opts);
  const QString initFrom = loaded.ok() ? QString::fromStdString(loaded.config.model.init_from) : QString();
  cache.insert(configPath, {fi.lastModified(), initFrom});
  return initFrom;
}

QJsonObject readJsonObject(const QString& path) {
  QFile f(path);
  if (!f.open(QIODevice::ReadOnly)) return {};
  return QJsonDocument::fromJson(f.readAll()).object();
}

// MANIFEST.json is written by the engine's checkpoint manager; accept the shapes it may take:
// {"files": {"name": {"bytes": N, "sha256": ...}}}, {"files": [{"name"/"path": ..., "bytes"/"size": N}]}
// Returns false when a listed file is missing or has another size, or when nothing is listed.
bool manifestMatches(const QString& dir, const QJsonObject& manifest) {
  const QJsonValue files = manifest.value(QStringLiteral("files"));
  int checked = 0;
  auto check = [&](const QString& name, const QJsonValue& size) {
    if (name.isEmpty()) return false;
    const QFileInfo fi(QDir(dir).filePath(name));
    if (!fi.isFile()) return false;
    if (size.isDouble() && static_cast<qint64>(size.toDouble()) != fi.size()) return false;
    ++checked;
    return true;
  };
  auto sizeOf = [](const QJsonObject& o) {
    for (const char* k : {"bytes", "size"})
      if (o.contains(QLatin1String(k))) return o.value(QLatin1String(k));
    return QJsonValue();
  };
  if (files.isObject()) {
    const QJsonObject o = files.toObject();
    for (auto it = o.begin(); it != o.end(); ++it)
      if (!check(it.key(), it.value().isObject() ? sizeOf(it.value().toObject()) : QJsonValue())) return false;
  } else if (files.isArray()) {
    for (const QJsonValue& v : files.toArray()) {
      const QJsonObject o = v.toObject();
      QString name = o.value(QStringLiteral("name")).toString();
      if (name.isEmpty()) name = o.value(QStringLiteral("path")).toString();
      if (!check(name, sizeOf(o))) return false;
    }
  }
  return checked > 0;
}

// What makes a checkpoint an adapter (or a merge of one), from adapter_config.json and
// state.json. Not kept in the registry: read when a row is read, cached by the files'
// modification times, since every reload of the table asks again.
struct AdapterFacts {
  bool lora = false;
  int r = 0;
  double alpha = 0;
  QString base, mergedFrom;
  QStringList targets;
};

void readAdapterFacts(CheckpointRecord& c) {
  const QDir d(c.path);
  const QFileInfo stateFile(d.filePath(QStringLiteral("state.json"))), adapterFile(d.filePath(QStringLiteral("adapter_config.json")));
  const QDateTime stateTime = stateFile.exists() ? stateFile.lastModified() : QDateTime();
  const QDateTime adapterTime = adapterFile.exists() ? adapterFile.lastModified() : QDateTime();
  static QMutex mutex;
  static QHash<QString, std::tuple<QDateTime, QDateTime, AdapterFacts>> cache;
  AdapterFacts f;
  {
    QMutexLocker lock(&mutex);
    const auto it = cache.constFind(c.path);
    if (it != cache.constEnd() && std::get<0>(*it) == stateTime && std::get<1>(*it) == adapterTime) {
      f = std::get<2>(*it);
    } else {
      const QJsonObject state = stateTime.isValid() ? readJsonObject(stateFile.filePath()) : QJsonObject();
      const QJsonObject adapter = adapterTime.isValid() ? readJsonObject(adapterFile.filePath()) : QJsonObject();
      f.lora = adapterTime.isValid() || state.value(QStringLiteral("lora")).toBool();
      f.r = adapter.value(QStringLiteral("r")).toInt();
      f.alpha = adapter.value(QStringLiteral("lora_alpha")).toDouble();
      for (const QJsonValue& v : adapter.value(QStringLiteral("target_modules")).toArray()) f.targets << v.toString();
      // A single string is PEFT's regex form of target_modules.
      if (adapter.value(QStringLiteral("target_modules")).isString()) f.targets << adapter.value(QStringLiteral("target_modules")).toString();
      f.base = state.value(QStringLiteral("base")).toString();
      if (f.base.isEmpty()) f.base = adapter.value(QStringLiteral("base_model_name_or_path")).toString();
      if (!f.lora) f.base.clear();
      f.mergedFrom = state.value(QStringLiteral("merged_from")).toString();
      cache.insert(c.path, {stateTime, adapterTime, f});
    }
  }
  c.lora = f.lora;
  c.loraR = f.r;
  c.loraAlpha = f.alpha;
  c.loraBase = f.base;
  c.loraTargets = f.targets;
  c.mergedFrom = f.mergedFrom;
}

}  // namespace

bool CheckpointRepository::upsert(const CheckpointRecord& c) {
  sql::Statement st(m_ws.database(),
                    "INSERT INTO checkpoints (run_id, path, step, bytes, val_loss, verified, created_at, tokens, "
                    "parent_checkpoint, init_from) VALUES (?,?,?,?,?,?,?,?,?,?) ON CONFLICT(run_id, path) DO UPDATE SET "
                    "step=excluded.step, bytes=excluded.bytes, val_loss=excluded.val_loss, verified=excluded.verified, "
                    "created_at=excluded.created_at, tokens=excluded.tokens, parent_checkpoint=excluded.parent_checkpoint, "
                    "init_from=excluded.init_from");
  st.bind(1, c.runId).bind(2, c.path).bind(3, c.step).bind(4, c.bytes).bind(5, c.valLoss).bind(6, c.verified).bindTime(7, c.createdAt);
  st.bind(8, c.tokens).bind(9, c.parentCheckpoint.isNull() ? QStringLiteral("") : c.parentCheckpoint);
  st.bind(10, c.initFrom.isNull() ? QStringLiteral("") : c.initFrom);
  if (!st.run()) {
    m_error = st.error();
    return false;
  }
  if (c.createdAt.isValid()) {
    // A check older than the checkpoint was about an earlier checkpoint of that name (a resume
    // from an older step writes step-N again): it says nothing about this one.
    sql::Statement stale(m_ws.database(), "DELETE FROM checkpoint_checks WHERE run_id = ? AND path = ? AND checked_at < ?");
    stale.bind(1, c.runId).bind(2, c.path).bindTime(3, c.createdAt);
    stale.run();
  }
  Q_EMIT m_ws.checkpointsChanged(c.runId);
  return true;
}

QList<CheckpointRecord> CheckpointRepository::listForRun(const QString& runId) const {
  sql::Statement st(m_ws.database(), (QByteArray(kSelect) + "WHERE c.run_id = ? ORDER BY c.step, c.path").constData());
  st.bind(1, runId);
  QList<CheckpointRecord> out;
  while (st.step()) out.append(readCheckpoint(st));
  if (!st.ok()) m_error = st.error();
  return out;
}

QList<CheckpointRecord> CheckpointRepository::listAll() const {
  sql::Statement st(m_ws.database(), (QByteArray(kSelect) + "ORDER BY c.created_at DESC, c.run_id, c.step DESC").constData());
  QList<CheckpointRecord> out;
  while (st.step()) out.append(readCheckpoint(st));
  if (!st.ok()) m_error = st.error();
  return out;
}

std::optional<CheckpointRecord> CheckpointRepository::get(const QString& runId, const QString& path) const {
  sql::Statement st(m_ws.database(), (QByteArray(kSelect) + "WHERE c.run_id = ? AND c.path = ?").constData());
  st.bind(1, runId).bind(2, path);
  if (st.step()) return readCheckpoint(st);
  if (!st.ok()) m_error = st.error();
  return std::nullopt;
}

bool CheckpointRepository::remove(const QString& runId, const QString& path) {
  sql::Transaction tx(m_ws.database());
  for (const char* q : {"DELETE FROM checkpoints WHERE run_id = ? AND path = ?",
                        "DELETE FROM checkpoint_checks WHERE run_id = ? AND path = ?",
                        "DELETE FROM checkpoint_exports WHERE run_id = ? AND path = ?"}) {
    sql::Statement st(m_ws.database(), q);
    st.bind(1, runId).bind(2, path);
    if (!st.run()) {
      m_error = st.error();
      return false;
    }
  }
  QString err;
  if (!tx.commit(&err)) {
    m_error = err;
    return false;
  }
  Q_EMIT m_ws.checkpointsChanged(runId);
  return true;
}

bool CheckpointRepository::removeForRun(const QString& runId) {
  sql::Statement st(m_ws.database(), "DELETE FROM checkpoints WHERE run_id = ?");
  st.bind(1, runId);
  if (!st.run()) {
    m_error = st.error();
    return false;
  }
  Q_EMIT m_ws.checkpointsChanged(runId);
  return true;
}

bool CheckpointRepository::setIntegrity(const QString& runId, const QString& path, const QString& status,
                                        const QString& detail, const QDateTime& checkedAt) {
  sql::Statement st(m_ws.database(),
                    "INSERT INTO checkpoint_checks (run_id, path, status, detail, checked_at) VALUES (?,?,?,?,?) "
                    "ON CONFLICT(run_id, path) DO UPDATE SET status=excluded.status, detail=excluded.detail, "
                    "checked_at=excluded.checked_at");
  st.bind(1, runId).bind(2, path).bind(3, status).bind(4, detail.isNull() ? QStringLiteral("") : detail).bindTime(5, checkedAt);
  if (!st.run()) {
    m_error = st.error();
    return false;
  }
  Q_EMIT m_ws.checkpointsChanged(runId);
  return true;
}

bool CheckpointRepository::addExport(const QString& runId, const QString& path, const QString& outDir, const QString& format,
                                     const QDateTime& at) {
  sql::Statement st(m_ws.database(),
                    "INSERT INTO checkpoint_exports (run_id, path, out_dir, format, created_at) VALUES (?,?,?,?,?) "
                    "ON CONFLICT(run_id, path, out_dir) DO UPDATE SET format=excluded.format, created_at=excluded.created_at");
  st.bind(1, runId).bind(2, path).bind(3, QFileInfo(outDir).absoluteFilePath()).bind(4, format).bindTime(5, at);
  if (!st.run()) {
    m_error = st.error();
    return false;
  }
  Q_EMIT m_ws.checkpointsChanged(runId);
  return true;
}

std::optional<CheckpointRecord> CheckpointRepository::inspect(const QString& runId, const QString& dir) {
  const QDir d(dir);
  const QString manifestPath = d.filePath(QStringLiteral("MANIFEST.json"));
  const QString statePath = d.filePath(QStringLiteral("state.json"));
  const bool hasManifest = QFileInfo::exists(manifestPath), hasState = QFileInfo::exists(statePath);
  if (!hasManifest && !hasState) return std::nullopt;

  CheckpointRecord c;
  c.runId = runId;
  c.path = QFileInfo(dir).absoluteFilePath();
  static const QRegularExpression stepName(QStringLiteral("^step-(\\d+)$"));
  const auto m = stepName.match(QFileInfo(dir).fileName());
  if (m.hasMatch()) c.step = m.captured(1).toLongLong();
  const QJsonObject state = readJsonObject(statePath);
  if (state.value(QStringLiteral("step")).isDouble()) c.step = static_cast<qint64>(state.value(QStringLiteral("step")).toDouble());
  if (state.value(QStringLiteral("best_val_loss")).isDouble()) c.valLoss = state.value(QStringLiteral("best_val_loss")).toDouble();
  if (state.value(QStringLiteral("tokens")).isDouble()) c.tokens = static_cast<qint64>(state.value(QStringLiteral("tokens")).toDouble());
  c.parentCheckpoint = state.value(QStringLiteral("parent_checkpoint")).toString();
  // <run_dir>/checkpoints/step-N -> <run_dir>/config.yaml (the engine's default save_dir).
  c.initFrom = initFromOfConfig(QDir::cleanPath(c.path + QStringLiteral("/../../config.yaml")));
  QDirIterator it(dir, QDir::Files | QDir::Hidden, QDirIterator::Subdirectories);
  QDateTime newest;
  while (it.hasNext()) {
    it.next();
    c.bytes += it.fileInfo().size();
    if (!newest.isValid() || it.fileInfo().lastModified() > newest) newest = it.fileInfo().lastModified();
  }
  c.createdAt = newest.isValid() ? newest : QFileInfo(dir).lastModified();
  if (hasManifest) {
    // The engine's manifest (engine/checkpoint/manifest.h): step, val_loss, created_unix_ms, files.
    const QJsonObject manifest = readJsonObject(manifestPath);
    if (manifest.value(QStringLiteral("step")).isDouble())
      c.step = static_cast<qint64>(manifest.value(QStringLiteral("step")).toDouble());
    if (manifest.value(QStringLiteral("val_loss")).isDouble())
      c.valLoss = manifest.value(QStringLiteral("val_loss")).toDouble();
    if (manifest.value(QStringLiteral("created_unix_ms")).toDouble() > 0)
      c.createdAt = QDateTime::fromMSecsSinceEpoch(static_cast<qint64>(manifest.value(QStringLiteral("created_unix_ms")).toDouble()));
    c.verified = manifestMatches(dir, manifest);
  }
  readAdapterFacts(c);
  return c;
}

bool CheckpointRepository::registerRun(const RunRecord& run) {
  if (!m_ws.runs().upsert(run)) {
    m_error = m_ws.runs().lastError();
    return false;
  }
  const QDir ckdir(QDir(run.runDir).filePath(QStringLiteral("checkpoints")));
  for (const QString& name : ckdir.entryList({QStringLiteral("step-*")}, QDir::Dirs | QDir::NoDotAndDotDot)) {
    if (name.endsWith(QLatin1String(".tmp"))) continue;
    if (const auto c = inspect(run.id, ckdir.filePath(name)); c && !upsert(*c)) return false;
  }
  return true;
}

// ---- Delete and keep rules ---------------------------------------------------------------------

QString CheckpointRepository::deletionRefusal(const QList<CheckpointRecord>& doomed) const {
  QSet<QString> runIds;
  for (const CheckpointRecord& c : doomed) runIds.insert(c.runId);
  QSet<QString> doomedPaths;
  for (const CheckpointRecord& c : doomed) doomedPaths.insert(QDir::cleanPath(c.path));
  // A queued run that is to resume from one of them would fail when it starts.
  for (const RunRecord& q : m_ws.runs().listByStatus(run_status::queued)) {
    if (!q.resume.isEmpty() && q.resume != QLatin1String("auto") && doomedPaths.contains(QDir::cleanPath(q.resume)))
      return QStringLiteral("run %1 is queued to resume from %2; cancel it first (Runs page), or keep the checkpoint.")
          .arg(q.id, q.resume);
  }
  for (const QString& runId : runIds) {
    const std::optional<RunRecord> run = m_ws.runs().get(runId);
    if (!run || (run->status != run_status::running && run->status != run_status::queued)) continue;
    int wholeLeft = 0, wholeDoomed = 0;
    qint64 newest = -1;
    for (const CheckpointRecord& c : listForRun(runId)) {
      if (!c.isWhole()) continue;
      if (doomedPaths.contains(QDir::cleanPath(c.path))) {
        ++wholeDoomed;
        newest = std::max(newest, c.step);
      } else {
        ++wholeLeft;
      }
    }
    if (wholeDoomed > 0 && wholeLeft == 0) {
      return QStringLiteral("run %1 is %2 and step %3 is its last whole checkpoint: if the run crashed now, nothing "
                            "would be left to resume from. Keep it until the run saves a newer one (or stop the run "
                            "first).")
          .arg(runId, run->status)
          .arg(newest);
    }
  }
  return {};
}

bool CheckpointRepository::removeTree(const QString& dir, QString* error) {
  if (!QFileInfo(dir).isDir()) return true;
  if (QDir(dir).removeRecursively()) return true;
  if (error) *error = QStringLiteral("could not remove every file of %1; delete it by hand").arg(dir);
  return false;
}

QString CheckpointRepository::latestName(const QString& saveDir) {
  QFile f(QDir(saveDir).filePath(QStringLiteral("latest")));
  if (!f.open(QIODevice::ReadOnly)) return {};
  return QString::fromUtf8(f.readLine()).trimmed();
}

bool CheckpointRepository::rewriteLatest(const QString& saveDir, QString* latestNow, QString* error) {
  static const QRegularExpression stepName(QStringLiteral("^step-(0|[1-9]\\d*)$"));
  qint64 best = -1;
  QString bestName;
  const QDir d(saveDir);
  for (const QString& name : d.entryList(QDir::Dirs | QDir::NoDotAndDotDot)) {
    const auto m = stepName.match(name);
    if (!m.hasMatch()) continue;
    const qint64 step = m.captured(1).toLongLong();
    if (step <= best) continue;
    const auto c = inspect(QString(), d.filePath(name));
    if (c && c->verified) {
      best = step;
      bestName = name;
    }
  }
  const QString path = d.filePath(QStringLiteral("latest"));
  if (latestNow) *latestNow = bestName;
  if (bestName.isEmpty()) {
    if (QFileInfo::exists(path) && !QFile::remove(path)) {
      if (error) *error = QStringLiteral("cannot remove %1").arg(path);
      return false;
    }
    return true;
  }
  // QSaveFile writes a temporary file, fsyncs it and renames it over `latest`: readers (a
  // starting engine with --resume auto) see the old name or the new one, never half of one.
  QSaveFile f(path);
  if (!f.open(QIODevice::WriteOnly) || f.write((bestName + QLatin1Char('\n')).toUtf8()) < 0 || !f.commit()) {
    if (error) *error = QStringLiteral("cannot write %1: %2").arg(path, f.errorString());
    return false;
  }
  return true;
}

bool CheckpointRepository::deleteCheckpoint(const CheckpointRecord& c, QString* trash) {
  if (trash) trash->clear();
  const QString refusal = deletionRefusal({c});
  if (!refusal.isEmpty()) {
    m_error = refusal;
    return false;
  }
  const QString dir = QDir::cleanPath(c.path);
  const QString saveDir = QFileInfo(dir).absolutePath();
  const QString name = QFileInfo(dir).fileName();
  if (QFileInfo(dir).isDir()) {
    // Rename first (what the engine's retention does): a crash mid-delete leaves a *.tmp that the
    // engine removes at its next start, never a step-N that lost some of its files.
    const QString doomed = dir + QStringLiteral(".deleting.tmp");
    removeTree(doomed);
    if (!QDir().rename(dir, doomed)) {
      m_error = QStringLiteral("cannot move %1 aside to delete it; check the directory's permissions").arg(dir);
      return false;
    }
    if (trash) *trash = doomed;
  }
  if (latestName(saveDir) == name) {
    QString now, err;
    if (!rewriteLatest(saveDir, &now, &err)) {
      m_error = QStringLiteral("%1 was deleted but %2/latest still names it: %3").arg(dir, saveDir, err);
      remove(c.runId, c.path);
      return false;
    }
  }
  return remove(c.runId, c.path);
}

CheckpointRepository::KeepPlan CheckpointRepository::planKeepRules(const QString& runId, int keepLatest, int keepBest) const {
  KeepPlan plan;
  const QList<CheckpointRecord> all = listForRun(runId);  // by step
  QHash<QString, QStringList> reasons;
  QList<CheckpointRecord> whole;
  for (const CheckpointRecord& c : all)
    if (c.isWhole()) whole.append(c);
  if (keepLatest > 0) {
    QList<CheckpointRecord> byStep = whole;
    std::sort(byStep.begin(), byStep.end(), [](const auto& a, const auto& b) { return a.step > b.step; });
    for (int i = 0; i < byStep.size() && i < keepLatest; ++i)
      reasons[byStep[i].path].append(QStringLiteral("one of the %1 latest").arg(keepLatest));
  }
  if (keepBest > 0) {
    QList<CheckpointRecord> scored;
    for (const CheckpointRecord& c : whole)
      if (!std::isnan(c.valLoss)) scored.append(c);
    std::stable_sort(scored.begin(), scored.end(), [](const auto& a, const auto& b) { return a.valLoss < b.valLoss; });
    for (int i = 0; i < scored.size() && i < keepBest; ++i)
      reasons[scored[i].path].append(QStringLiteral("one of the %1 best by validation loss (%2)").arg(keepBest).arg(scored[i].valLoss, 0, 'g', 5));
  }
  const bool anyRule = keepLatest > 0 || keepBest > 0;
  for (const CheckpointRecord& c : all) {
    if (!anyRule || reasons.contains(c.path)) {
      plan.keep.append(c);
      plan.why.append(QStringLiteral("step %1: %2").arg(c.step).arg(anyRule ? reasons.value(c.path).join(QStringLiteral(", ")) : QStringLiteral("no rule chosen")));
    } else {
      plan.remove.append(c);
      plan.freedBytes += c.bytes;
    }
  }
  plan.refusal = deletionRefusal(plan.remove);
  return plan;
}

}  // namespace fathom::cluster
