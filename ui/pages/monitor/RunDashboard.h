// The per-run chart grid: which panels exist (loss, lr, grad norm, throughput, MFU, step-time
// split, per-GPU utilisation / memory / fragmentation / temperature / power, host CPU and RAM,
// collective bandwidth, per-rank step and communication time, MoE aux loss / load imbalance /
// dropped tokens), which metric keys feed which series, event markers, and the heat maps above
// the grid (MoE expert load; rank × step coloured by step time for data-parallel runs). Fed from a
// RunSession: a catch-up load, then its batched metricsAppended/eventsAppended signals.
#pragma once

#include <QHash>
#include <QMap>
#include <QPointer>
#include <QWidget>

#include "cluster/jobs/RunSession.h"
#include "cluster/workspace/Records.h"
#include "ui/charts/ChartGrid.h"

namespace fathom::cluster {
class RunSession;
}

namespace fathom::ui {

class ExpertLoadMap;
class RankHeatMap;

class RunDashboard : public QWidget {
  Q_OBJECT
 public:
  explicit RunDashboard(QWidget* parent = nullptr);

  // Shows `session` (nullptr = nothing): reloads every panel from the session's data and
  // follows its signals.
  void setSession(cluster::RunSession* session);
  cluster::RunSession* session() const { return m_session; }
  void setXAxisKind(XAxisKind kind);
  XAxisKind xAxisKind() const { return m_xKind; }

  ChartGrid* grid() const { return m_grid; }
  ChartPanel* panel(const QString& id) const { return m_grid->panel(id); }
  // MoE runs: per-expert load of every MoE layer (hidden for runs without moe.load.* metrics).
  ExpertLoadMap* expertLoad() const { return m_expertLoad; }
  // Data-parallel runs: rank × step coloured by step time (hidden for single-rank runs).
  RankHeatMap* rankHeatMap() const { return m_rankMap; }

  // Routing (public for tests): feeds points / events as the session signals would.
  void appendPoints(const QVector<cluster::MetricPoint>& points);
  void appendEvents(const QVector<cluster::EventItem>& events);
  void reload();

 private:
  struct Route {
    ChartPanel* panel = nullptr;
    int series = -1;
    int stackSlot = -1;  // step-time split component, or -1
  };
  struct PanelSpec;

  void buildPanels();
  Route routeFor(const QString& key, int rank);
  double xOf(const cluster::MetricPoint& p) const;
  double markerX(const cluster::EventItem& e) const;
  void flushStack();
  void resetRouting();

  ChartGrid* m_grid;
  ExpertLoadMap* m_expertLoad;
  RankHeatMap* m_rankMap;
  QPointer<cluster::RunSession> m_session;
  QList<QMetaObject::Connection> m_connections;
  XAxisKind m_xKind = XAxisKind::Step;
  QHash<QPair<QString, int>, Route> m_routes;
  QMap<qint64, qint64> m_tokensAtStep;  // rank 0: step -> tokens (markers on the tokens axis)
  QSet<int> m_ranks;
  QMap<int, QString> m_rankHosts;  // rank -> host of an SSH cluster run (cluster.json)
  QString rankName(int rank) const;  // "r1", or "r1@node1" on a cluster
  QVector<cluster::EventItem> m_events;
  // Step-time split accumulator (rank 0): values of one step until all parts arrived.
  qint64 m_stackStep = -1;
  double m_stackX = 0;
  double m_stackVals[5] = {0, 0, 0, 0, 0};
  int m_stackHave = 0;
};

}  // namespace fathom::ui
