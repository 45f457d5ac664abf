// Follows one run directory: reads events.jsonl from the start (catch-up), then polls it
// (QFileSystemWatcher + a 100 ms timer fallback) and tails stderr.log. Keeps the run's series,
// events, samples and logs in memory, and emits batched, past-tense signals at most
// ~1000/emitIntervalMs() times a second (10/s by default) however fast the engine writes.
// Also the run's control channel: stop / checkpoint / sample through <runDir>/control.fifo.
// Lives on the GUI thread; reading is incremental and bounded per tick.
#pragma once

#include <QElapsedTimer>
#include <QFileSystemWatcher>
#include <QHash>
#include <QJsonObject>
#include <QMap>
#include <QObject>
#include <QPair>
#include <QStringList>
#include <QTimer>
#include <QVector>

#include <memory>

#include "cluster/workspace/RecordConvert.h"
#include "cluster/workspace/Records.h"

namespace fathom::protocol {
class EventsFileReader;
}

namespace fathom::cluster {

class RunSession : public QObject {
  Q_OBJECT

 public:
  RunSession(const QString& runId, const QString& runDir, QObject* parent = nullptr);
  ~RunSession() override;

  const QString& runId() const { return m_runId; }
  const QString& runDir() const { return m_runDir; }

  // Reads events.jsonl (and stderr.log) from the beginning, emits what it found as one batch,
  // then follows both files. Calling it again does nothing.
  void start();
  // Stops following (the data stays).
  void stopFollowing();
  bool isFollowing() const { return m_following; }
  // Reads what is new now; the timers call it, the job queue calls it to drain a finished run.
  void poll();
  // Emits pending batches now, ignoring the rate limit (the queue drains before finalising).
  void flush();

  // At most one batch per this many ms (default 100 = 10 signals per second).
  int emitIntervalMs() const { return m_emitIntervalMs; }
  void setEmitIntervalMs(int ms) { m_emitIntervalMs = ms < 0 ? 0 : ms; }
  // Sessions the queue opens for finished runs are read-only: control requests are refused.
  void setReadOnly(bool readOnly) { m_readOnly = readOnly; }
  bool isReadOnly() const { return m_readOnly; }

  // ---- what has been read -------------------------------------------------------------------
  QVector<MetricPoint> series(const QString& key, int rank = 0) const;
  QStringList keys() const;   // sorted
  QList<int> ranks() const;   // sorted
  const QVector<EventItem>& events() const { return m_events; }
  const QVector<SampleItem>& samples() const { return m_samples; }
  const QStringList& logs() const { return m_logs; }
  QJsonObject hello(int rank = 0) const { return m_hello.value(rank); }
  // "" before the first record; "running" after a hello; the final status once every rank has
  // written its exit record (or markEnded() said so).
  const QString& status() const { return m_status; }
  int exitCode() const { return m_exitCode; }
  bool hasExitRecord() const { return m_exitComplete; }
  qint64 lastStep() const { return m_lastStep; }
  double lastLoss() const { return m_lastLoss; }
  int worldSize() const { return m_worldSize; }
  // The last error record's message (and hint), "" when none.
  const QString& lastErrorMessage() const { return m_lastError; }
  qint64 malformedLines() const;
  // Records read so far (all types).
  qint64 recordCount() const { return m_records; }

  // ---- control ------------------------------------------------------------------------------
  // Write {"op":"stop"} to every rank's control FIFO; when that fails (the engine is gone or
  // never opened it), SIGTERM to rank 0's process group if hello's pid is still this run's
  // engine. Both mean: checkpoint, then exit 0.
  bool requestStop(QString* error = nullptr);
  bool requestCheckpoint(QString* error = nullptr);
  // Rank 0 generates from `prompt` and answers with a `sample` event.
  bool requestSample(const QString& prompt, QString* error = nullptr);

  // The job queue saw the processes end without (all) exit records: record how.
  void markEnded(const QString& status, int code);

 Q_SIGNALS:
  void metricsAppended(const QString& runId, const QVector<fathom::cluster::MetricPoint>& points);
  void eventsAppended(const QString& runId, const QVector<fathom::cluster::EventItem>& events);
  void samplesAppended(const QString& runId, const QVector<fathom::cluster::SampleItem>& samples);
  void logsAppended(const QString& runId, const QStringList& lines);
  void statusChanged(const QString& runId, const QString& status);
  void helloReceived(const QString& runId, const QJsonObject& hello);
  void finished(const QString& runId, const QString& status, int code);
  // events.jsonl was replaced or truncated: everything was cleared and is being read again.
  void sessionReset(const QString& runId);

 private:
  void readEvents(std::size_t maxBytes);
  void readStderr();
  void clearData();
  void scheduleFlush();
  void scheduleSoon();
  void watchFiles();
  bool writeControl(int rank, const std::string& line, QString* error);

  QString m_runId, m_runDir;
  std::unique_ptr<protocol::EventsFileReader> m_reader;
  int64_t m_readerRestarts = 0;
  RecordConverter m_conv;
  bool m_started = false, m_following = false, m_readOnly = false, m_inPoll = false;
  int m_emitIntervalMs = 100;

  QHash<QPair<QString, int>, QVector<MetricPoint>> m_series;
  QVector<EventItem> m_events;
  QVector<SampleItem> m_samples;
  QStringList m_logs;
  QMap<int, QJsonObject> m_hello;
  QMap<int, QPair<QString, int>> m_exits;  // rank -> (status, code) of the current attempt
  QString m_status, m_lastError;
  int m_exitCode = 0;
  bool m_exitComplete = false;
  int m_worldSize = 1;
  qint64 m_lastStep = 0;
  double m_lastLoss = NAN;
  qint64 m_records = 0;

  // stderr tails: rank -> (byte offset, unterminated tail)
  QMap<int, QPair<qint64, QByteArray>> m_stderr;

  // Pending batch.
  QVector<MetricPoint> m_pendingMetrics;
  QVector<EventItem> m_pendingEvents;
  QVector<SampleItem> m_pendingSamples;
  QStringList m_pendingLogs;
  QList<QJsonObject> m_pendingHello;
  QString m_emittedStatus;
  bool m_pendingFinished = false, m_finishedEmitted = false;

  QTimer m_pollTimer, m_soonTimer, m_flushTimer;
  QElapsedTimer m_sinceEmit;
  QFileSystemWatcher m_watcher;
};

}  // namespace fathom::cluster
