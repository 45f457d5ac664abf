// cluster.json <-> ClusterSpec. Hosts are stored whole (not by id) so that a run re-attaches to
// the hosts it started on even after the Hosts page changed them.
#include "cluster/launch/ClusterSpec.h"

#include <QDir>
#include <QFile>
#include <QJsonArray>
#include <QJsonDocument>
#include <QSaveFile>

namespace fathom::cluster {

namespace {

QJsonObject hostToJson(const HostConfig& h) {
  return QJsonObject{{QStringLiteral("id"), h.id},
                     {QStringLiteral("name"), h.name},
                     {QStringLiteral("address"), h.address},
                     {QStringLiteral("port"), h.port},
                     {QStringLiteral("user"), h.user},
                     {QStringLiteral("auth"), h.auth},
                     {QStringLiteral("identity_file"), h.identityFile},
                     {QStringLiteral("jump_host"), h.jumpHost},
                     {QStringLiteral("work_dir"), h.workDir},
                     {QStringLiteral("engine_path"), h.enginePath},
                     {QStringLiteral("rendezvous_address"), h.rendezvousAddress}};
}

HostConfig hostFromJson(const QJsonObject& o) {
  HostConfig h;
  h.id = o.value(QStringLiteral("id")).toString();
  h.name = o.value(QStringLiteral("name")).toString();
  h.address = o.value(QStringLiteral("address")).toString();
  h.port = o.value(QStringLiteral("port")).toInt(22);
  h.user = o.value(QStringLiteral("user")).toString();
  h.auth = o.value(QStringLiteral("auth")).toString(ssh_auth::automatic);
  h.identityFile = o.value(QStringLiteral("identity_file")).toString();
  h.jumpHost = o.value(QStringLiteral("jump_host")).toString();
  h.workDir = o.value(QStringLiteral("work_dir")).toString();
  h.enginePath = o.value(QStringLiteral("engine_path")).toString();
  h.rendezvousAddress = o.value(QStringLiteral("rendezvous_address")).toString();
  return h;
}

}  // namespace

QJsonObject ClusterSpec::toJson() const {
  QJsonArray hs, st;
  QJsonObject hostDevicesJson;
  for (auto it = hostDevices.cbegin(); it != hostDevices.cend(); ++it) hostDevicesJson.insert(it.key(), QJsonArray::fromStringList(*it));
  for (const HostConfig& h : hosts) hs.append(hostToJson(h));
  for (const RemoteHostState& s : state) {
    QJsonArray ranks;
    for (const RemoteRank& r : s.ranks)
      ranks.append(QJsonObject{{QStringLiteral("rank"), r.rank},
                               {QStringLiteral("local_rank"), r.localRank},
                               {QStringLiteral("pid"), static_cast<double>(r.pid)},
                               {QStringLiteral("stderr_offset"), static_cast<double>(r.stderrOffset)}});
    st.append(QJsonObject{{QStringLiteral("remote_work_dir"), s.remoteWorkDir},
                          {QStringLiteral("remote_run_dir"), s.remoteRunDir},
                          {QStringLiteral("events_offset"), static_cast<double>(s.eventsOffset)},
                          {QStringLiteral("socket_ifname"), s.socketIfname},
                          {QStringLiteral("ranks"), ranks}});
  }
  return QJsonObject{{QStringLiteral("version"), 1},
                     {QStringLiteral("hosts"), hs},
                     {QStringLiteral("procs_per_host"), procsPerHost},
                     {QStringLiteral("devices"), QJsonArray::fromStringList(devices)},
                     {QStringLiteral("host_devices"), hostDevicesJson},
                     {QStringLiteral("provision_engine"), provisionEngine},
                     {QStringLiteral("upload_data"), uploadData},
                     {QStringLiteral("known_hosts_file"), knownHostsFile},
                     {QStringLiteral("master_addr"), masterAddr},
                     {QStringLiteral("master_port"), masterPort},
                     {QStringLiteral("state"), st}};
}

ClusterSpec ClusterSpec::fromJson(const QJsonObject& o) {
  ClusterSpec c;
  for (const QJsonValue& v : o.value(QStringLiteral("hosts")).toArray()) c.hosts.append(hostFromJson(v.toObject()));
  c.procsPerHost = o.value(QStringLiteral("procs_per_host")).toInt(1);
  for (const QJsonValue& v : o.value(QStringLiteral("devices")).toArray()) c.devices << v.toString();
  const QJsonObject hd = o.value(QStringLiteral("host_devices")).toObject();
  for (auto it = hd.begin(); it != hd.end(); ++it) {
    QStringList d;
    for (const QJsonValue& v : it.value().toArray()) d << v.toString();
    c.hostDevices.insert(it.key(), d);
  }
  c.provisionEngine = o.value(QStringLiteral("provision_engine")).toBool();
  c.uploadData = o.value(QStringLiteral("upload_data")).toBool();
  c.knownHostsFile = o.value(QStringLiteral("known_hosts_file")).toString();
  c.masterAddr = o.value(QStringLiteral("master_addr")).toString();
  c.masterPort = o.value(QStringLiteral("master_port")).toInt();
  for (const QJsonValue& v : o.value(QStringLiteral("state")).toArray()) {
    const QJsonObject so = v.toObject();
    RemoteHostState s;
    s.remoteWorkDir = so.value(QStringLiteral("remote_work_dir")).toString();
    s.remoteRunDir = so.value(QStringLiteral("remote_run_dir")).toString();
    s.eventsOffset = static_cast<qint64>(so.value(QStringLiteral("events_offset")).toDouble());
    s.socketIfname = so.value(QStringLiteral("socket_ifname")).toString();
    for (const QJsonValue& rv : so.value(QStringLiteral("ranks")).toArray()) {
      const QJsonObject ro = rv.toObject();
      s.ranks.append(RemoteRank{ro.value(QStringLiteral("rank")).toInt(), ro.value(QStringLiteral("local_rank")).toInt(),
                                static_cast<qint64>(ro.value(QStringLiteral("pid")).toDouble()),
                                static_cast<qint64>(ro.value(QStringLiteral("stderr_offset")).toDouble())});
    }
    c.state.append(s);
  }
  return c;
}

bool ClusterSpec::save(const QString& runDir, QString* error) const {
  QSaveFile f(QDir(runDir).filePath(fileName()));
  if (!f.open(QIODevice::WriteOnly)) {
    if (error) *error = QStringLiteral("cannot write %1: %2").arg(f.fileName(), f.errorString());
    return false;
  }
  f.write(QJsonDocument(toJson()).toJson());
  if (!f.commit()) {
    if (error) *error = QStringLiteral("cannot write %1: %2").arg(f.fileName(), f.errorString());
    return false;
  }
  return true;
}

bool ClusterSpec::load(const QString& runDir, ClusterSpec* out, QString* error) {
  QFile f(QDir(runDir).filePath(fileName()));
  if (!f.open(QIODevice::ReadOnly)) {
    if (error) *error = QStringLiteral("%1 is missing: the run does not say which hosts it runs on").arg(f.fileName());
    return false;
  }
  QJsonParseError pe{};
  const QJsonDocument doc = QJsonDocument::fromJson(f.readAll(), &pe);
  if (!doc.isObject()) {
    if (error) *error = QStringLiteral("%1 is not valid JSON: %2").arg(f.fileName(), pe.errorString());
    return false;
  }
  *out = fromJson(doc.object());
  return true;
}

}  // namespace fathom::cluster
