// The job queue of one workspace: queued runs start when their devices are free; running runs are
// followed by a RunSession whose records are ingested into the registry (metrics downsampled,
// events, checkpoints, status, last step/loss); runs end as completed/stopped/failed/killed.
// On construction it re-attaches to the runs the registry marks running: live ones get a session
// that catches up from events.jsonl, dead ones are finalised from their files. Quitting the
// workbench never stops a run (the launcher detaches them).
//
// Devices: "cuda:<i>" is busy while a running run uses it; "cpu" admits maxConcurrentCpuRuns()
// runs at once (default 1). A run enqueued without devices uses {"cpu"}.
// One queue manages a workspace at a time (a lock file); a second one, e.g. in another
// workbench, is an observer: it follows runs but does not start, finalise or mark anything.
#pragma once

#include <QHash>
#include <QLockFile>
#include <QObject>
#include <QPointer>
#include <QSet>
#include <QTimer>

#include <memory>

#include "cluster/jobs/RunSession.h"
#include "cluster/launch/LocalLauncher.h"
#include "cluster/launch/SshLauncher.h"
#include "cluster/workspace/Workspace.h"

namespace fathom::cluster {

class JobQueue : public QObject {
  Q_OBJECT

 public:
  // `workspace` must be open and outlive the queue.
  explicit JobQueue(Workspace* workspace, QObject* parent = nullptr);
  ~JobQueue() override;

  Workspace* workspace() const { return m_ws; }
  // False when another process manages this workspace's queue (this one only observes).
  bool isManager() const { return m_manager; }

  int maxConcurrentCpuRuns() const { return m_maxCpuRuns; }
  void setMaxConcurrentCpuRuns(int n);
  // Engine binary for launches whose spec names none ("" = LocalLauncher's lookup).
  void setEngineBinary(const QString& path) { m_engineBinary = path; }
  QString engineBinary() const { return m_engineBinary; }

  // Registers the run as queued (assigning runId "<name>-<yyyyMMdd-HHmmss>-<4 hex>" and runDir
  // <workspace>/runs/<runId> when empty) and starts it at once if its devices are free.
  // Returns the run id, "" with lastError() when the spec is unusable.
  QString enqueue(const LaunchSpec& spec);
  // A multi-node run over SSH (host "cluster" in the registry; <runDir>/cluster.json says where).
  // Started by the SSH launcher in the background; stop/kill/resume work as for local runs.
  QString enqueueCluster(const LaunchSpec& spec, const ClusterSpec& cluster);
  // The launcher of cluster runs (for host-key/secret callbacks and its settings).
  SshLauncher* sshLauncher() { return &m_ssh; }
  // Running: checkpoint then exit (control FIFO, SIGTERM as fallback). Queued: cancelled (stopped).
  bool stop(const QString& id);
  // Running: SIGKILL to its process group (status killed). Queued: cancelled (killed).
  bool kill(const QString& id);
  // Re-queues an ended run in the same run directory with --resume auto.
  bool resume(const QString& id);
  // A new queued run with the same config, overrides, devices and process count; its id.
  QString duplicate(const QString& id);
  // Removes an ended or queued run from the registry and, when `deleteFiles` and it lies inside
  // the workspace's runs/, its run directory (else rescan would bring it back).
  bool remove(const QString& id, bool deleteFiles = true);

  // The session of a running run, or a read-only one created on demand for an ended run (kept
  // until remove()); nullptr for an unknown id.
  RunSession* session(const QString& id);
  // Ids of the runs this queue is following as running, sorted.
  QStringList runningIds() const;
  // Devices in use by running runs, sorted, e.g. {"cuda:0"} or {"cpu", "cpu"}.
  QStringList busyDevices() const;

  QString lastError() const { return m_error; }

  // Starts whatever queued runs fit now (also run by a timer and whenever a run ends).
  void schedule();

 Q_SIGNALS:
  void jobsChanged();
  void runStarted(const QString& id);
  void runFinished(const QString& id, const QString& status);

 private:
  struct Live {
    QList<qint64> pids;  // per rank
    qint64 pgid = 0;
    qint64 supervisorPid = 0;  // 0 when re-attached (not known)
    qint64 deadSinceMs = 0;    // when the ranks were first seen gone
    QStringList devices;
    bool stopRequested = false, killRequested = false;
    bool dirty = false;  // registry row needs lastStep/lastLoss written
  };

  void reattach();
  RunSession* sessionFor(const RunRecord& run);
  void attach(const RunRecord& run, const QList<qint64>& pids, qint64 pgid, qint64 supervisorPid = 0);
  bool startRun(RunRecord run);
  bool devicesFree(const QStringList& devices) const;
  void checkProcesses();
  void finalize(const QString& id, const Live& live);
  void syncCheckpoints(const QString& runId, const QString& runDir);
  void flushDirty();
  void onMetrics(const QString& runId, const QVector<MetricPoint>& points);
  void onEvents(const QString& runId, const QVector<EventItem>& events);
  LaunchSpec specFor(const RunRecord& run) const;
  QString newRunId(const QString& name) const;
  bool fail(const QString& error);
  bool cancelQueued(RunRecord run, const QString& status);
  // Cluster runs (JobQueueRemote.cpp).
  void startRemoteRun(RunRecord run);
  void attachRemote(const RunRecord& run);
  void onRemoteFinished(const QString& id, bool ok, const QString& error);

  Workspace* m_ws;
  LocalLauncher m_launcher;
  std::unique_ptr<QLockFile> m_lock;
  bool m_manager = false;
  int m_maxCpuRuns = 1;
  QString m_engineBinary;
  QHash<QString, QString> m_engineFor;  // run id -> LaunchSpec::engineBinary given to enqueue()
  QHash<QString, Live> m_live;          // runs this queue follows as running
  QHash<QString, QPointer<RunSession>> m_sessions;  // every session handed out, live or read-only
  QSet<QString> m_finalizing;           // runs whose files are being read to finalise them
  QTimer m_monitor;
  QString m_error;
  SshLauncher m_ssh;
  QSet<QString> m_remote;                 // cluster runs followed by m_ssh (also in m_live, without pids)
  QHash<QString, QString> m_remoteErrors; // run id -> the launcher's failure (host and rank), for finalize()
};

}  // namespace fathom::cluster
