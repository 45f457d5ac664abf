// /proc readers for re-attach: a pid alone is not proof (pids are recycled), so a run counts as
// alive only when the process's argv names fathom-engine and the run's directory.
#include "cluster/launch/ProcessInfo.h"

#include <QDir>
#include <QFile>
#include <QFileInfo>

#include <signal.h>

#include <cerrno>

namespace fathom::cluster {

namespace {

// The state letter of /proc/<pid>/stat: the field after the parenthesised comm, which may itself
// contain spaces and parentheses, hence the last ')'.
char processState(qint64 pid) {
  QFile f(QStringLiteral("/proc/%1/stat").arg(pid));
  if (!f.open(QIODevice::ReadOnly)) return 0;
  const QByteArray s = f.read(4096);
  const int close = s.lastIndexOf(')');
  if (close < 0 || close + 2 >= s.size()) return 0;
  return s.at(close + 2);
}

QString canonical(const QString& path) {
  const QString c = QFileInfo(path).canonicalFilePath();
  return c.isEmpty() ? QDir::cleanPath(QFileInfo(path).absoluteFilePath()) : c;
}

}  // namespace

bool processExists(qint64 pid) {
  if (pid <= 0) return false;
  if (::kill(static_cast<pid_t>(pid), 0) != 0 && errno == ESRCH) return false;
  const char state = processState(pid);
  return state != 0 && state != 'Z' && state != 'X';
}

QStringList processCommandLine(qint64 pid) {
  if (!processExists(pid)) return {};
  QFile f(QStringLiteral("/proc/%1/cmdline").arg(pid));
  if (!f.open(QIODevice::ReadOnly)) return {};
  QByteArray all = f.readAll();
  if (all.endsWith('\0')) all.chop(1);
  if (all.isEmpty()) return {};
  QStringList out;
  for (const QByteArray& part : all.split('\0')) out.append(QString::fromLocal8Bit(part));
  return out;
}

bool isEngineProcessFor(qint64 pid, const QString& runDir) {
  const QStringList argv = processCommandLine(pid);
  if (argv.isEmpty() || !QFileInfo(argv.first()).fileName().startsWith(QLatin1String("fathom-engine"))) return false;
  const QString want = canonical(runDir);
  for (int i = 1; i < argv.size(); ++i) {
    QString value;
    if (argv[i] == QLatin1String("--run-dir") && i + 1 < argv.size()) value = argv[i + 1];
    else if (argv[i].startsWith(QLatin1String("--run-dir="))) value = argv[i].mid(10);
    if (value.isEmpty()) continue;
    // A relative --run-dir is relative to the engine's working directory, not ours.
    if (QDir::isRelativePath(value))
      value = QDir(QFile::symLinkTarget(QStringLiteral("/proc/%1/cwd").arg(pid))).filePath(value);
    if (canonical(value) == want) return true;
  }
  return false;
}

}  // namespace fathom::cluster
