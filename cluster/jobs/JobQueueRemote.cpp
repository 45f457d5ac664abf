// JobQueue's cluster runs: queued like local runs (host "cluster"), started and watched by the SSH
// launcher, ingested through the same RunSession (the launcher mirrors the remote events.jsonl into
// the local run directory) and finalised by the same finalize().
#include <QDir>
#include <QFileInfo>
#include <QRegularExpression>

#include "cluster/jobs/JobQueue.h"

namespace fathom::cluster {

QString JobQueue::enqueueCluster(const LaunchSpec& spec, const ClusterSpec& cluster) {
  if (!m_ws->isOpen()) {
    fail(QStringLiteral("the workspace is not open; nothing can be queued"));
    return {};
  }
  if (cluster.hosts.isEmpty()) {
    fail(QStringLiteral("no hosts chosen for the cluster launch"));
    return {};
  }
  if (spec.configPath.isEmpty() || !QFileInfo(spec.configPath).isFile()) {
    fail(QStringLiteral("config file '%1' does not exist; save the config first").arg(spec.configPath));
    return {};
  }
  static const QRegularExpression device(QStringLiteral("^(cpu|cuda:\\d+)$"));
  for (const QString& d : cluster.devices) {
    if (!device.match(d).hasMatch()) {
      fail(QStringLiteral("unknown device '%1'; use cpu or cuda:<index>").arg(d));
      return {};
    }
  }
  RunRecord run;
  run.name = spec.name.isEmpty() ? QFileInfo(spec.configPath).completeBaseName() : spec.name;
  run.id = spec.runId.isEmpty() ? newRunId(run.name) : spec.runId;
  if (m_ws->runs().get(run.id)) {
    fail(QStringLiteral("a run with id '%1' already exists; use resume() or pick another id").arg(run.id));
    return {};
  }
  run.runDir = QFileInfo(spec.runDir.isEmpty() ? QDir(m_ws->runsDir()).filePath(run.id) : spec.runDir).absoluteFilePath();
  if (!QDir().mkpath(run.runDir)) {
    fail(QStringLiteral("cannot create the run directory %1").arg(run.runDir));
    return {};
  }
  QString err;
  if (!cluster.save(run.runDir, &err)) {
    fail(err);
    return {};
  }
  run.configPath = QFileInfo(spec.configPath).absoluteFilePath();
  run.status = run_status::queued;
  run.host = QStringLiteral("cluster");
  run.nprocs = cluster.worldSize();
  run.devices = cluster.devices;
  run.overrides = spec.overrides;
  run.resume = spec.resume;
  run.createdAt = QDateTime::currentDateTime();
  if (!m_ws->runs().upsert(run)) {
    fail(m_ws->runs().lastError());
    return {};
  }
  if (!spec.engineBinary.isEmpty()) m_engineFor.insert(run.id, spec.engineBinary);
  Q_EMIT jobsChanged();
  schedule();
  return run.id;
}

void JobQueue::startRemoteRun(RunRecord run) {
  ClusterSpec cluster;
  QString err;
  LaunchSpec spec = specFor(run);
  if (!ClusterSpec::load(run.runDir, &cluster, &err) || !m_ssh.start(spec, cluster, &err)) {
    run.status = run_status::failed;
    run.error = err;
    run.endedAt = QDateTime::currentDateTime();
    m_ws->runs().upsert(run);
    m_error = err;
    Q_EMIT jobsChanged();
    Q_EMIT runFinished(run.id, run.status);
    return;
  }
  run.status = run_status::running;
  run.pid = 0;
  run.pgid = 0;
  run.startedAt = QDateTime::currentDateTime();
  run.endedAt = QDateTime();
  run.error.clear();
  run.exitCode = 0;
  run.resume.clear();
  m_ws->runs().upsert(run);
  m_remote.insert(run.id);
  attach(run, {}, 0);
  m_live[run.id].devices.clear();  // remote devices are not this computer's
  Q_EMIT runStarted(run.id);
  Q_EMIT jobsChanged();
}

void JobQueue::attachRemote(const RunRecord& run) {
  QString err;
  if (!m_ssh.reattach(run.id, run.runDir, &err)) {
    m_remoteErrors.insert(run.id, err);
    finalize(run.id, Live{});
    return;
  }
  m_remote.insert(run.id);
  attach(run, {}, 0);
  m_live[run.id].devices.clear();
}

void JobQueue::onRemoteFinished(const QString& id, bool ok, const QString& error) {
  m_remote.remove(id);
  if (!ok && !error.isEmpty()) m_remoteErrors.insert(id, error);
  const Live live = m_live.value(id);
  m_live.remove(id);
  finalize(id, live);
}

}  // namespace fathom::cluster
