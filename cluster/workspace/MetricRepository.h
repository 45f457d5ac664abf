// The metrics table: a downsampled copy of every series (run, key, rank) for fast chart reloads.
// A series keeps every point until it holds maxPointsPerSeries(); then the stride doubles and
// every other stored point is dropped (uniform over the whole run, so it never exceeds the cap;
// between cap/2 and cap points), and the newest point is always kept so the last value is exact.
#pragma once

#include <QList>
#include <QPair>
#include <QString>
#include <QVector>

#include "cluster/workspace/Records.h"

namespace fathom::cluster {

class Workspace;

class MetricRepository {
 public:
  explicit MetricRepository(Workspace& workspace) : m_ws(workspace) {}

  // Appends points of one rank (any keys, in arrival order). Points whose rank differs from
  // `rank` are stored under `rank` anyway (the caller groups by rank).
  bool append(const QString& runId, int rank, const QVector<MetricPoint>& points);
  // Appends the points whose protocol seq is above what was ingested for their (run, rank), and
  // advances that watermark, in one transaction: a session that re-reads events.jsonl from the
  // start (re-attach) inserts nothing twice. Points with seq 0 are always appended.
  bool ingest(const QString& runId, const QVector<MetricPoint>& points);
  qint64 ingestedSeq(const QString& runId, int rank) const;

  // The stored (downsampled) series, in arrival order.
  QVector<MetricPoint> series(const QString& runId, const QString& key, int rank = 0) const;
  // (key, rank) of every stored series of a run, sorted.
  QList<QPair<QString, int>> seriesKeys(const QString& runId) const;
  // Drops the run's points, series state and ingest watermarks (rescan re-ingests).
  bool clearRun(const QString& runId);

  int maxPointsPerSeries() const { return m_maxPoints; }
  void setMaxPointsPerSeries(int n) { m_maxPoints = n < 4 ? 4 : n; }

  QString lastError() const { return m_error; }

 private:
  bool appendLocked(const QString& runId, int rank, const QVector<MetricPoint>& points);

  Workspace& m_ws;
  int m_maxPoints = 10000;
  mutable QString m_error;
};

// The events table: every protocol event (checkpoint_saved, eval, sample, ...) of every run.
class EventRepository {
 public:
  explicit EventRepository(Workspace& workspace) : m_ws(workspace) {}

  // Inserts events; an event already stored (same run, rank, seq > 0) is ignored.
  bool ingest(const QString& runId, const QVector<EventItem>& events);
  // In (rank, seq) order; `name` "" = all.
  QVector<EventItem> list(const QString& runId, const QString& name = QString()) const;
  bool clearRun(const QString& runId);

  QString lastError() const { return m_error; }

 private:
  Workspace& m_ws;
  mutable QString m_error;
};

}  // namespace fathom::cluster
