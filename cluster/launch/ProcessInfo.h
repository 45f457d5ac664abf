// What /proc says about a process: alive (not a zombie), its command line, and whether it is a
// fathom-engine working on a given run directory. Linux only (the workbench's platform).
#pragma once

#include <QString>
#include <QStringList>

namespace fathom::cluster {

// The argv of `pid` ("" entries kept), empty when the process does not exist or is a zombie.
QStringList processCommandLine(qint64 pid);
// True when `pid` exists and is not a zombie.
bool processExists(qint64 pid);
// True when `pid` is alive and its argv is `.../fathom-engine <cmd> ... --run-dir <runDir> ...`
// (paths compared after resolving symlinks). Guards against a recycled pid after a reboot.
bool isEngineProcessFor(qint64 pid, const QString& runDir);

}  // namespace fathom::cluster
