// HostConfig helpers and the probe result's JSON form.
#include "cluster/hosts/HostConfig.h"

#include <QJsonArray>

#include <pwd.h>
#include <unistd.h>

namespace fathom::cluster {

QString HostConfig::effectiveUser() const {
  if (!user.isEmpty()) return user;
  if (const passwd* pw = getpwuid(getuid())) return QString::fromLocal8Bit(pw->pw_name);
  return qEnvironmentVariable("USER", QStringLiteral("root"));
}

QString HostConfig::effectiveWorkDir() const { return workDir.isEmpty() ? QStringLiteral("fathom") : workDir; }

QString HostConfig::effectiveEnginePath() const {
  if (!enginePath.isEmpty()) return enginePath;
  return effectiveWorkDir() + QStringLiteral("/bin/fathom-engine");
}

QString HostConfig::destination() const {
  return QStringLiteral("%1@%2:%3").arg(effectiveUser(), address).arg(port);
}

bool parseDestination(const QString& text, QString* user, QString* host, int* port) {
  QString t = text.trimmed();
  if (user) user->clear();
  if (port) *port = 22;
  const int at = t.lastIndexOf(QLatin1Char('@'));
  if (at >= 0) {
    if (user) *user = t.left(at);
    t = t.mid(at + 1);
  }
  QString h = t;
  QString p;
  if (t.startsWith(QLatin1Char('['))) {
    const int close = t.indexOf(QLatin1Char(']'));
    if (close < 0) return false;
    h = t.mid(1, close - 1);
    if (t.size() > close + 1) {
      if (t.at(close + 1) != QLatin1Char(':')) return false;
      p = t.mid(close + 2);
    }
  } else if (t.count(QLatin1Char(':')) == 1) {
    const int colon = t.indexOf(QLatin1Char(':'));
    h = t.left(colon);
    p = t.mid(colon + 1);
  }
  if (h.isEmpty()) return false;
  if (!p.isEmpty()) {
    bool ok = false;
    const int v = p.toInt(&ok);
    if (!ok || v < 1 || v > 65535) return false;
    if (port) *port = v;
  }
  if (host) *host = h;
  return true;
}

QJsonObject HostProbeResult::toJson() const {
  QJsonArray g;
  for (const GpuInfo& x : gpus)
    g.append(QJsonObject{{QStringLiteral("index"), x.index},
                         {QStringLiteral("name"), x.name},
                         {QStringLiteral("memory_mib"), static_cast<double>(x.memoryMiB)},
                         {QStringLiteral("driver"), x.driver}});
  QJsonArray n;
  for (const NetInterface& x : interfaces)
    n.append(QJsonObject{{QStringLiteral("name"), x.name}, {QStringLiteral("address"), x.address}});
  return QJsonObject{{QStringLiteral("ok"), ok},
                     {QStringLiteral("error"), error},
                     {QStringLiteral("os"), os},
                     {QStringLiteral("kernel"), kernel},
                     {QStringLiteral("hostname"), hostname},
                     {QStringLiteral("cpus"), cpus},
                     {QStringLiteral("cpu_model"), cpuModel},
                     {QStringLiteral("memory_bytes"), static_cast<double>(memoryBytes)},
                     {QStringLiteral("disk_free_bytes"), static_cast<double>(diskFreeBytes)},
                     {QStringLiteral("disk_path"), diskPath},
                     {QStringLiteral("gpus"), g},
                     {QStringLiteral("interfaces"), n},
                     {QStringLiteral("engine_version"), engineVersion},
                     {QStringLiteral("engine_error"), engineError},
                     {QStringLiteral("probed_at"), probedAt.isValid() ? static_cast<double>(probedAt.toMSecsSinceEpoch()) : 0.0}};
}

HostProbeResult HostProbeResult::fromJson(const QJsonObject& o) {
  HostProbeResult r;
  r.ok = o.value(QStringLiteral("ok")).toBool();
  r.error = o.value(QStringLiteral("error")).toString();
  r.os = o.value(QStringLiteral("os")).toString();
  r.kernel = o.value(QStringLiteral("kernel")).toString();
  r.hostname = o.value(QStringLiteral("hostname")).toString();
  r.cpus = o.value(QStringLiteral("cpus")).toInt();
  r.cpuModel = o.value(QStringLiteral("cpu_model")).toString();
  r.memoryBytes = static_cast<qint64>(o.value(QStringLiteral("memory_bytes")).toDouble());
  r.diskFreeBytes = static_cast<qint64>(o.value(QStringLiteral("disk_free_bytes")).toDouble());
  r.diskPath = o.value(QStringLiteral("disk_path")).toString();
  for (const QJsonValue& v : o.value(QStringLiteral("gpus")).toArray()) {
    const QJsonObject g = v.toObject();
    r.gpus.append(GpuInfo{g.value(QStringLiteral("index")).toInt(), g.value(QStringLiteral("name")).toString(),
                          static_cast<qint64>(g.value(QStringLiteral("memory_mib")).toDouble()),
                          g.value(QStringLiteral("driver")).toString()});
  }
  for (const QJsonValue& v : o.value(QStringLiteral("interfaces")).toArray()) {
    const QJsonObject n = v.toObject();
    r.interfaces.append(NetInterface{n.value(QStringLiteral("name")).toString(), n.value(QStringLiteral("address")).toString()});
  }
  r.engineVersion = o.value(QStringLiteral("engine_version")).toString();
  r.engineError = o.value(QStringLiteral("engine_error")).toString();
  const qint64 at = static_cast<qint64>(o.value(QStringLiteral("probed_at")).toDouble());
  if (at > 0) r.probedAt = QDateTime::fromMSecsSinceEpoch(at);
  return r;
}

}  // namespace fathom::cluster
