// Names of the files a run leaves (ARCHITECTURE.md §4) and small readers for them, shared by the
// launcher, the sessions, the queue and rescan.
#pragma once

#include <QString>
#include <QStringList>

namespace fathom::cluster::run_files {

inline QString eventsFile() { return QStringLiteral("events.jsonl"); }
inline QString configFile() { return QStringLiteral("config.yaml"); }
inline QString stderrFile() { return QStringLiteral("stderr.log"); }
// Rank R > 0 of a multi-process run writes stderr.rank<R>.log (rank 0 keeps stderr.log).
QString stderrFileForRank(int rank);
inline QString checkpointsDir() { return QStringLiteral("checkpoints"); }
// Control FIFO of rank 0 ("control.fifo"); rank R > 0: "control.rank<R>.fifo".
QString controlFifoForRank(int rank);
// Written by the launcher's supervisor when every rank has ended: one line per rank,
// "rank=<R> pid=<P> exit=<code>" or "rank=<R> pid=<P> signal=<N>".
inline QString exitStatusFile() { return QStringLiteral("exit_status"); }

// The last `lines` lines of <runDir>/<file> (reads at most the last 64 KiB), joined by '\n'.
// Carriage-return progress updates are reduced to their last state.
QString tailOfFile(const QString& path, int lines = 20);
QString stderrTail(const QString& runDir, int lines = 20);

struct RankExit {
  int rank = 0;
  qint64 pid = 0;
  bool signaled = false;
  int code = 0;  // exit code, or the signal number when signaled
};
// Parses exitStatusFile(); empty when absent (the supervisor is still waiting or was killed).
QList<RankExit> readExitStatus(const QString& runDir);
// "exit code 3", "killed by signal 9 (SIGKILL)".
QString describeExit(const RankExit& e);

}  // namespace fathom::cluster::run_files
