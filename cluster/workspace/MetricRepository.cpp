// Downsampled metric series and the events table.
//
// Downsampling: point i of a series (arrival index) is kept while i % stride == 0, plus the newest
// point. When the kept multiples exceed the cap, rows with i % (2*stride) != 0 are deleted and the
// stride doubles. The kept multiples are then exactly ceil(received / stride), so the stored size
// stays in (cap/2, cap] + 1 and the kept points are spread evenly over the run: O(1) per point,
// amortised O(1) deletes, and the series state is two integers in metric_series.
#include "cluster/workspace/MetricRepository.h"

#include <QHash>
#include <QMap>

#include "cluster/workspace/Sqlite.h"
#include "cluster/workspace/Workspace.h"

namespace fathom::cluster {

namespace {

struct SeriesState {
  qint64 received = 0;
  qint64 stride = 1;
  bool loaded = false;
};

}  // namespace

bool MetricRepository::append(const QString& runId, int rank, const QVector<MetricPoint>& points) {
  if (points.isEmpty()) return true;
  sql::Transaction tx(m_ws.database());
  if (!tx.ok()) {
    m_error = m_ws.database().lastError();
    return false;
  }
  if (!appendLocked(runId, rank, points)) return false;
  return tx.commit(&m_error);
}

bool MetricRepository::appendLocked(const QString& runId, int rank, const QVector<MetricPoint>& points) {
  sql::Database& db = m_ws.database();
  sql::Statement load(db, "SELECT received, stride FROM metric_series WHERE run_id = ? AND key = ? AND rank = ?");
  sql::Statement insert(db,
                        "INSERT OR REPLACE INTO metrics (run_id, key, rank, idx, step, tokens, t_sec, value) "
                        "VALUES (?,?,?,?,?,?,?,?)");
  sql::Statement thin(db, "DELETE FROM metrics WHERE run_id = ? AND key = ? AND rank = ? AND (idx % ?) != 0 AND idx < ?");
  sql::Statement dropTail(db,
                          "DELETE FROM metrics WHERE run_id = ? AND key = ? AND rank = ? AND idx < ? AND (idx % ?) != 0");
  sql::Statement save(db,
                      "INSERT INTO metric_series (run_id, key, rank, received, stride) VALUES (?,?,?,?,?) "
                      "ON CONFLICT(run_id, key, rank) DO UPDATE SET received=excluded.received, stride=excluded.stride");
  for (const sql::Statement* st : {&load, &insert, &thin, &dropTail, &save}) {
    if (!st->ok()) {
      m_error = st->error();
      return false;
    }
  }
  // The last point of each key in this batch is stored even off-stride (the newest value).
  QHash<QString, int> lastIndexOfKey;
  for (int i = 0; i < points.size(); ++i) lastIndexOfKey[points[i].key] = i;

  QHash<QString, SeriesState> states;
  for (int i = 0; i < points.size(); ++i) {
    const MetricPoint& p = points[i];
    SeriesState& s = states[p.key];
    if (!s.loaded) {
      load.reset();
      load.bind(1, runId).bind(2, p.key).bind(3, rank);
      if (load.step()) {
        s.received = load.integer(0);
        s.stride = qMax<qint64>(1, load.integer(1));
      } else if (!load.ok()) {
        m_error = load.error();
        return false;
      }
      s.loaded = true;
    }
    const qint64 idx = s.received++;
    const bool onStride = idx % s.stride == 0;
    if (!onStride && lastIndexOfKey.value(p.key) != i) continue;
    insert.reset();
    insert.bind(1, runId).bind(2, p.key).bind(3, rank).bind(4, idx).bind(5, p.step).bind(6, p.tokens).bind(7, p.tSec).bind(8, p.value);
    if (!insert.run()) {
      m_error = insert.error();
      return false;
    }
    // Thin as we go, so a huge batch (rescan of a long run) never stores more than the cap.
    while (onStride && (s.received + s.stride - 1) / s.stride > m_maxPoints) {
      s.stride *= 2;
      thin.reset();
      thin.bind(1, runId).bind(2, p.key).bind(3, rank).bind(4, s.stride).bind(5, idx);
      if (!thin.run()) {
        m_error = thin.error();
        return false;
      }
    }
  }

  for (auto it = states.begin(); it != states.end(); ++it) {
    const SeriesState& s = it.value();
    // Off-stride points other than the newest (an earlier batch's newest) are dropped.
    dropTail.reset();
    dropTail.bind(1, runId).bind(2, it.key()).bind(3, rank).bind(4, s.received - 1).bind(5, s.stride);
    if (!dropTail.run()) {
      m_error = dropTail.error();
      return false;
    }
    save.reset();
    save.bind(1, runId).bind(2, it.key()).bind(3, rank).bind(4, s.received).bind(5, s.stride);
    if (!save.run()) {
      m_error = save.error();
      return false;
    }
  }
  return true;
}

bool MetricRepository::ingest(const QString& runId, const QVector<MetricPoint>& points) {
  if (points.isEmpty()) return true;
  sql::Database& db = m_ws.database();
  sql::Transaction tx(db);
  if (!tx.ok()) {
    m_error = db.lastError();
    return false;
  }
  // Group by rank, keeping arrival order, dropping what an earlier session already stored.
  QMap<int, QVector<MetricPoint>> byRank;
  QMap<int, qint64> watermark, newMark;
  for (const MetricPoint& p : points) {
    if (!watermark.contains(p.rank)) watermark[p.rank] = ingestedSeq(runId, p.rank);
    if (p.seq > 0 && p.seq <= watermark[p.rank]) continue;
    byRank[p.rank].append(p);
    if (p.seq > newMark.value(p.rank, 0)) newMark[p.rank] = p.seq;
  }
  for (auto it = byRank.begin(); it != byRank.end(); ++it)
    if (!appendLocked(runId, it.key(), it.value())) return false;
  sql::Statement mark(db,
                      "INSERT INTO ingest_state (run_id, rank, last_seq) VALUES (?,?,?) "
                      "ON CONFLICT(run_id, rank) DO UPDATE SET last_seq = MAX(last_seq, excluded.last_seq)");
  for (auto it = newMark.begin(); it != newMark.end(); ++it) {
    mark.reset();
    mark.bind(1, runId).bind(2, it.key()).bind(3, it.value());
    if (!mark.run()) {
      m_error = mark.error();
      return false;
    }
  }
  return tx.commit(&m_error);
}

qint64 MetricRepository::ingestedSeq(const QString& runId, int rank) const {
  sql::Statement st(m_ws.database(), "SELECT last_seq FROM ingest_state WHERE run_id = ? AND rank = ?");
  st.bind(1, runId).bind(2, rank);
  if (st.step()) return st.integer(0);
  if (!st.ok()) m_error = st.error();
  return 0;
}

QVector<MetricPoint> MetricRepository::series(const QString& runId, const QString& key, int rank) const {
  sql::Statement st(m_ws.database(),
                    "SELECT step, tokens, t_sec, value FROM metrics WHERE run_id = ? AND key = ? AND rank = ? ORDER BY idx");
  st.bind(1, runId).bind(2, key).bind(3, rank);
  QVector<MetricPoint> out;
  while (st.step()) out.append(MetricPoint{st.integer(0), st.integer(1), st.real(2), key, st.real(3), rank, 0});
  if (!st.ok()) m_error = st.error();
  return out;
}

QList<QPair<QString, int>> MetricRepository::seriesKeys(const QString& runId) const {
  sql::Statement st(m_ws.database(), "SELECT key, rank FROM metric_series WHERE run_id = ? ORDER BY key, rank");
  st.bind(1, runId);
  QList<QPair<QString, int>> out;
  while (st.step()) out.append({st.text(0), static_cast<int>(st.integer(1))});
  if (!st.ok()) m_error = st.error();
  return out;
}

bool MetricRepository::clearRun(const QString& runId) {
  sql::Database& db = m_ws.database();
  sql::Transaction tx(db);
  for (const char* q : {"DELETE FROM metrics WHERE run_id = ?", "DELETE FROM metric_series WHERE run_id = ?",
                        "DELETE FROM ingest_state WHERE run_id = ?"}) {
    sql::Statement st(db, q);
    st.bind(1, runId);
    if (!st.run()) {
      m_error = st.error();
      return false;
    }
  }
  return tx.commit(&m_error);
}

// ---- events ---------------------------------------------------------------------------------

bool EventRepository::ingest(const QString& runId, const QVector<EventItem>& events) {
  if (events.isEmpty()) return true;
  sql::Database& db = m_ws.database();
  sql::Transaction tx(db);
  sql::Statement st(db, "INSERT OR IGNORE INTO events (run_id, rank, seq, step, name, t_sec, json) VALUES (?,?,?,?,?,?,?)");
  for (const EventItem& e : events) {
    st.reset();
    st.bind(1, runId).bind(2, e.rank).bind(3, e.seq).bind(4, e.step).bind(5, e.name).bind(6, e.tSec).bind(7, e.json);
    if (!st.run()) {
      m_error = st.error();
      return false;
    }
  }
  return tx.commit(&m_error);
}

QVector<EventItem> EventRepository::list(const QString& runId, const QString& name) const {
  sql::Statement st(m_ws.database(),
                    "SELECT step, name, json, rank, seq, t_sec FROM events WHERE run_id = ?1 AND (?2 = '' OR name = ?2) "
                    "ORDER BY rank, seq");
  st.bind(1, runId).bind(2, name.isNull() ? QString("") : name);
  QVector<EventItem> out;
  while (st.step()) out.append(EventItem{st.integer(0), st.text(1), st.text(2), static_cast<int>(st.integer(3)), st.integer(4), st.real(5)});
  if (!st.ok()) m_error = st.error();
  return out;
}

bool EventRepository::clearRun(const QString& runId) {
  sql::Statement st(m_ws.database(), "DELETE FROM events WHERE run_id = ?");
  st.bind(1, runId);
  if (!st.run()) {
    m_error = st.error();
    return false;
  }
  return true;
}

}  // namespace fathom::cluster
