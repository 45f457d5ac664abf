// Multi-node launches over SSH. For each run a worker thread connects to every host, optionally
// provisions it, picks a free MASTER_PORT on rank 0's host, and starts one engine per process per
// host, each under `nohup setsid` inside a small sh wrapper that records its pid (= its process
// group) and, when the engine ends, its exit status in the remote run directory. Every value that
// reaches a remote shell goes through shellQuote().
//
// What the ranks write to the remote events.jsonl is streamed back (tail -F over an SSH channel)
// and appended to the local run directory's events.jsonl, so RunSession/JobQueue ingest remote runs
// exactly like local ones; (rank, seq) already mirrored are skipped, so a re-attach after a
// disconnect continues from the last seq seen. The runs survive the workbench: reattach() picks
// them up again from <runDir>/cluster.json.
//
// A rank that fails, or a host that stays unreachable for lostHostGraceMs(), fails the job: the
// other ranks get SIGTERM (SIGKILL 10 s later), the last lines of each rank's stderr are fetched
// into the local run directory, and the error names the host and rank. The local exit_status
// file is written in LocalLauncher's format, so the job queue finalises remote runs like local ones.
#pragma once

#include <QHash>
#include <QObject>
#include <QStringList>

#include <memory>

#include "cluster/hosts/SshSession.h"
#include "cluster/launch/ClusterSpec.h"
#include "cluster/launch/LocalLauncher.h"
#include "cluster/workspace/Records.h"

namespace fathom::cluster {

class RemoteJob;

class SshLauncher : public QObject {
  Q_OBJECT

 public:
  explicit SshLauncher(QObject* parent = nullptr);
  // Leaves the remote ranks running (they are detached); only the connections close.
  ~SshLauncher() override;

  // Host-key and secret prompts; called on the worker threads (the UI marshals them itself).
  void setCallbacks(SshCallbacks callbacks) { m_callbacks = std::move(callbacks); }
  // How long a host may stay unreachable before its ranks count as dead (default 20 s).
  void setLostHostGraceMs(int ms) { m_graceMs = ms; }
  int lostHostGraceMs() const { return m_graceMs; }
  // Connect timeout per host (default 10 s).
  void setConnectTimeoutMs(int ms) { m_connectTimeoutMs = ms; }

  // Checks the spec and starts the launch in the background (started() or finished() follow).
  // spec.runDir is the local run directory (created here, holding cluster.json and the mirror).
  bool start(const LaunchSpec& spec, const ClusterSpec& cluster, QString* error);
  // Follows a run started earlier (by this or another workbench) from <runDir>/cluster.json.
  bool reattach(const QString& runId, const QString& runDir, QString* error);
  // SIGTERM to every rank (checkpoint, then exit), SIGKILL 30 s later if any remains.
  bool stop(const QString& runId);
  // SIGKILL to every rank's process group.
  bool kill(const QString& runId);
  bool isActive(const QString& runId) const { return m_jobs.contains(runId); }
  QStringList activeRuns() const { return m_jobs.keys(); }
  // Lets the run go on remotely but stops following it (e.g. before reattach() in a test).
  void detach(const QString& runId);

  // Remote command line of each rank (host: command), as start() would run them.
  static QStringList commandPreview(const LaunchSpec& spec, const ClusterSpec& cluster);
  // The same launch as a Slurm batch script (srun, one task per process) and a torchrun command.
  static QString slurmScript(const LaunchSpec& spec, const ClusterSpec& cluster);
  static QString torchrunCommand(const LaunchSpec& spec, const ClusterSpec& cluster);

  // The environment and argument vector of one remote rank (without the wrapper), for tests.
  static QStringList rankCommand(const LaunchSpec& spec, const ClusterSpec& cluster, int hostIndex, int localRank,
                                 const QString& remoteRunDir, const QString& remoteConfig, const QString& remoteWorkDir);

 Q_SIGNALS:
  // Every rank runs; `ranks` carry pid/pgid and host id.
  void started(const QString& runId, const QList<fathom::cluster::RankRecord>& ranks);
  // A line of what the launch is doing ("gpu1: uploading engine 45%").
  void progress(const QString& runId, const QString& message);
  // The job is over: every rank ended (or was given up on). `error` names host and rank when
  // something failed ("" when every rank exited 0 or was stopped as asked).
  void finished(const QString& runId, bool ok, const QString& error);

 private:
  friend class RemoteJob;
  void jobDone(const QString& runId);

  SshCallbacks m_callbacks;
  int m_graceMs = 20000;
  int m_connectTimeoutMs = 10000;
  QHash<QString, std::shared_ptr<RemoteJob>> m_jobs;
};

}  // namespace fathom::cluster
