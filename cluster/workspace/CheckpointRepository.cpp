// checkpoints rows <-> CheckpointRecord, and reading a checkpoint directory from disk.
#include "cluster/workspace/CheckpointRepository.h"

#include <QDir>
#include <QDirIterator>
#include <QFile>
#include <QFileInfo>
#include <QJsonArray>
#include <QJsonDocument>
#include <QJsonObject>
#include <QRegularExpression>

#include "cluster/workspace/Sqlite.h"
#include "cluster/workspace/Workspace.h"

namespace fathom::cluster {

namespace {

CheckpointRecord readCheckpoint(const sql::Statement& st) {
  CheckpointRecord c;
  c.runId = st.text(0);
  c.path = st.text(1);
  c.step = st.integer(2);
  c.bytes = st.integer(3);
  c.valLoss = st.real(4);
  c.verified = st.integer(5) != 0;
  c.createdAt = st.time(6);
  return c;
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

}  // namespace

bool CheckpointRepository::upsert(const CheckpointRecord& c) {
  sql::Statement st(m_ws.database(),
                    "INSERT INTO checkpoints (run_id, path, step, bytes, val_loss, verified, created_at) "
                    "VALUES (?,?,?,?,?,?,?) ON CONFLICT(run_id, path) DO UPDATE SET step=excluded.step, "
                    "bytes=excluded.bytes, val_loss=excluded.val_loss, verified=excluded.verified, "
                    "created_at=excluded.created_at");
  st.bind(1, c.runId).bind(2, c.path).bind(3, c.step).bind(4, c.bytes).bind(5, c.valLoss).bind(6, c.verified).bindTime(7, c.createdAt);
  if (!st.run()) {
    m_error = st.error();
    return false;
  }
  Q_EMIT m_ws.checkpointsChanged(c.runId);
  return true;
}

QList<CheckpointRecord> CheckpointRepository::listForRun(const QString& runId) const {
  sql::Statement st(m_ws.database(),
                    "SELECT run_id, path, step, bytes, val_loss, verified, created_at FROM checkpoints "
                    "WHERE run_id = ? ORDER BY step, path");
  st.bind(1, runId);
  QList<CheckpointRecord> out;
  while (st.step()) out.append(readCheckpoint(st));
  if (!st.ok()) m_error = st.error();
  return out;
}

QList<CheckpointRecord> CheckpointRepository::listAll() const {
  sql::Statement st(m_ws.database(),
                    "SELECT run_id, path, step, bytes, val_loss, verified, created_at FROM checkpoints "
                    "ORDER BY created_at DESC, run_id, step DESC");
  QList<CheckpointRecord> out;
  while (st.step()) out.append(readCheckpoint(st));
  if (!st.ok()) m_error = st.error();
  return out;
}

bool CheckpointRepository::remove(const QString& runId, const QString& path) {
  sql::Statement st(m_ws.database(), "DELETE FROM checkpoints WHERE run_id = ? AND path = ?");
  st.bind(1, runId).bind(2, path);
  if (!st.run()) {
    m_error = st.error();
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
  return c;
}

}  // namespace fathom::cluster
