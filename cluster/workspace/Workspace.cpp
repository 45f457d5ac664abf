// Workspace: directory layout, opening workspace.db (WAL + migrations), rescan of run directories,
// the default project.
#include "cluster/workspace/Workspace.h"

#include <QDir>
#include <QFile>
#include <QFileInfo>
#include <QJsonObject>
#include <QSaveFile>

#include "cluster/launch/ProcessInfo.h"
#include "cluster/workspace/RecordConvert.h"
#include "cluster/workspace/RunFiles.h"
#include "cluster/workspace/Migrations.h"
#include "cluster/workspace/Sqlite.h"
#include "engine/config/config.h"
#include "engine/protocol/events_file_reader.h"
#include "engine/protocol/payloads.h"

namespace fathom::cluster {

namespace proto = fathom::protocol;

namespace {

// Severity order used to combine the exit statuses of several ranks into the run's.
int statusRank(const QString& s) {
  if (s == run_status::failed) return 4;
  if (s == run_status::killed) return 3;
  if (s == run_status::stopped) return 2;
  if (s == run_status::completed) return 1;
  return 0;
}

}  // namespace

Workspace::Workspace(QObject* parent)
    : QObject(parent), m_db(std::make_unique<sql::Database>()), m_runs(*this), m_checkpoints(*this), m_metrics(*this),
      m_events(*this) {
  registerMetaTypes();
}

Workspace::~Workspace() = default;

QString Workspace::defaultDir() {
  const QString env = qEnvironmentVariable("FATHOM_WORKSPACE");
  if (!env.isEmpty()) return QDir::cleanPath(env);
  return QString::fromStdString(fathom::config::default_workspace());
}

QString Workspace::runsDir() const { return QDir(m_dir).filePath(QStringLiteral("runs")); }
QString Workspace::projectsDir() const { return QDir(m_dir).filePath(QStringLiteral("projects")); }
QString Workspace::databasePath() const { return QDir(m_dir).filePath(databaseFileName()); }
bool Workspace::isOpen() const { return m_db->isOpen(); }

int Workspace::schemaVersion() const {
  return static_cast<int>(m_db->queryInt(QStringLiteral("SELECT MAX(version) FROM schema_version"), 0));
}

bool Workspace::open(const QString& dir, QString* error) {
  close();
  auto fail = [&](const QString& why) {
    m_error = why;
    if (error) *error = why;
    m_db->close();
    return false;
  };
  const QString abs = QDir::cleanPath(QFileInfo(dir).absoluteFilePath());
  for (const QString& d : {abs, QDir(abs).filePath(QStringLiteral("runs")), QDir(abs).filePath(QStringLiteral("projects"))}) {
    if (!QDir().mkpath(d))
      return fail(QStringLiteral("cannot create the workspace directory %1; check its permissions or set "
                                 "FATHOM_WORKSPACE to a writable directory").arg(d));
  }
  m_dir = abs;
  QString err;
  if (!m_db->open(databasePath(), &err)) return fail(err);
  // WAL: readers (a second workbench, a rescan) never block the queue's writes, and a crash
  // mid-transaction leaves the last committed state. synchronous=NORMAL is durable across
  // application crashes in WAL mode; only an OS crash may lose the last transactions, which
  // rescan recovers from the run directories.
  const QString mode = m_db->queryString(QStringLiteral("PRAGMA journal_mode=WAL"), &err).toLower();
  if (mode != QLatin1String("wal"))
    return fail(QStringLiteral("%1: cannot switch to WAL journal mode (got '%2'%3); the workspace must be on a local "
                               "file system that supports shared memory (not NFS)")
                    .arg(databasePath(), mode, err.isEmpty() ? QString() : QStringLiteral(", ") + err));
  if (!m_db->exec(QStringLiteral("PRAGMA synchronous=NORMAL; PRAGMA foreign_keys=ON"), &err)) return fail(err);
  if (!migrateDatabase(*m_db, -1, &err)) return fail(err);
  m_error.clear();
  Q_EMIT reloaded();
  return true;
}

void Workspace::close() { m_db->close(); }

bool Workspace::integrityCheck(QString* report) {
  QString err;
  sql::Statement st(*m_db, "PRAGMA integrity_check");
  QStringList lines;
  while (st.step()) lines.append(st.text(0));
  if (!st.ok()) lines.append(st.error());
  const bool ok = lines.size() == 1 && lines.first() == QLatin1String("ok");
  if (report) *report = lines.join(QLatin1Char('\n'));
  return ok;
}

QString Workspace::defaultProjectPath() const { return QDir(projectsDir()).filePath(QStringLiteral("demo.yaml")); }

QString Workspace::ensureDefaultProject() {
  const QString path = defaultProjectPath();
  if (QFileInfo::exists(path)) return path;
  QDir().mkpath(projectsDir());
  QSaveFile f(path);
  if (!f.open(QIODevice::WriteOnly)) {
    m_error = QStringLiteral("cannot write the default project %1: %2").arg(path, f.errorString());
    return {};
  }
  f.write(
      "# The demo project: a small LLaMA-style model trained on the bundled corpus, ready to launch.\n"
      "# It builds on the embedded `demo` preset; set any key below to change it, for example\n"
      "#   train:\n"
      "#     max_steps: 2000\n"
      "# The Config Designer shows every key with its default and what it does.\n"
      "extends: demo\n");
  if (!f.commit()) {
    m_error = QStringLiteral("cannot write the default project %1: %2").arg(path, f.errorString());
    return {};
  }
  return path;
}

// ---- rescan ---------------------------------------------------------------------------------

int Workspace::rescan(QString* report) {
  QStringList lines;
  int indexed = 0;
  const QDir runs(runsDir());
  const QStringList dirs = runs.entryList(QDir::Dirs | QDir::NoDotAndDotDot, QDir::Name);
  QSet<QString> seen;
  for (const QString& name : dirs) {
    const QString dir = runs.filePath(name);
    if (!QFileInfo::exists(QDir(dir).filePath(run_files::eventsFile())) &&
        !QFileInfo::exists(QDir(dir).filePath(run_files::configFile())))
      continue;
    seen.insert(name);
    if (rescanRun(dir, &lines)) ++indexed;
  }
  // Index rows whose directory is gone (deleted by hand): the files are the truth.
  for (const RunRecord& r : m_runs.list()) {
    if (seen.contains(r.id) || r.status == run_status::queued || r.host != QLatin1String("local")) continue;
    if (!r.runDir.isEmpty() && QFileInfo::exists(r.runDir)) continue;
    if (m_runs.remove(r.id))
      lines.append(QStringLiteral("removed %1: its run directory %2 no longer exists").arg(r.id, r.runDir));
  }
  lines.append(QStringLiteral("%1 run(s) indexed from %2").arg(indexed).arg(runsDir()));
  if (report) *report = lines.join(QLatin1Char('\n'));
  Q_EMIT reloaded();
  return indexed;
}

bool Workspace::rescanRun(const QString& runDir, QStringList* lines) {
  const QString id = QFileInfo(runDir).fileName();
  const std::optional<RunRecord> existing = m_runs.get(id);
  RunRecord r = existing.value_or(RunRecord{});
  r.id = id;
  r.runDir = QFileInfo(runDir).absoluteFilePath();
  if (r.name.isEmpty()) r.name = id;

  // config.yaml: the engine's resolved config, so it loads without its extends chain.
  const QString configPath = QDir(runDir).filePath(run_files::configFile());
  if (QFileInfo::exists(configPath)) {
    fathom::config::LoadOptions opts;
    opts.check_paths = false;
    const auto loaded = fathom::config::load_config_file(configPath.toStdString(), opts);
    if (loaded.ok()) {
      if (!existing || r.name == id) r.name = QString::fromStdString(loaded.config.run.name);
      r.nprocs = static_cast<int>(std::max<int64_t>(1, loaded.config.distributed.world_size));
    } else {
      lines->append(QStringLiteral("%1: %2 does not load (%3); kept the run with what events.jsonl says")
                        .arg(id, configPath, QString::fromStdString(loaded.errors.front().message())));
    }
    if (r.configPath.isEmpty()) r.configPath = configPath;
  }

  // Start from a clean slate for this run's derived rows; they are rebuilt from the files.
  if (!m_runs.upsert(r)) {
    lines->append(QStringLiteral("%1: cannot index: %2").arg(id, m_runs.lastError()));
    return false;
  }
  m_metrics.clearRun(id);
  m_events.clearRun(id);

  proto::EventsFileReader reader(QDir(runDir).filePath(run_files::eventsFile()).toStdString());
  RecordConverter conv;
  QMap<int, QString> exitStatus;
  int exitCode = 0;
  QString exitReason, lastError;
  qint64 helloPid = 0, firstMs = 0, helloMs = 0, lastMs = 0, exitMs = 0;
  qint64 lastStep = 0;
  double lastLoss = NAN;
  int worldSize = 0;
  QStringList checkpointPaths;
  bool anyRecord = false;
  // Up to the size the file has now: a live run keeps appending, and "until nothing is new"
  // might never come.
  const qint64 sizeNow = QFileInfo(QDir(runDir).filePath(run_files::eventsFile())).size();
  while (reader.offset() < sizeNow) {
    const auto records = reader.read_new(8u << 20);  // bounded chunks keep memory flat on long runs
    if (records.empty()) break;
    QVector<MetricPoint> points;
    QVector<EventItem> events;
    for (const proto::Record& rec : records) {
      anyRecord = true;
      if (firstMs == 0) firstMs = rec.t_ms;
      lastMs = std::max<qint64>(lastMs, rec.t_ms);
      conv.convert(rec, &points, &events, nullptr, nullptr);
      switch (rec.type) {
        case proto::RecordType::hello: {
          const auto h = proto::as<proto::HelloData>(rec);
          if (rec.rank == 0) {
            helloPid = h.pid;
            helloMs = rec.t_ms;
            // A resumed run says hello again: the exits before it belong to the previous attempt.
            exitStatus.clear();
            exitReason.clear();
            lastError.clear();
          }
          worldSize = std::max(worldSize, h.world_size);
          break;
        }
        case proto::RecordType::metric:
          if (rec.rank == 0) {
            const auto m = proto::as<proto::MetricData>(rec);
            lastStep = m.step;
            lastLoss = m.loss;
          }
          break;
        case proto::RecordType::event: {
          const auto e = proto::as<proto::EventData>(rec);
          if (e.name == proto::event_name::checkpoint_saved) {
            const auto it = rec.data.find("path");
            if (it != rec.data.end() && it->is_string()) checkpointPaths.append(QString::fromStdString(it->get<std::string>()));
          }
          break;
        }
        case proto::RecordType::error: {
          const auto e = proto::as<proto::ErrorData>(rec);
          lastError = QString::fromStdString(e.message);
          if (!e.hint.empty()) lastError += QStringLiteral(" (hint: %1)").arg(QString::fromStdString(e.hint));
          break;
        }
        case proto::RecordType::exit: {
          const auto x = proto::as<proto::ExitData>(rec);
          exitStatus[rec.rank] = QString::fromStdString(x.status);
          if (x.code != 0 || exitCode == 0) exitCode = x.code;
          if (!x.reason.empty()) exitReason = QString::fromStdString(x.reason);
          exitMs = rec.t_ms;
          break;
        }
        default:
          break;
      }
    }
    if (!m_metrics.ingest(id, points))
      lines->append(QStringLiteral("%1: metrics not indexed: %2").arg(id, m_metrics.lastError()));
    if (!m_events.ingest(id, events))
      lines->append(QStringLiteral("%1: events not indexed: %2").arg(id, m_events.lastError()));
  }
  if (reader.malformed_count() > 0)
    lines->append(QStringLiteral("%1: %2 malformed line(s) in events.jsonl skipped; last: %3")
                      .arg(id)
                      .arg(reader.malformed_count())
                      .arg(QString::fromStdString(reader.last_error())));

  if (worldSize > 0) r.nprocs = worldSize;
  if (!r.createdAt.isValid())
    r.createdAt = firstMs > 0 ? QDateTime::fromMSecsSinceEpoch(firstMs) : QFileInfo(runDir).birthTime();
  if (!r.createdAt.isValid()) r.createdAt = QFileInfo(runDir).lastModified();
  if (helloMs > 0) r.startedAt = QDateTime::fromMSecsSinceEpoch(helloMs);
  if (anyRecord) {
    r.lastStep = lastStep;
    r.lastLoss = lastLoss;
  }

  const bool complete = !exitStatus.isEmpty() && exitStatus.size() >= std::max(1, worldSize);
  if (complete || (!exitStatus.isEmpty() && !(helloPid > 0 && isEngineProcessFor(helloPid, runDir)))) {
    QString worst;
    for (const QString& s : exitStatus) worst = statusRank(s) > statusRank(worst) ? s : worst;
    r.status = worst;
    r.exitCode = exitCode;
    r.endedAt = QDateTime::fromMSecsSinceEpoch(exitMs);
    r.error = worst == run_status::failed ? (lastError.isEmpty() ? exitReason : lastError) : QString();
    r.pid = 0;
  } else if (helloPid > 0 && isEngineProcessFor(helloPid, runDir)) {
    r.status = run_status::running;
    r.pid = helloPid;
  } else if (existing && isFinalStatus(existing->status)) {
    // The files do not say how it ended (no exit record); what the index knew (e.g. killed by
    // the user) is kept.
  } else if (existing && existing->status == run_status::queued && !anyRecord) {
    // Not started yet.
  } else {
    r.status = run_status::failed;
    r.pid = 0;
    const QString tail = run_files::stderrTail(runDir, 20);
    const QList<run_files::RankExit> exits = run_files::readExitStatus(runDir);
    QString how = anyRecord ? QStringLiteral("the engine ended without an exit record (crashed or was killed)")
                            : QStringLiteral("the engine wrote no events (it failed before starting)");
    if (!exits.isEmpty()) how += QStringLiteral("; ") + run_files::describeExit(exits.first());
    r.error = how + (lastError.isEmpty() ? QString() : QStringLiteral("\n") + lastError) +
              (tail.isEmpty() ? QString() : QStringLiteral("\n--- last lines of stderr.log ---\n") + tail);
    if (!exits.isEmpty()) r.exitCode = exits.first().signaled ? 128 + exits.first().code : exits.first().code;
    if (!r.endedAt.isValid() && lastMs > 0) r.endedAt = QDateTime::fromMSecsSinceEpoch(lastMs);
  }
  if (!m_runs.upsert(r)) {
    lines->append(QStringLiteral("%1: cannot index: %2").arg(id, m_runs.lastError()));
    return false;
  }

  // Checkpoints: every step-N directory under checkpoints/, plus any the events name elsewhere
  // (checkpoint.save_dir may be absolute).
  m_checkpoints.removeForRun(id);
  QStringList candidates;
  const QDir ckdir(QDir(runDir).filePath(run_files::checkpointsDir()));
  for (const QString& d : ckdir.entryList({QStringLiteral("step-*")}, QDir::Dirs | QDir::NoDotAndDotDot))
    candidates.append(QFileInfo(ckdir.filePath(d)).absoluteFilePath());
  for (const QString& p : checkpointPaths) {
    const QString abs = QFileInfo(QDir::isRelativePath(p) ? QDir(runDir).filePath(p) : p).absoluteFilePath();
    if (!candidates.contains(abs) && QFileInfo(abs).isDir()) candidates.append(abs);
  }
  int nCheckpoints = 0;
  for (const QString& c : candidates) {
    if (c.endsWith(QLatin1String(".tmp"))) continue;  // an unfinished write (ARCHITECTURE.md §4)
    if (const auto ck = CheckpointRepository::inspect(id, c)) {
      if (m_checkpoints.upsert(*ck)) ++nCheckpoints;
    }
  }
  lines->append(QStringLiteral("%1 %2: %3, step %4, %5 checkpoint(s)")
                    .arg(existing ? QStringLiteral("updated") : QStringLiteral("added"), id, r.status)
                    .arg(r.lastStep)
                    .arg(nCheckpoints));
  return true;
}

}  // namespace fathom::cluster
