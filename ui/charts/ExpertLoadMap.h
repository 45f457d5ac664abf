// MoE expert load as a heat map (QCustomPlot QCPColorMap): x = routed expert, y = MoE layer,
// colour = the fraction of that layer's routed assignments that went to that expert at the
// latest step reported (metric extra keys "moe.load.<layer>.<expert>", which sum to 1 per
// layer). A balanced layer is one flat colour at 1/experts; hot cells are overloaded experts.
#pragma once

#include <QHash>
#include <QMap>
#include <QWidget>

class QCustomPlot;
class QCPColorMap;
class QCPColorScale;
class QLabel;
class QTimer;

namespace fathom::ui {

class ExpertLoadMap : public QWidget {
  Q_OBJECT
 public:
  explicit ExpertLoadMap(QWidget* parent = nullptr);

  // Parses "moe.load.<layer>.<expert>"; false for any other key.
  static bool parseKey(const QString& key, int* layer, int* expert);
  // Records one value; an older step than the cell's does not replace it. Redraws coalesced.
  void setLoad(int layer, int expert, qint64 step, double fraction);
  void clear();
  bool isEmpty() const { return m_cells.isEmpty(); }

  // What the map shows (tests): sorted layer indexes, the expert count, a cell (NaN if unknown),
  // and the step the newest values come from.
  QList<int> layers() const;
  int expertCount() const { return m_experts; }
  double cell(int layer, int expert) const;
  qint64 latestStep() const { return m_latestStep; }
  QCPColorMap* colorMap() const { return m_map; }
  QCustomPlot* plot() const { return m_plot; }
  // Redraws now (tests; normally coalesced on a timer).
  void replotNow();

 private:
  struct Cell {
    qint64 step = -1;
    double value = 0;
  };
  void applyTheme();

  QCustomPlot* m_plot;
  QCPColorMap* m_map;
  QCPColorScale* m_scale;
  QLabel* m_caption;
  QTimer* m_replot;
  QMap<QPair<int, int>, Cell> m_cells;  // (layer, expert)
  int m_experts = 0;
  qint64 m_latestStep = -1;
};

}  // namespace fathom::ui
