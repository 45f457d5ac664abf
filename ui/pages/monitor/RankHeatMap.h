// Data-parallel stragglers at a glance: a heat map (QCustomPlot QCPColorMap) of rank × step,
// coloured by each rank's own step time (metric step_time_s, which every rank reports). All ranks
// step together, so a column is as slow as its slowest rank; a rank that is often the hot cell
// of its column is the straggler the others wait for (their time shows up as communication wait).
// Only the newest kMaxSteps logged steps are kept.
#pragma once

#include <QMap>
#include <QWidget>

class QCustomPlot;
class QCPColorMap;
class QCPColorScale;
class QLabel;
class QTimer;

namespace fathom::ui {

class RankHeatMap : public QWidget {
  Q_OBJECT
 public:
  static constexpr int kMaxSteps = 400;
  explicit RankHeatMap(QWidget* parent = nullptr);

  void setStepTime(int rank, qint64 step, double seconds);
  // Multi-node runs (issue 9): rank -> host name, shown beside the rank ("1 · node1").
  void setRankHosts(const QMap<int, QString>& hosts);
  QString rankLabel(int rank) const;
  void clear();
  bool isEmpty() const { return m_cells.isEmpty(); }

  // What the map shows (tests): the ranks, the steps (columns), a cell (NaN if unknown), and the
  // rank that was slowest in most columns (-1 when none).
  int rankCount() const { return m_ranks; }
  QList<qint64> steps() const;
  double cell(int rank, qint64 step) const;
  int slowestRank() const;
  QCPColorMap* colorMap() const { return m_map; }
  void replotNow();

 private:
  void applyTheme();

  QCustomPlot* m_plot;
  QCPColorMap* m_map;
  QCPColorScale* m_scale;
  QLabel* m_caption;
  QTimer* m_replot;
  QMap<qint64, QMap<int, double>> m_cells;  // step -> rank -> seconds
  int m_ranks = 0;
  QMap<int, QString> m_hosts;
};

}  // namespace fathom::ui
