// JobQueue: scheduling on devices, re-attach, process monitoring, and turning what sessions read
// into registry rows.
#include "cluster/jobs/JobQueue.h"

#include <QDir>
#include <QFileInfo>
#include <QJsonDocument>
#include <QJsonObject>
#include <QRandomGenerator>
#include <QRegularExpression>

#include <csignal>
#include <cmath>

#include "cluster/launch/ProcessInfo.h"
#include "cluster/workspace/RunFiles.h"

namespace fathom::cluster {

namespace {

bool isCpuDevice(const QString& d) { return d.compare(QLatin1String("cpu"), Qt::CaseInsensitive) == 0; }

bool validDevice(const QString& d) {
  static const QRegularExpression cuda(QStringLiteral("^cuda:\\d+$"));
  return isCpuDevice(d) || cuda.match(d).hasMatch();
}

QStringList normalizedDevices(const QStringList& devices) {
  return devices.isEmpty() ? QStringList{QStringLiteral("cpu")} : devices;
}

bool isInside(const QString& path, const QString& dir) {
  const QString p = QDir::cleanPath(QFileInfo(path).absoluteFilePath());
  const QString d = QDir::cleanPath(QFileInfo(dir).absoluteFilePath());
  return p.startsWith(d + QLatin1Char('/')) && p.size() > d.size() + 1;
}

}  // namespace

JobQueue::JobQueue(Workspace* workspace, QObject* parent) : QObject(parent), m_ws(workspace) {
  Q_ASSERT(m_ws);
  if (!m_ws->isOpen()) {
    // Nothing to manage: every action fails with this message instead of touching a closed database.
    m_error = QStringLiteral("the workspace is not open (%1); open it before creating the job queue")
                  .arg(m_ws->lastError().isEmpty() ? QStringLiteral("no error recorded") : m_ws->lastError());
    return;
  }
  m_lock = std::make_unique<QLockFile>(QDir(m_ws->dir()).filePath(QStringLiteral("queue.lock")));
  // No time-based staleness: a lock is stale only when its process is gone (QLockFile checks).
  m_lock->setStaleLockTime(0);
  m_manager = m_lock->tryLock(0);
  if (!m_manager) {
    qint64 pid = 0;
    QString host, app;
    m_lock->getLockInfo(&pid, &host, &app);
    m_error = QStringLiteral("another Fathom process (pid %1 on %2) manages the queue of %3; this one only follows runs")
                  .arg(pid)
                  .arg(host, m_ws->dir());
  }
  connect(&m_ssh, &SshLauncher::finished, this, &JobQueue::onRemoteFinished);
  connect(&m_ssh, &SshLauncher::started, this, [this](const QString& id, const QList<RankRecord>& ranks) {
    m_ws->runs().setRanks(id, ranks);
    Q_EMIT jobsChanged();
  });
  m_monitor.setInterval(250);
  connect(&m_monitor, &QTimer::timeout, this, [this] {
    checkProcesses();
    flushDirty();
    schedule();
  });
  reattach();
  schedule();
  m_monitor.start();
}

JobQueue::~JobQueue() {
  // Runs keep going (they are detached); only the registry is brought up to date.
  if (m_ws->isOpen()) flushDirty();
  for (auto& s : m_sessions)
    if (s) s->disconnect(this);
  if (m_manager && m_lock) m_lock->unlock();
}

void JobQueue::setMaxConcurrentCpuRuns(int n) {
  m_maxCpuRuns = n < 1 ? 1 : n;
  schedule();
}

bool JobQueue::fail(const QString& error) {
  m_error = error;
  return false;
}

// ---- sessions -----------------------------------------------------------------------------------

RunSession* JobQueue::sessionFor(const RunRecord& run) {
  if (RunSession* s = m_sessions.value(run.id)) return s;
  auto* s = new RunSession(run.id, run.runDir, this);
  // Ingestion is idempotent (protocol seq watermarks), so every session feeds the registry:
  // a run viewed after it ended while no workbench was open gets indexed too.
  connect(s, &RunSession::metricsAppended, this, &JobQueue::onMetrics);
  connect(s, &RunSession::eventsAppended, this, &JobQueue::onEvents);
  connect(s, &RunSession::finished, this, [this](const QString& id) {
    // All exit records are in: the processes end in a moment; look soon rather than at the tick.
    if (m_live.contains(id)) QTimer::singleShot(50, this, &JobQueue::checkProcesses);
  });
  m_sessions.insert(run.id, s);
  return s;
}

RunSession* JobQueue::session(const QString& id) {
  if (RunSession* s = m_sessions.value(id)) return s;
  const auto run = m_ws->runs().get(id);
  if (!run) return nullptr;
  RunSession* s = sessionFor(*run);
  s->setReadOnly(!m_live.contains(id));
  s->start();
  if (isFinalStatus(run->status) && !s->hasExitRecord()) s->markEnded(run->status, run->exitCode);
  return s;
}

QStringList JobQueue::runningIds() const {
  QStringList ids = m_live.keys();
  ids.sort();
  return ids;
}

QStringList JobQueue::busyDevices() const {
  QStringList out;
  for (const Live& l : m_live) out += l.devices;
  out.sort();
  return out;
}

// ---- ingestion ----------------------------------------------------------------------------------

void JobQueue::onMetrics(const QString& runId, const QVector<MetricPoint>& points) {
  if (!m_ws->metrics().ingest(runId, points))
    qWarning("fathom: run %s: metrics not stored: %s", qPrintable(runId), qPrintable(m_ws->metrics().lastError()));
  auto it = m_live.find(runId);
  if (it != m_live.end()) it->dirty = true;
}

void JobQueue::onEvents(const QString& runId, const QVector<EventItem>& events) {
  if (!m_ws->events().ingest(runId, events))
    qWarning("fathom: run %s: events not stored: %s", qPrintable(runId), qPrintable(m_ws->events().lastError()));
  if (!m_live.contains(runId) && !m_finalizing.contains(runId)) return;
  std::optional<RunRecord> run;
  for (const EventItem& e : events) {
    if (e.name != QLatin1String("checkpoint_saved")) continue;
    if (!run) run = m_ws->runs().get(runId);
    const QJsonObject o = QJsonDocument::fromJson(e.json.toUtf8()).object();
    QString path = o.value(QStringLiteral("path")).toString();
    if (path.isEmpty()) continue;
    if (QDir::isRelativePath(path) && run) path = QDir(run->runDir).filePath(path);
    std::optional<CheckpointRecord> c = CheckpointRepository::inspect(runId, path);
    if (!c) {
      // Already pruned by keep_n_latest, or on a file system we cannot see: keep what the event says.
      CheckpointRecord r;
      r.runId = runId;
      r.path = QFileInfo(path).absoluteFilePath();
      r.step = static_cast<qint64>(o.value(QStringLiteral("step")).toDouble(static_cast<double>(e.step)));
      r.bytes = static_cast<qint64>(o.value(QStringLiteral("bytes")).toDouble());
      r.createdAt = QDateTime::currentDateTime();
      if (!QFileInfo::exists(path)) continue;  // gone: not a checkpoint anyone can resume from
      c = r;
    }
    if (!m_ws->checkpoints().upsert(*c))
      qWarning("fathom: run %s: checkpoint not stored: %s", qPrintable(runId), qPrintable(m_ws->checkpoints().lastError()));
  }
}

void JobQueue::syncCheckpoints(const QString& runId, const QString& runDir) {
  // The engine prunes old checkpoints (keep_n_latest); the registry follows the disk.
  for (const CheckpointRecord& c : m_ws->checkpoints().listForRun(runId))
    if (!QFileInfo::exists(c.path)) m_ws->checkpoints().remove(runId, c.path);
  const QDir dir(QDir(runDir).filePath(run_files::checkpointsDir()));
  for (const QString& d : dir.entryList({QStringLiteral("step-*")}, QDir::Dirs | QDir::NoDotAndDotDot)) {
    if (d.endsWith(QLatin1String(".tmp"))) continue;
    if (const auto c = CheckpointRepository::inspect(runId, dir.filePath(d))) m_ws->checkpoints().upsert(*c);
  }
}

void JobQueue::flushDirty() {
  for (auto it = m_live.begin(); it != m_live.end(); ++it) {
    if (!it->dirty) continue;
    it->dirty = false;
    RunSession* s = m_sessions.value(it.key());
    auto run = m_ws->runs().get(it.key());
    if (!s || !run) continue;
    if (run->lastStep == s->lastStep() && (run->lastLoss == s->lastLoss() || (std::isnan(run->lastLoss) && std::isnan(s->lastLoss()))))
      continue;
    run->lastStep = s->lastStep();
    run->lastLoss = s->lastLoss();
    m_ws->runs().upsert(*run);
  }
}

// ---- re-attach ----------------------------------------------------------------------------------

void JobQueue::reattach() {
  for (const RunRecord& run : m_ws->runs().listByStatus(run_status::running)) {
    if (run.host == QLatin1String("cluster") && m_manager) attachRemote(run);
    if (run.host != QLatin1String("local")) continue;  // remote runs belong to their host's launcher
    QList<qint64> pids;
    for (const RankRecord& r : m_ws->runs().ranks(run.id)) pids.append(r.pid);
    if (pids.isEmpty() && run.pid > 0) pids.append(run.pid);
    bool alive = false;
    for (qint64 pid : pids) alive = alive || LocalLauncher::isAlive(pid, run.runDir);
    if (alive) {
      attach(run, pids, run.pgid);
    } else if (m_manager) {
      // Died while no workbench was watching: the files say how it ended.
      Live dead;
      dead.pids = pids;
      dead.pgid = run.pgid;
      finalize(run.id, dead);
    }
  }
}

void JobQueue::attach(const RunRecord& run, const QList<qint64>& pids, qint64 pgid, qint64 supervisorPid) {
  Live live;
  live.pids = pids;
  live.pgid = pgid;
  live.supervisorPid = supervisorPid;
  live.devices = normalizedDevices(run.devices);
  m_live.insert(run.id, live);
  RunSession* s = sessionFor(run);
  s->setReadOnly(false);
  s->start();  // catch-up from events.jsonl (ingested through the signals), then follow
  m_live[run.id].dirty = true;
}

// ---- scheduling ---------------------------------------------------------------------------------

bool JobQueue::devicesFree(const QStringList& devices) const {
  int cpuBusy = 0;
  QSet<QString> gpusBusy;
  for (const Live& l : m_live) {
    if (l.devices.contains(QStringLiteral("cpu"), Qt::CaseInsensitive)) ++cpuBusy;
    for (const QString& d : l.devices)
      if (!isCpuDevice(d)) gpusBusy.insert(d);
  }
  for (const QString& d : devices) {
    if (isCpuDevice(d)) {
      if (cpuBusy >= m_maxCpuRuns) return false;
    } else if (gpusBusy.contains(d)) {
      return false;
    }
  }
  return true;
}

void JobQueue::schedule() {
  if (!m_manager) return;
  for (const RunRecord& run : m_ws->runs().listByStatus(run_status::queued)) {
    if (run.host == QLatin1String("cluster") && !m_remote.contains(run.id)) startRemoteRun(run);
    if (run.host != QLatin1String("local")) continue;
    if (devicesFree(normalizedDevices(run.devices))) startRun(run);
  }
}

LaunchSpec JobQueue::specFor(const RunRecord& run) const {
  LaunchSpec spec;
  spec.runId = run.id;
  spec.name = run.name;
  spec.configPath = run.configPath;
  spec.overrides = run.overrides;
  spec.runDir = run.runDir;
  spec.nprocs = run.nprocs;
  spec.devices = run.devices;
  spec.resume = run.resume;
  spec.engineBinary = m_engineFor.value(run.id, m_engineBinary);
  // The engine's default workspace (prepared data, relative run.workspace) is this one, also
  // when the workbench was opened on a workspace other than the default.
  spec.environment << QStringLiteral("FATHOM_WORKSPACE=%1").arg(m_ws->dir());
  return spec;
}

bool JobQueue::startRun(RunRecord run) {
  const LaunchResult r = m_launcher.start(specFor(run));
  if (!r.ok) {
    run.status = run_status::failed;
    run.error = r.error;
    run.endedAt = QDateTime::currentDateTime();
    m_ws->runs().upsert(run);
    m_error = r.error;
    Q_EMIT jobsChanged();
    Q_EMIT runFinished(run.id, run.status);
    return false;
  }
  run.status = run_status::running;
  run.pid = r.pid;
  run.pgid = r.pgid;
  run.startedAt = QDateTime::currentDateTime();
  run.endedAt = QDateTime();
  run.error.clear();
  run.exitCode = 0;
  run.resume.clear();  // consumed by this launch
  m_ws->runs().upsert(run);
  QList<RankRecord> ranks;
  for (int i = 0; i < r.rankPids.size(); ++i) ranks.append(RankRecord{i, r.rankPids[i], r.pgid, QStringLiteral("local")});
  m_ws->runs().setRanks(run.id, ranks);
  attach(run, r.rankPids, r.pgid, r.supervisorPid);
  Q_EMIT runStarted(run.id);
  Q_EMIT jobsChanged();
  return true;
}

// ---- process monitoring and the end of a run ------------------------------------------------------

void JobQueue::checkProcesses() {
  if (!m_manager) return;
  const QStringList ids = m_live.keys();
  for (const QString& id : ids) {
    const auto it = m_live.constFind(id);
    if (it == m_live.constEnd() || m_remote.contains(id)) continue;  // cluster runs: the SSH launcher watches
    RunSession* s = m_sessions.value(id);
    const QString runDir = s ? s->runDir() : m_ws->runs().get(id).value_or(RunRecord{}).runDir;
    bool alive = false;
    for (qint64 pid : it->pids) alive = alive || LocalLauncher::isAlive(pid, runDir);
    if (!alive) {
      // The launch supervisor records exit codes and signals a moment after the ranks end; wait
      // for it (bounded), so the run's error says how it ended and its directory is left alone.
      const qint64 now = QDateTime::currentMSecsSinceEpoch();
      if (it->deadSinceMs == 0) m_live[id].deadSinceMs = now;
      const bool statusWritten = QFileInfo::exists(QDir(runDir).filePath(run_files::exitStatusFile()));
      if (!statusWritten && it->supervisorPid > 0 && processExists(it->supervisorPid) &&
          now - m_live[id].deadSinceMs < 5000) {
        QTimer::singleShot(50, this, &JobQueue::checkProcesses);
        continue;
      }
      const Live live = m_live.value(id);
      m_live.remove(id);
      finalize(id, live);
    }
  }
}

void JobQueue::finalize(const QString& id, const Live& live) {
  auto found = m_ws->runs().get(id);
  if (!found) return;
  RunRecord run = *found;
  m_finalizing.insert(id);
  RunSession* s = sessionFor(run);
  if (!s->isFollowing()) s->start();
  // Drain: everything the engine wrote before it ended goes into the registry now.
  for (qint64 before = -1, rounds = 0; before != s->recordCount() && rounds < 1000; ++rounds) {
    before = s->recordCount();
    s->poll();
  }
  s->flush();
  s->setReadOnly(true);

  const QList<run_files::RankExit> exits = run_files::readExitStatus(run.runDir);
  const run_files::RankExit* worst = nullptr;
  for (const auto& e : exits)
    if (!worst || (e.signaled || e.code != 0)) worst = &e;
  const QString how = worst ? run_files::describeExit(*worst) : QStringLiteral("exit status unknown");
  const bool byTerm = worst && ((worst->signaled && worst->code == SIGTERM) || (!worst->signaled && worst->code == 0));
  const QString tail = run_files::stderrTail(run.runDir, 20);
  const QString tailText = tail.isEmpty() ? QString() : QStringLiteral("\n--- last lines of stderr.log ---\n") + tail;

  if (s->hasExitRecord()) {
    run.status = s->status();
    run.exitCode = s->exitCode();
    run.error = run.status == run_status::failed
                    ? (s->lastErrorMessage().isEmpty() ? QStringLiteral("the engine reported failure") : s->lastErrorMessage()) + tailText
                    : QString();
  } else if (live.killRequested) {
    run.status = run_status::killed;
    run.exitCode = worst && worst->signaled ? 128 + worst->code : 137;
    run.error.clear();
  } else if (live.stopRequested && byTerm) {
    // Stopped before the engine could report (e.g. SIGTERM while it was still starting up).
    run.status = run_status::stopped;
    run.exitCode = 0;
    run.error.clear();
  } else {
    run.status = run_status::failed;
    run.exitCode = worst ? (worst->signaled ? 128 + worst->code : worst->code) : -1;
    QString what;
    if (s->recordCount() == 0)
      what = QStringLiteral("the engine ended before it started training (%1)").arg(how);
    else
      what = QStringLiteral("the engine ended without reporting how (%1): it crashed, ran out of memory, or was killed "
                            "while no workbench was watching").arg(how);
    if (!s->lastErrorMessage().isEmpty()) what += QStringLiteral("\n") + s->lastErrorMessage();
    run.error = what + tailText;
  }
  if (const QString remote = m_remoteErrors.take(id); !remote.isEmpty() && run.status == run_status::failed)
    run.error = remote + QStringLiteral("\n") + run.error;
  run.endedAt = QDateTime::currentDateTime();
  if (s->recordCount() > 0) {
    run.lastStep = s->lastStep();
    run.lastLoss = s->lastLoss();
  }
  m_ws->runs().upsert(run);
  syncCheckpoints(id, run.runDir);
  m_finalizing.remove(id);
  m_engineFor.remove(id);
  if (!s->hasExitRecord() || s->status() != run.status) s->markEnded(run.status, run.exitCode);
  Q_EMIT runFinished(id, run.status);
  Q_EMIT jobsChanged();
  QTimer::singleShot(0, this, &JobQueue::schedule);
}

// ---- user actions -------------------------------------------------------------------------------

QString JobQueue::newRunId(const QString& name) const {
  QString base = name;
  base.replace(QRegularExpression(QStringLiteral("[^A-Za-z0-9_.-]+")), QStringLiteral("-"));
  base = base.left(48);
  if (base.isEmpty() || base.startsWith(QLatin1Char('.'))) base.prepend(QStringLiteral("run"));
  const QString stamp = QDateTime::currentDateTime().toString(QStringLiteral("yyyyMMdd-HHmmss"));
  for (;;) {
    const QString id = QStringLiteral("%1-%2-%3").arg(base, stamp).arg(QRandomGenerator::global()->bounded(0x10000), 4, 16, QLatin1Char('0'));
    if (!m_ws->runs().get(id) && !QFileInfo::exists(QDir(m_ws->runsDir()).filePath(id))) return id;
  }
}

QString JobQueue::enqueue(const LaunchSpec& spec) {
  if (!m_ws->isOpen()) {
    fail(QStringLiteral("the workspace is not open; nothing can be queued"));
    return {};
  }
  if (spec.configPath.isEmpty() || !QFileInfo(spec.configPath).isFile()) {
    fail(QStringLiteral("config file '%1' does not exist; save the config first").arg(spec.configPath));
    return {};
  }
  if (spec.nprocs < 1) {
    fail(QStringLiteral("nprocs must be at least 1 (got %1)").arg(spec.nprocs));
    return {};
  }
  for (const QString& d : spec.devices) {
    if (!validDevice(d)) {
      fail(QStringLiteral("unknown device '%1'; use cpu or cuda:<index>").arg(d));
      return {};
    }
  }
  RunRecord run;
  run.name = spec.name.isEmpty() ? QFileInfo(spec.configPath).completeBaseName() : spec.name;
  run.id = spec.runId.isEmpty() ? newRunId(run.name) : spec.runId;
  if (m_ws->runs().get(run.id)) {
    fail(QStringLiteral("a run with id '%1' already exists; use resume() or pick another id").arg(run.id));
    return {};
  }
  run.runDir = QFileInfo(spec.runDir.isEmpty() ? QDir(m_ws->runsDir()).filePath(run.id) : spec.runDir).absoluteFilePath();
  run.configPath = QFileInfo(spec.configPath).absoluteFilePath();
  run.status = run_status::queued;
  run.nprocs = spec.nprocs;
  run.devices = normalizedDevices(spec.devices);
  run.overrides = spec.overrides;
  run.resume = spec.resume;
  run.createdAt = QDateTime::currentDateTime();
  if (!m_ws->runs().upsert(run)) {
    fail(m_ws->runs().lastError());
    return {};
  }
  if (!spec.engineBinary.isEmpty()) m_engineFor.insert(run.id, spec.engineBinary);
  Q_EMIT jobsChanged();
  schedule();
  return run.id;
}

bool JobQueue::stop(const QString& id) {
  auto it = m_live.find(id);
  if (it != m_live.end() && m_remote.contains(id)) {
    it->stopRequested = true;
    return m_ssh.stop(id) || fail(QStringLiteral("run %1 is not followed by the SSH launcher").arg(id));
  }
  if (it != m_live.end()) {
    it->stopRequested = true;
    QString err;
    RunSession* s = m_sessions.value(id);
    if (s && s->requestStop(&err)) return true;
    // Before hello (still preparing data) there is no FIFO and no pid in events.jsonl yet.
    QString err2;
    if (!it->pids.isEmpty() && LocalLauncher::stop(it->pids.first(), &err2)) return true;
    return fail(QStringLiteral("cannot stop run %1: %2%3").arg(id, err, err2.isEmpty() ? QString() : QStringLiteral("; ") + err2));
  }
  auto run = m_ws->runs().get(id);
  if (!run) return fail(QStringLiteral("no run '%1'").arg(id));
  if (run->status == run_status::queued) return cancelQueued(*run, run_status::stopped);
  return fail(QStringLiteral("run %1 is %2, not running").arg(id, run->status));
}

// A queued run that is stopped or killed never starts: it ends with `status` at once.
bool JobQueue::cancelQueued(RunRecord run, const QString& status) {
  run.status = status;
  run.error = QStringLiteral("cancelled before it started");
  run.endedAt = QDateTime::currentDateTime();
  m_ws->runs().upsert(run);
  Q_EMIT jobsChanged();
  Q_EMIT runFinished(run.id, run.status);
  return true;
}

bool JobQueue::kill(const QString& id) {
  auto it = m_live.find(id);
  if (it != m_live.end() && m_remote.contains(id)) {
    it->killRequested = true;
    return m_ssh.kill(id) || fail(QStringLiteral("run %1 is not followed by the SSH launcher").arg(id));
  }
  if (it != m_live.end()) {
    it->killRequested = true;
    const qint64 group = it->pgid > 0 ? it->pgid : it->pids.value(0);
    QString err;
    if (!LocalLauncher::kill(group, &err)) return fail(QStringLiteral("cannot kill run %1: %2").arg(id, err));
    QTimer::singleShot(50, this, &JobQueue::checkProcesses);
    return true;
  }
  auto run = m_ws->runs().get(id);
  if (!run) return fail(QStringLiteral("no run '%1'").arg(id));
  if (run->status == run_status::queued) return cancelQueued(*run, run_status::killed);
  return fail(QStringLiteral("run %1 is %2, not running").arg(id, run->status));
}

bool JobQueue::resume(const QString& id) {
  auto run = m_ws->runs().get(id);
  if (!run) return fail(QStringLiteral("no run '%1'").arg(id));
  if (m_live.contains(id) || run->status == run_status::running || run->status == run_status::queued)
    return fail(QStringLiteral("run %1 is %2; only an ended run can be resumed").arg(id, run->status));
  if (!QFileInfo(run->configPath).isFile())
    return fail(QStringLiteral("run %1's config %2 no longer exists; restore it or duplicate the run with another config")
                    .arg(id, run->configPath));
  run->status = run_status::queued;
  run->resume = QStringLiteral("auto");
  run->error.clear();
  run->exitCode = 0;
  run->endedAt = QDateTime();
  if (!m_ws->runs().upsert(*run)) return fail(m_ws->runs().lastError());
  Q_EMIT jobsChanged();
  schedule();
  return true;
}

QString JobQueue::duplicate(const QString& id) {
  auto run = m_ws->runs().get(id);
  if (!run) {
    fail(QStringLiteral("no run '%1'").arg(id));
    return {};
  }
  LaunchSpec spec = specFor(*run);
  spec.runId.clear();
  spec.runDir.clear();
  spec.resume.clear();
  return enqueue(spec);
}

bool JobQueue::remove(const QString& id, bool deleteFiles) {
  if (m_live.contains(id)) return fail(QStringLiteral("run %1 is running; stop or kill it first").arg(id));
  auto run = m_ws->runs().get(id);
  if (!run) return fail(QStringLiteral("no run '%1'").arg(id));
  if (RunSession* s = m_sessions.take(id)) s->deleteLater();
  if (!m_ws->runs().remove(id)) return fail(m_ws->runs().lastError());
  if (deleteFiles && isInside(run->runDir, m_ws->runsDir()) && QFileInfo(run->runDir).isDir()) {
    if (!QDir(run->runDir).removeRecursively())
      return fail(QStringLiteral("run %1 was removed from the registry but %2 could not be deleted completely; delete it "
                                 "by hand, or Rescan will list it again").arg(id, run->runDir));
  }
  m_engineFor.remove(id);
  Q_EMIT jobsChanged();
  return true;
}

}  // namespace fathom::cluster
