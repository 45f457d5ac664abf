// One round trip per probe: a POSIX sh script prints labelled sections, parsed here.
#include "cluster/hosts/HostProbe.h"

#include <QMap>
#include <QRandomGenerator>
#include <QRegularExpression>
#include <QSet>

#include "cluster/hosts/ShellQuote.h"
#include "cluster/hosts/SshSession.h"

namespace fathom::cluster {

QString hostProbeScript(const HostConfig& host) {
  const QString work = shellQuote(host.effectiveWorkDir());
  const QString engine = shellQuote(host.effectiveEnginePath());
  // Relative work dirs are under the login directory, where the script starts.
  return QStringLiteral(
             "LC_ALL=C; export LC_ALL; "
             "echo @@fathom:os; cat /etc/os-release 2>/dev/null; "
             "echo @@fathom:kernel; uname -r; "
             "echo @@fathom:hostname; hostname 2>/dev/null || cat /proc/sys/kernel/hostname; "
             "echo @@fathom:nproc; nproc 2>/dev/null || getconf _NPROCESSORS_ONLN; "
             "echo @@fathom:cpu; grep -m1 'model name' /proc/cpuinfo 2>/dev/null; "
             "echo @@fathom:mem; grep MemTotal /proc/meminfo 2>/dev/null; "
             "echo @@fathom:disk; d=%1; while [ ! -e \"$d\" ] && [ \"$d\" != / ] && [ \"$d\" != . ]; do d=$(dirname \"$d\"); done; "
             "df -Pk \"$d\" 2>/dev/null | tail -n 1; echo \"$d\"; "
             "echo @@fathom:gpu; if command -v nvidia-smi >/dev/null 2>&1; then "
             "nvidia-smi --query-gpu=index,name,memory.total,driver_version --format=csv,noheader,nounits 2>&1; fi; "
             "echo @@fathom:net; ip -o -4 addr show 2>/dev/null; "
             "echo @@fathom:engine; if [ -x %2 ]; then %2 --version 2>&1 | head -n 1; else echo '@@missing'; fi; "
             "echo @@fathom:end")
      .arg(work, engine);
}

HostProbeResult parseHostProbe(const QByteArray& output) {
  HostProbeResult r;
  QMap<QString, QStringList> sec;
  QString cur;
  for (const QString& line : QString::fromUtf8(output).split(QLatin1Char('\n'))) {
    if (line.startsWith(QLatin1String("@@fathom:"))) {
      cur = line.mid(9).trimmed();
      sec[cur];
      continue;
    }
    if (!cur.isEmpty()) sec[cur] << line;
  }
  if (!sec.contains(QStringLiteral("end"))) {
    r.error = QStringLiteral("the probe's output was cut short");
    return r;
  }
  for (const QString& l : sec.value(QStringLiteral("os"))) {
    if (l.startsWith(QLatin1String("PRETTY_NAME="))) {
      r.os = l.mid(12).trimmed();
      if (r.os.size() >= 2 && r.os.startsWith(QLatin1Char('"'))) r.os = r.os.mid(1, r.os.size() - 2);
    }
  }
  r.kernel = sec.value(QStringLiteral("kernel")).value(0).trimmed();
  r.hostname = sec.value(QStringLiteral("hostname")).value(0).trimmed();
  r.cpus = sec.value(QStringLiteral("nproc")).value(0).trimmed().toInt();
  r.cpuModel = sec.value(QStringLiteral("cpu")).value(0).section(QLatin1Char(':'), 1).trimmed();
  {
    static const QRegularExpression num(QStringLiteral("(\\d+)"));
    const auto m = num.match(sec.value(QStringLiteral("mem")).value(0));
    if (m.hasMatch()) r.memoryBytes = m.captured(1).toLongLong() * 1024;
  }
  {
    const QStringList d = sec.value(QStringLiteral("disk"));
    const QStringList f = d.value(0).simplified().split(QLatin1Char(' '));
    if (f.size() >= 4) r.diskFreeBytes = f.at(3).toLongLong() * 1024;
    r.diskPath = d.value(1).trimmed();
  }
  for (const QString& l : sec.value(QStringLiteral("gpu"))) {
    const QStringList f = l.split(QLatin1Char(','));
    if (f.size() < 4) continue;
    bool ok = false;
    const int idx = f.at(0).trimmed().toInt(&ok);
    if (!ok) continue;
    r.gpus.append(GpuInfo{idx, f.at(1).trimmed(), f.at(2).trimmed().toLongLong(), f.at(3).trimmed()});
  }
  for (const QString& l : sec.value(QStringLiteral("net"))) {
    // "2: eth0    inet 10.0.0.5/24 brd ... scope global eth0\       valid_lft ..."
    const QStringList f = l.simplified().split(QLatin1Char(' '));
    const int inet = f.indexOf(QStringLiteral("inet"));
    if (inet < 2 || inet + 1 >= f.size()) continue;
    const QString name = f.at(1), addr = f.at(inet + 1);
    if (name == QLatin1String("lo") || addr.startsWith(QLatin1String("127."))) continue;
    r.interfaces.append(NetInterface{name, addr});
  }
  const QString eng = sec.value(QStringLiteral("engine")).value(0).trimmed();
  if (eng == QLatin1String("@@missing") || eng.isEmpty())
    r.engineError = QStringLiteral("fathom-engine is not installed there (Provision uploads it)");
  else if (eng.startsWith(QLatin1String("fathom-engine ")))
    r.engineVersion = eng;
  else
    r.engineError = QStringLiteral("fathom-engine does not run there: %1").arg(eng.left(300));
  r.ok = true;
  r.probedAt = QDateTime::currentDateTime();
  return r;
}

HostProbeResult probeHost(SshSession& session, const HostConfig& host, int timeoutMs) {
  const SshExecResult x = session.exec(hostProbeScript(host), timeoutMs);
  if (!x.ok) {
    HostProbeResult r;
    r.error = x.error;
    r.probedAt = QDateTime::currentDateTime();
    return r;
  }
  HostProbeResult r = parseHostProbe(x.out);
  if (!r.ok && r.error.isEmpty()) r.error = QString::fromUtf8(x.err).trimmed();
  return r;
}

QString parseSocketInterface(const QByteArray& ipOutput, const QString& ownAddress) {
  QString byAddress, byRoute, own = ownAddress;
  bool inRoute = false;
  for (const QString& raw : QString::fromUtf8(ipOutput).split(QLatin1Char('\n'), Qt::SkipEmptyParts)) {
    const QString line = raw.simplified();
    if (line.startsWith(QLatin1String("@@own "))) {  // the host's own name, resolved there
      own = line.mid(6);
      continue;
    }
    if (line == QLatin1String("@@route")) {
      inRoute = true;
      continue;
    }
    const QStringList f = line.split(QLatin1Char(' '));
    if (!inRoute) {
      // "2: eth0 inet 10.0.0.5/24 brd ... scope global eth0"
      if (f.size() >= 4 && f.at(2) == QLatin1String("inet") && f.at(3).section(QLatin1Char('/'), 0, 0) == own) byAddress = f.at(1);
    } else {
      // "10.0.0.10 dev eth0 src 10.0.0.11 uid 0"
      const int dev = static_cast<int>(f.indexOf(QStringLiteral("dev")));
      if (dev >= 0 && dev + 1 < f.size() && f.at(dev + 1) != QLatin1String("lo")) byRoute = f.at(dev + 1);
    }
  }
  QString ifname = byAddress.isEmpty() ? byRoute : byAddress;
  ifname.remove(QRegularExpression(QStringLiteral("@.*$")));  // "eth0@if12" (veth) -> "eth0"
  return ifname;
}

QString findSocketInterface(SshSession& session, const QString& ownAddress, const QString& peerAddress, int timeoutMs) {
  // Names (not addresses) are resolved on the host itself, as its processes would resolve them.
  const SshExecResult r = session.exec(
      QStringLiteral("own=$(getent ahostsv4 %1 2>/dev/null | awk 'NR==1{print $1}'); [ -n \"$own\" ] && echo \"@@own $own\"; "
                     "peer=$(getent ahostsv4 %2 2>/dev/null | awk 'NR==1{print $1}'); [ -n \"$peer\" ] || peer=%2; "
                     "ip -o -4 addr show 2>/dev/null; echo @@route; ip -o route get \"$peer\" 2>/dev/null")
          .arg(shellQuote(ownAddress), shellQuote(peerAddress)),
      timeoutMs);
  return r.ok ? parseSocketInterface(r.out, ownAddress) : QString();
}

int findFreePort(SshSession& session, int timeoutMs) {
  const SshExecResult r = session.exec(QStringLiteral("cat /proc/net/tcp /proc/net/tcp6 2>/dev/null"), timeoutMs);
  if (!r.ok) return 0;
  QSet<int> used;
  for (const QString& line : QString::fromUtf8(r.out).split(QLatin1Char('\n'))) {
    const QStringList f = line.simplified().split(QLatin1Char(' '));
    if (f.size() < 4 || !f.at(1).contains(QLatin1Char(':'))) continue;
    used.insert(f.at(1).section(QLatin1Char(':'), -1).toInt(nullptr, 16));
  }
  for (int i = 0; i < 200; ++i) {
    const int p = 29500 + static_cast<int>(QRandomGenerator::global()->bounded(20000));
    if (!used.contains(p)) return p;
  }
  return 0;
}

}  // namespace fathom::cluster
