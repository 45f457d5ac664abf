// RunSession: incremental reading of events.jsonl / stderr logs and rate-limited batch signals.
#include "cluster/jobs/RunSession.h"

#include <QDir>
#include <QFile>
#include <QFileInfo>

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "cluster/launch/LocalLauncher.h"
#include "cluster/workspace/RunFiles.h"
#include "engine/protocol/control.h"
#include "engine/protocol/events_file_reader.h"
#include "engine/protocol/payloads.h"

namespace fathom::cluster {

namespace proto = fathom::protocol;

namespace {

// One GUI tick reads at most this much of events.jsonl; the rest comes on the next ticks.
constexpr std::size_t kTickBytes = std::size_t{16} << 20;
// Logs kept in memory (the Logs tab); older lines are dropped, the files keep everything.
constexpr int kMaxLogLines = 50000;
// A sample prompt is sent in one write; longer ones are refused rather than cut.
constexpr int kMaxPromptBytes = 64 * 1024;

int statusSeverity(const QString& s) {
  if (s == run_status::failed) return 4;
  if (s == run_status::killed) return 3;
  if (s == run_status::stopped) return 2;
  if (s == run_status::completed) return 1;
  return 0;
}

}  // namespace

RunSession::RunSession(const QString& runId, const QString& runDir, QObject* parent)
    : QObject(parent), m_runId(runId), m_runDir(QFileInfo(runDir).absoluteFilePath()) {
  registerMetaTypes();
  m_reader = std::make_unique<proto::EventsFileReader>(
      QDir(m_runDir).filePath(run_files::eventsFile()).toStdString());
  m_pollTimer.setInterval(100);
  connect(&m_pollTimer, &QTimer::timeout, this, &RunSession::poll);
  m_soonTimer.setSingleShot(true);
  connect(&m_soonTimer, &QTimer::timeout, this, &RunSession::poll);
  m_flushTimer.setSingleShot(true);
  connect(&m_flushTimer, &QTimer::timeout, this, &RunSession::flush);
  connect(&m_watcher, &QFileSystemWatcher::fileChanged, this, [this] { scheduleSoon(); });
  connect(&m_watcher, &QFileSystemWatcher::directoryChanged, this, [this] {
    watchFiles();  // a file may have been (re)created
    scheduleSoon();
  });
}

RunSession::~RunSession() = default;

void RunSession::start() {
  if (m_started) return;
  m_started = true;
  // Catch-up: the whole file now, so the Monitor opens with the full history in one batch.
  readEvents(0);
  readStderr();
  flush();
  m_following = true;
  watchFiles();
  m_pollTimer.start();
}

void RunSession::stopFollowing() {
  m_following = false;
  m_pollTimer.stop();
  m_soonTimer.stop();
  const QStringList watched = m_watcher.files() + m_watcher.directories();
  if (!watched.isEmpty()) m_watcher.removePaths(watched);
}

void RunSession::watchFiles() {
  if (!m_following) return;
  QStringList want{m_runDir};
  for (const QString& f : {run_files::eventsFile(), run_files::stderrFile()}) {
    const QString p = QDir(m_runDir).filePath(f);
    if (QFileInfo::exists(p)) want << p;
  }
  const QStringList have = m_watcher.files() + m_watcher.directories();
  QStringList add;
  for (const QString& p : want)
    if (!have.contains(p) && QFileInfo::exists(p)) add << p;
  if (!add.isEmpty()) m_watcher.addPaths(add);
}

void RunSession::scheduleSoon() {
  // Coalesce bursts of change notifications (one per engine write) into one read.
  if (m_following && !m_soonTimer.isActive()) m_soonTimer.start(15);
}

void RunSession::poll() {
  if (m_inPoll) return;
  m_inPoll = true;
  readEvents(kTickBytes);
  readStderr();
  m_inPoll = false;
  if (!m_pendingMetrics.isEmpty() || !m_pendingEvents.isEmpty() || !m_pendingSamples.isEmpty() ||
      !m_pendingLogs.isEmpty() || !m_pendingHello.isEmpty() || m_pendingFinished || m_status != m_emittedStatus)
    scheduleFlush();
}

void RunSession::clearData() {
  m_series.clear();
  m_events.clear();
  m_samples.clear();
  m_logs.clear();
  m_stderr.clear();  // the Logs tab is rebuilt from the start too
  m_hello.clear();
  m_exits.clear();
  m_status.clear();
  m_lastError.clear();
  m_exitCode = 0;
  m_exitComplete = false;
  m_worldSize = 1;
  m_lastStep = 0;
  m_lastLoss = NAN;
  m_records = 0;
  m_conv.reset();
  m_pendingMetrics.clear();
  m_pendingEvents.clear();
  m_pendingSamples.clear();
  m_pendingLogs.clear();
  m_pendingHello.clear();
  m_pendingFinished = false;
  m_finishedEmitted = false;
}

void RunSession::readEvents(std::size_t maxBytes) {
  // One read per call: read_new(0) reads to the end as it is now. Looping "until nothing new"
  // would never end while a fast engine appends a line between any two reads.
  {
    std::vector<proto::Record> records = m_reader->read_new(maxBytes);
    if (m_reader->restarts() != m_readerRestarts) {
      // The file was replaced or truncated: what we hold no longer describes it.
      m_readerRestarts = m_reader->restarts();
      clearData();
      Q_EMIT sessionReset(m_runId);
    }
    if (records.empty()) return;
    QVector<MetricPoint> points;
    QVector<EventItem> events;
    QVector<SampleItem> samples;
    QStringList logs;
    for (const proto::Record& rec : records) {
      ++m_records;
      m_conv.convert(rec, &points, &events, &samples, &logs);
      switch (rec.type) {
        case proto::RecordType::hello: {
          const auto h = proto::as<proto::HelloData>(rec);
          m_worldSize = std::max(1, h.world_size);
          const QJsonObject obj = toQJsonObject(rec.data);
          m_hello[rec.rank] = obj;
          m_pendingHello.append(obj);
          // A hello after the run had ended starts a new attempt (resume in the same directory):
          // the previous exits are history. Otherwise only this rank's own earlier exit is: in a
          // cluster run the hosts' records are merged as they arrive, so rank 1 may have said hello,
          // trained and exited before rank 0's hello reaches this file.
          if (m_exitComplete) {
            m_exits.clear();
            m_exitComplete = false;
            m_exitCode = 0;
            m_pendingFinished = false;
            m_finishedEmitted = false;
          } else {
            m_exits.remove(rec.rank);
            // Ranks beyond this attempt's world (a resume with fewer ranks) are history too.
            for (auto it = m_exits.begin(); it != m_exits.end();) it = it.key() >= m_worldSize ? m_exits.erase(it) : std::next(it);
          }
          m_status = run_status::running;
          break;
        }
        case proto::RecordType::metric:
          if (rec.rank == 0) {
            const auto m = proto::as<proto::MetricData>(rec);
            m_lastStep = m.step;
            m_lastLoss = m.loss;
          }
          break;
        case proto::RecordType::error: {
          const auto e = proto::as<proto::ErrorData>(rec);
          m_lastError = QString::fromStdString(e.message);
          if (!e.hint.empty()) m_lastError += QStringLiteral(" (hint: %1)").arg(QString::fromStdString(e.hint));
          break;
        }
        case proto::RecordType::exit: {
          const auto x = proto::as<proto::ExitData>(rec);
          m_exits[rec.rank] = {QString::fromStdString(x.status), x.code};
          if (m_exits.size() >= m_worldSize && !m_exitComplete) {
            QString worst;
            int code = 0;
            for (const auto& e : m_exits) {
              if (statusSeverity(e.first) > statusSeverity(worst)) worst = e.first;
              if (e.second != 0) code = e.second;
            }
            m_exitComplete = true;
            m_status = worst.isEmpty() ? run_status::failed : worst;
            m_exitCode = code;
            if (!m_finishedEmitted) m_pendingFinished = true;
          }
          break;
        }
        default:
          break;
      }
    }
    for (const MetricPoint& p : points) m_series[qMakePair(p.key, p.rank)].append(p);
    m_pendingMetrics += points;
    m_events += events;
    m_pendingEvents += events;
    m_samples += samples;
    m_pendingSamples += samples;
    m_logs += logs;
    m_pendingLogs += logs;
    if (m_logs.size() > kMaxLogLines) m_logs.erase(m_logs.begin(), m_logs.begin() + (m_logs.size() - kMaxLogLines));
  }
}

void RunSession::readStderr() {
  for (int rank = 0; rank < m_worldSize; ++rank) {
    QFile f(QDir(m_runDir).filePath(run_files::stderrFileForRank(rank)));
    if (!f.exists()) continue;
    auto& state = m_stderr[rank];
    if (f.size() < state.first) state = {0, QByteArray()};  // truncated: start over
    if (f.size() == state.first || !f.open(QIODevice::ReadOnly)) continue;
    f.seek(state.first);
    QByteArray chunk = f.read(4 << 20);
    state.first += chunk.size();
    chunk.prepend(state.second);
    const int lastNl = chunk.lastIndexOf('\n');
    state.second = lastNl < 0 ? chunk : chunk.mid(lastNl + 1);
    if (lastNl < 0) continue;
    const QString prefix = m_worldSize > 1 ? QStringLiteral("[rank %1] ").arg(rank) : QString();
    for (QByteArray line : chunk.left(lastNl).split('\n')) {
      while (line.endsWith('\r')) line.chop(1);
      const int cr = line.lastIndexOf('\r');  // a terminal progress line: keep its last state
      if (cr >= 0) line = line.mid(cr + 1);
      if (line.isEmpty()) continue;
      const QString text = prefix + QString::fromUtf8(line);
      m_logs.append(text);
      m_pendingLogs.append(text);
    }
    if (m_logs.size() > kMaxLogLines) m_logs.erase(m_logs.begin(), m_logs.begin() + (m_logs.size() - kMaxLogLines));
  }
}

void RunSession::scheduleFlush() {
  if (m_flushTimer.isActive()) return;
  const qint64 since = m_sinceEmit.isValid() ? m_sinceEmit.elapsed() : m_emitIntervalMs;
  m_flushTimer.start(static_cast<int>(std::max<qint64>(0, m_emitIntervalMs - since)));
}

void RunSession::flush() {
  m_flushTimer.stop();
  const bool any = !m_pendingHello.isEmpty() || !m_pendingMetrics.isEmpty() || !m_pendingEvents.isEmpty() ||
                   !m_pendingSamples.isEmpty() || !m_pendingLogs.isEmpty() || m_status != m_emittedStatus ||
                   m_pendingFinished;
  if (!any) return;
  m_sinceEmit.restart();
  // Moved out first: a slot may call poll() (which appends to the pending lists).
  const QList<QJsonObject> hellos = std::exchange(m_pendingHello, {});
  const QVector<MetricPoint> metrics = std::exchange(m_pendingMetrics, {});
  const QVector<EventItem> events = std::exchange(m_pendingEvents, {});
  const QVector<SampleItem> samples = std::exchange(m_pendingSamples, {});
  const QStringList logs = std::exchange(m_pendingLogs, {});
  for (const QJsonObject& h : hellos) Q_EMIT helloReceived(m_runId, h);
  if (!metrics.isEmpty()) Q_EMIT metricsAppended(m_runId, metrics);
  if (!events.isEmpty()) Q_EMIT eventsAppended(m_runId, events);
  if (!samples.isEmpty()) Q_EMIT samplesAppended(m_runId, samples);
  if (!logs.isEmpty()) Q_EMIT logsAppended(m_runId, logs);
  if (m_status != m_emittedStatus) {
    m_emittedStatus = m_status;
    Q_EMIT statusChanged(m_runId, m_status);
  }
  if (m_pendingFinished && !m_finishedEmitted) {
    m_pendingFinished = false;
    m_finishedEmitted = true;
    Q_EMIT finished(m_runId, m_status, m_exitCode);
  }
}

QVector<MetricPoint> RunSession::series(const QString& key, int rank) const {
  return m_series.value(qMakePair(key, rank));
}

QStringList RunSession::keys() const {
  QStringList out;
  for (auto it = m_series.keyBegin(); it != m_series.keyEnd(); ++it)
    if (!out.contains(it->first)) out << it->first;
  out.sort();
  return out;
}

QList<int> RunSession::ranks() const {
  QList<int> out;
  for (auto it = m_series.keyBegin(); it != m_series.keyEnd(); ++it)
    if (!out.contains(it->second)) out << it->second;
  for (auto it = m_hello.keyBegin(); it != m_hello.keyEnd(); ++it)
    if (!out.contains(*it)) out << *it;
  std::sort(out.begin(), out.end());
  return out;
}

qint64 RunSession::malformedLines() const { return m_reader->malformed_count(); }

void RunSession::markEnded(const QString& status, int code) {
  if (m_exitComplete && m_status == status) return;
  m_status = status;
  m_exitCode = code;
  if (!m_finishedEmitted) m_pendingFinished = true;
  flush();
}

// ---- control ----------------------------------------------------------------------------------

bool RunSession::writeControl(int rank, const std::string& line, QString* error) {
  const QString path = QDir(m_runDir).filePath(run_files::controlFifoForRank(rank));
  const QByteArray p = QFile::encodeName(path);
  struct stat st {};
  if (::lstat(p.constData(), &st) != 0) {
    if (error)
      *error = QStringLiteral("%1 does not exist: the engine has not opened its control channel yet (still starting) "
                              "or was started without --control-fifo").arg(path);
    return false;
  }
  if (!S_ISFIFO(st.st_mode)) {
    if (error) *error = QStringLiteral("%1 is not a FIFO; remove it and restart the run").arg(path);
    return false;
  }
  // Non-blocking: with no reader the open fails with ENXIO instead of hanging the GUI.
  const int fd = ::open(p.constData(), O_WRONLY | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0) {
    const int e = errno;
    if (error) {
      *error = e == ENXIO ? QStringLiteral("the engine is not reading %1 (it has exited)").arg(path)
                          : QStringLiteral("cannot open %1: %2").arg(path, QString::fromLocal8Bit(strerror(e)));
    }
    return false;
  }
  std::size_t done = 0;
  QElapsedTimer waited;
  waited.start();
  while (done < line.size()) {
    const ssize_t w = ::write(fd, line.data() + done, line.size() - done);
    if (w > 0) {
      done += static_cast<std::size_t>(w);
      continue;
    }
    if (w < 0 && errno == EINTR) continue;
    if (w < 0 && errno == EAGAIN && waited.elapsed() < 1000) {
      pollfd pfd{fd, POLLOUT, 0};
      ::poll(&pfd, 1, 50);
      continue;
    }
    const int e = errno;
    ::close(fd);
    if (error) {
      *error = e == EAGAIN ? QStringLiteral("%1 is full: the engine is not reading its control channel").arg(path)
                           : QStringLiteral("cannot write to %1: %2").arg(path, QString::fromLocal8Bit(strerror(e)));
    }
    return false;
  }
  ::close(fd);
  return true;
}

bool RunSession::requestStop(QString* error) {
  if (m_readOnly) {
    if (error) *error = QStringLiteral("run %1 is not running under this workbench").arg(m_runId);
    return false;
  }
  const std::string line = proto::encode_control(proto::Control{proto::control_op::stop, {}, nlohmann::json::object()});
  QString err0;
  bool ok0 = writeControl(0, line, &err0);
  for (int rank = 1; rank < m_worldSize; ++rank) writeControl(rank, line, nullptr);
  if (ok0) return true;
  // Fallback: SIGTERM, which the engine also treats as "checkpoint, then exit".
  const qint64 pid = static_cast<qint64>(m_hello.value(0).value(QStringLiteral("pid")).toDouble());
  if (pid > 0 && LocalLauncher::isAlive(pid, m_runDir)) {
    QString err;
    if (LocalLauncher::stop(pid, &err)) return true;
    err0 += QStringLiteral("; ") + err;
  } else {
    err0 += QStringLiteral("; no live engine process for %1 to send SIGTERM to").arg(m_runDir);
  }
  if (error) *error = err0;
  return false;
}

bool RunSession::requestCheckpoint(QString* error) {
  if (m_readOnly) {
    if (error) *error = QStringLiteral("run %1 is not running under this workbench").arg(m_runId);
    return false;
  }
  const std::string line =
      proto::encode_control(proto::Control{proto::control_op::checkpoint, {}, nlohmann::json::object()});
  bool ok = writeControl(0, line, error);
  for (int rank = 1; rank < m_worldSize; ++rank) ok = writeControl(rank, line, nullptr) && ok;
  return ok;
}

bool RunSession::requestSample(const QString& prompt, QString* error) {
  if (m_readOnly) {
    if (error) *error = QStringLiteral("run %1 is not running under this workbench").arg(m_runId);
    return false;
  }
  const std::string p = prompt.toStdString();
  if (static_cast<int>(p.size()) > kMaxPromptBytes) {
    if (error) *error = QStringLiteral("the prompt is %1 bytes; keep it under %2").arg(p.size()).arg(kMaxPromptBytes);
    return false;
  }
  const std::string line = proto::encode_control(proto::Control{proto::control_op::sample, p, nlohmann::json::object()});
  return writeControl(0, line, error);
}

}  // namespace fathom::cluster
