// RankHeatMap; see RankHeatMap.h. Columns are the logged steps in order (evenly spaced even if
// the log interval changed), rows the ranks.
#include "ui/pages/monitor/RankHeatMap.h"

#include <QLabel>
#include <QTimer>
#include <QToolTip>
#include <QVBoxLayout>

#include <qcustomplot.h>

#include <algorithm>
#include <cmath>

#include "ui/Theme.h"
#include "ui/charts/HeatMapPlot.h"

namespace fathom::ui {

RankHeatMap::RankHeatMap(QWidget* parent) : QWidget(parent) {
  auto* layout = new QVBoxLayout(this);
  layout->setContentsMargins(8, 4, 8, 4);
  layout->setSpacing(2);
  m_caption = new QLabel(tr("Step time per rank"), this);
  QFont f = m_caption->font();
  f.setBold(true);
  m_caption->setFont(f);
  layout->addWidget(m_caption);
  const HeatMapPlot hp = makeHeatMapPlot(this, tr("step"), tr("rank"), tr("step time (s)"), 120);
  m_plot = hp.plot;
  m_map = hp.map;
  m_scale = hp.scale;
  layout->addWidget(m_plot, 1);
  setToolTip(tr("Each rank's own step time at every logged step. All ranks step together, so a column is as slow "
                "as its slowest rank: a rank that keeps being the hot cell is a straggler the others wait for "
                "(their wait shows as communication time). Hover a cell for its value."));
  connect(m_plot, &QCustomPlot::mouseMove, this, [this](QMouseEvent* e) {
    double x = 0, y = 0;
    m_map->pixelsToCoords(e->pos(), x, y);
    const QList<qint64> cols = steps();
    const int col = int(std::lround(x)), rank = int(std::lround(y));
    if (col < 0 || col >= cols.size() || rank < 0 || rank >= m_ranks) {
      QToolTip::hideText();
      return;
    }
    const double v = cell(rank, cols[col]);
    double fastest = INFINITY;
    for (double s : m_cells.value(cols[col])) fastest = std::min(fastest, s);
    QToolTip::showText(e->globalPosition().toPoint(),
                       std::isnan(v) ? tr("rank %1, step %2: —").arg(rankLabel(rank)).arg(cols[col])
                                     : tr("rank %1, step %2: %3 s (%4× the fastest rank)")
                                           .arg(rankLabel(rank))
                                           .arg(cols[col])
                                           .arg(v, 0, 'f', 3)
                                           .arg(v / fastest, 0, 'f', 2),
                       m_plot);
  });
  m_replot = new QTimer(this);
  m_replot->setSingleShot(true);
  m_replot->setInterval(100);
  connect(m_replot, &QTimer::timeout, this, &RankHeatMap::replotNow);
  connect(Theme::instance(), &Theme::changed, this, [this] {
    applyTheme();
    m_plot->replot();
  });
  applyTheme();
}

void RankHeatMap::applyTheme() { applyHeatMapTheme({m_plot, m_map, m_scale}); }

void RankHeatMap::setStepTime(int rank, qint64 step, double seconds) {
  if (rank < 0 || !std::isfinite(seconds)) return;
  m_cells[step][rank] = seconds;
  m_ranks = std::max(m_ranks, rank + 1);
  while (m_cells.size() > kMaxSteps) m_cells.erase(m_cells.begin());
  if (!m_replot->isActive()) m_replot->start();
}

void RankHeatMap::clear() {
  m_cells.clear();
  m_ranks = 0;
  m_map->data()->clear();
  m_replot->stop();
  m_plot->replot();
}

QList<qint64> RankHeatMap::steps() const { return m_cells.keys(); }

double RankHeatMap::cell(int rank, qint64 step) const {
  const auto col = m_cells.constFind(step);
  if (col == m_cells.constEnd()) return NAN;
  const auto it = col->constFind(rank);
  return it == col->constEnd() ? NAN : it.value();
}

int RankHeatMap::slowestRank() const {
  QMap<int, int> wins;
  for (const auto& col : m_cells) {
    if (col.size() < 2) continue;
    int worst = -1;
    double t = -1;
    for (auto it = col.begin(); it != col.end(); ++it)
      if (it.value() > t) t = it.value(), worst = it.key();
    ++wins[worst];
  }
  int best = -1, n = 0;
  for (auto it = wins.begin(); it != wins.end(); ++it)
    if (it.value() > n) n = it.value(), best = it.key();
  return best;
}

void RankHeatMap::replotNow() {
  m_replot->stop();
  const QList<qint64> cols = steps();
  if (cols.isEmpty() || m_ranks == 0) {
    m_plot->replot();
    return;
  }
  const int nx = int(cols.size());
  m_map->data()->setSize(nx, m_ranks);
  m_map->data()->setRange(QCPRange(0, std::max(1, nx - 1)), QCPRange(0, std::max(1, m_ranks - 1)));
  double lo = INFINITY, hi = 0;
  for (int c = 0; c < nx; ++c)
    for (int r = 0; r < m_ranks; ++r) {
      const double v = cell(r, cols[c]);
      m_map->data()->setCell(c, r, std::isnan(v) ? 0.0 : v);
      if (std::isfinite(v)) lo = std::min(lo, v), hi = std::max(hi, v);
    }
  m_map->setDataRange(QCPRange(std::isfinite(lo) ? lo : 0, hi > lo ? hi : lo + 1e-9));
  // Column ticks labelled with the real step numbers (about eight of them).
  auto xTicks = QSharedPointer<QCPAxisTickerText>::create();
  const int every = std::max(1, nx / 8);
  for (int c = 0; c < nx; c += every) xTicks->addTick(c, QString::number(cols[c]));
  m_plot->xAxis->setTicker(xTicks);
  auto yTicks = QSharedPointer<QCPAxisTickerText>::create();
  const int rEvery = std::max(1, m_ranks / 16);
  for (int r = 0; r < m_ranks; r += rEvery) yTicks->addTick(r, rankLabel(r));
  m_plot->yAxis->setTicker(yTicks);
  m_plot->xAxis->setRange(-0.5, nx - 0.5);
  m_plot->yAxis->setRange(-0.5, m_ranks - 0.5);
  const int slow = slowestRank();
  m_caption->setText(slow >= 0 ? tr("Step time per rank — %1 ranks, steps %2–%3; slowest most often: rank %4")
                                     .arg(m_ranks)
                                     .arg(cols.front())
                                     .arg(cols.back())
                                     .arg(rankLabel(slow))
                               : tr("Step time per rank — %1 ranks").arg(m_ranks));
  m_plot->replot();
}

void RankHeatMap::setRankHosts(const QMap<int, QString>& hosts) {
  m_hosts = hosts;
  if (!m_cells.isEmpty()) m_replot->start();
}

QString RankHeatMap::rankLabel(int rank) const {
  const QString host = m_hosts.value(rank);
  return host.isEmpty() ? QString::number(rank) : QStringLiteral("%1 · %2").arg(rank).arg(host);
}

}  // namespace fathom::ui
