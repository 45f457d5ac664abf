// Starts fathom-engine runs on this computer, detached from the workbench: a workbench that quits
// or crashes leaves them running, and a later one re-attaches through the run directory.
//
// Process tree: workbench -> (short-lived child, exits at once) -> supervisor (setsid: a new
// session without a controlling terminal, reparented to init) -> one engine process per rank, all
// in one process group whose id is rank 0's pid. stop()/kill() signal that group; the supervisor
// is outside it, reaps the ranks and writes <runDir>/exit_status (exit code or signal per rank).
// Linux/POSIX only; no shell is involved, so arguments need no quoting.
#pragma once

#include <QJsonArray>
#include <QList>
#include <QString>
#include <QStringList>

namespace fathom::cluster {

struct LaunchSpec {
  QString runId, name, configPath;
  QStringList overrides;  // "train.max_steps=100", passed as --set
  QString runDir;
  int nprocs = 1;
  QStringList devices;  // "cpu" or "cuda:0", "cuda:1", ...; empty = the config decides
  QString resume;       // "" | "auto" | a checkpoint directory
  QString engineBinary; // "" = lookup (see LocalLauncher::findEngineBinary)
  // Added: extra environment, "NAME=value" (the job queue sets FATHOM_WORKSPACE so the engine
  // keeps prepared data under the workbench's workspace).
  QStringList environment;
  // Added: the engine subcommand ("train" or "finetune"); "" = by the config: "finetune" when it
  // enables lora, else "train" (so queued runs, resumes and duplicates keep theirs).
  QString command;
};

struct LaunchResult {
  bool ok = false;
  QString error;   // what failed, where, and what to do
  qint64 pid = 0;  // rank 0
  qint64 pgid = 0; // process group of all ranks
  qint64 supervisorPid = 0;
  QList<qint64> rankPids;  // index = rank
  QStringList commandLines;  // as commandPreview()
};

class LocalLauncher {
 public:
  // Engine binary: spec.engineBinary, else $FATHOM_ENGINE_BIN, else fathom-engine next to the
  // workbench executable (QCoreApplication::applicationDirPath()), else PATH. "" when none is
  // found; `error` then lists where it looked.
  static QString findEngineBinary(const QString& preferred = QString(), QString* error = nullptr);

  // Argument vector of rank `rank` (without the binary) and its extra environment
  // ("NAME=value": spec.environment, then for nprocs > 1 MASTER_ADDR, MASTER_PORT, RANK,
  // WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE). `masterPort` 0 leaves MASTER_PORT out.
  static QStringList engineArguments(const LaunchSpec& spec, int rank);
  // spec.command, or the one its config calls for (see LaunchSpec::command).
  static QString engineCommand(const LaunchSpec& spec);
  static QStringList rankEnvironment(const LaunchSpec& spec, int rank, int masterPort);

  // The exact command lines start() runs, one per rank, shell-quoted, with their environment and
  // redirections, e.g. for the Launch dialog:
  //   MASTER_ADDR=127.0.0.1 ... /opt/fathom/bin/fathom-engine train /ws/projects/demo.yaml
  //     --run-dir /ws/runs/demo-1 --run-id demo-1 --control-fifo /ws/runs/demo-1/control.fifo
  //     --no-stdout </dev/null >/dev/null 2>>/ws/runs/demo-1/stderr.log
  // MASTER_PORT shows as the port a launch would pick now (start() picks a fresh one).
  QStringList commandPreview(const LaunchSpec& spec) const;

  // Validates the spec, creates the run directory, picks a free MASTER_PORT for nprocs > 1, and
  // starts the ranks detached (see the file comment). ok=false with `error` when the binary is
  // missing, the run directory cannot be created, or a rank could not be executed.
  LaunchResult start(const LaunchSpec& spec);

  // SIGTERM to the group of `pid` (the engine checkpoints, then exits 0). False when no such
  // process (or no permission); `error` says which.
  static bool stop(qint64 pid, QString* error = nullptr);
  // SIGKILL to the process group `pgid`.
  static bool kill(qint64 pgid, QString* error = nullptr);
  // /proc/<pid> exists, is not a zombie, and is a fathom-engine working on `runDir`.
  static bool isAlive(qint64 pid, const QString& runDir);

  // `fathom-engine devices --json`: [{"index":0,"kind":"cpu",...}, {"index":0,"kind":"cuda","name":...,
  // "memory_total":...}, ...]. Blocks up to `timeoutMs` (CUDA initialisation can take seconds):
  // call it off the GUI thread or once at start-up. Empty with `error` set on failure.
  static QJsonArray probeDevices(const QString& engineBinary = QString(), QString* error = nullptr,
                                 int timeoutMs = 30000);

  // A TCP port on 127.0.0.1 that was free a moment ago (bind to port 0), for MASTER_PORT.
  static int freePort();

  static QString shellQuote(const QString& arg);
};

}  // namespace fathom::cluster
