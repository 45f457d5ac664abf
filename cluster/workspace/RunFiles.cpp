// Readers for the files a run leaves: stderr tail, the supervisor's exit_status.
#include "cluster/workspace/RunFiles.h"

#include <QDir>
#include <QFile>
#include <QRegularExpression>

#include <signal.h>
#include <string.h>

namespace fathom::cluster::run_files {

QString stderrFileForRank(int rank) {
  return rank == 0 ? stderrFile() : QStringLiteral("stderr.rank%1.log").arg(rank);
}

QString controlFifoForRank(int rank) {
  return rank == 0 ? QStringLiteral("control.fifo") : QStringLiteral("control.rank%1.fifo").arg(rank);
}

QString tailOfFile(const QString& path, int lines) {
  QFile f(path);
  if (!f.open(QIODevice::ReadOnly)) return {};
  constexpr qint64 kWindow = 64 * 1024;
  const qint64 size = f.size();
  if (size > kWindow) f.seek(size - kWindow);
  const QString text = QString::fromUtf8(f.readAll());
  QStringList all = text.split(QLatin1Char('\n'));
  if (size > kWindow && !all.isEmpty()) all.removeFirst();  // a partial first line
  QStringList kept;
  for (QString line : all) {
    while (line.endsWith(QLatin1Char('\r'))) line.chop(1);
    const int cr = line.lastIndexOf(QLatin1Char('\r'));  // a terminal progress line: keep its last state
    if (cr >= 0) line = line.mid(cr + 1);
    if (!line.trimmed().isEmpty()) kept.append(line);
  }
  if (kept.size() > lines) kept = kept.mid(kept.size() - lines);
  return kept.join(QLatin1Char('\n'));
}

QString stderrTail(const QString& runDir, int lines) {
  return tailOfFile(QDir(runDir).filePath(stderrFile()), lines);
}

QList<RankExit> readExitStatus(const QString& runDir) {
  QFile f(QDir(runDir).filePath(exitStatusFile()));
  QList<RankExit> out;
  if (!f.open(QIODevice::ReadOnly)) return out;
  static const QRegularExpression re(QStringLiteral("^rank=(\\d+) pid=(\\d+) (exit|signal)=(\\d+)$"));
  for (const QByteArray& raw : f.readAll().split('\n')) {
    const auto m = re.match(QString::fromLatin1(raw.trimmed()));
    if (!m.hasMatch()) continue;
    RankExit e;
    e.rank = m.captured(1).toInt();
    e.pid = m.captured(2).toLongLong();
    e.signaled = m.captured(3) == QLatin1String("signal");
    e.code = m.captured(4).toInt();
    out.append(e);
  }
  return out;
}

QString describeExit(const RankExit& e) {
  if (!e.signaled) return QStringLiteral("exit code %1").arg(e.code);
  const char* abbrev = sigabbrev_np(e.code);
  return QStringLiteral("killed by signal %1%2").arg(e.code).arg(abbrev ? QStringLiteral(" (SIG%1)").arg(QLatin1String(abbrev)) : QString());
}

}  // namespace fathom::cluster::run_files
