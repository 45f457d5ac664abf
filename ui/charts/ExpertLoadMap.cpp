// ExpertLoadMap; see ExpertLoadMap.h. Layers need not be contiguous (the first K layers of a
// DeepSeekMoE model are dense), so rows are the sorted MoE layer indexes, labelled with them.
#include "ui/charts/ExpertLoadMap.h"

#include <QLabel>
#include <QRegularExpression>
#include <QTimer>
#include <QToolTip>
#include <QVBoxLayout>

#include <qcustomplot.h>

#include <algorithm>
#include <cmath>

#include "ui/Format.h"
#include "ui/Theme.h"
#include "ui/charts/HeatMapPlot.h"

namespace fathom::ui {

ExpertLoadMap::ExpertLoadMap(QWidget* parent) : QWidget(parent) {
  auto* layout = new QVBoxLayout(this);
  layout->setContentsMargins(8, 4, 8, 4);
  layout->setSpacing(2);
  m_caption = new QLabel(tr("Expert load"), this);
  QFont f = m_caption->font();
  f.setBold(true);
  m_caption->setFont(f);
  layout->addWidget(m_caption);
  const HeatMapPlot hp = makeHeatMapPlot(this, tr("expert"), tr("MoE layer"), tr("share of routed tokens"), 160);
  m_plot = hp.plot;
  m_map = hp.map;
  m_scale = hp.scale;
  layout->addWidget(m_plot, 1);
  setToolTip(tr("Per-expert load of every MoE layer at the latest step reported: the share of the layer's routed "
                "token assignments (top-k) that went to each routed expert (rank 0). Each row sums to 100%; a "
                "balanced layer is one even colour at 1/experts. Hot cells are overloaded experts, dark ones are "
                "starved. Hover a cell for its value."));
  connect(m_plot, &QCustomPlot::mouseMove, this, [this](QMouseEvent* e) {
    double x = 0, y = 0;
    m_map->pixelsToCoords(e->pos(), x, y);
    const int expert = int(std::lround(x)), row = int(std::lround(y));
    const QList<int> ls = layers();
    if (expert < 0 || expert >= m_experts || row < 0 || row >= ls.size()) {
      QToolTip::hideText();
      return;
    }
    const double v = cell(ls[row], expert);
    QToolTip::showText(e->globalPosition().toPoint(),
                       tr("layer %1, expert %2: %3 of routed tokens (balanced: %4)")
                           .arg(ls[row])
                           .arg(expert)
                           .arg(std::isnan(v) ? tr("—") : formatFraction(v))
                           .arg(formatFraction(1.0 / m_experts)),
                       m_plot);
  });
  m_replot = new QTimer(this);
  m_replot->setSingleShot(true);
  m_replot->setInterval(100);
  connect(m_replot, &QTimer::timeout, this, &ExpertLoadMap::replotNow);
  connect(Theme::instance(), &Theme::changed, this, [this] {
    applyTheme();
    m_plot->replot();
  });
  applyTheme();
}

void ExpertLoadMap::applyTheme() { applyHeatMapTheme({m_plot, m_map, m_scale}); }

bool ExpertLoadMap::parseKey(const QString& key, int* layer, int* expert) {
  static const QRegularExpression re(QStringLiteral(R"(^moe\.load\.(\d+)\.(\d+)$)"));
  const auto m = re.match(key);
  if (!m.hasMatch()) return false;
  if (layer) *layer = m.captured(1).toInt();
  if (expert) *expert = m.captured(2).toInt();
  return true;
}

void ExpertLoadMap::setLoad(int layer, int expert, qint64 step, double fraction) {
  Cell& c = m_cells[qMakePair(layer, expert)];
  if (step < c.step) return;
  c.step = step;
  c.value = fraction;
  m_experts = std::max(m_experts, expert + 1);
  m_latestStep = std::max(m_latestStep, step);
  if (!m_replot->isActive()) m_replot->start();
}

void ExpertLoadMap::clear() {
  m_cells.clear();
  m_experts = 0;
  m_latestStep = -1;
  m_map->data()->clear();
  m_replot->stop();
  m_plot->replot();
}

QList<int> ExpertLoadMap::layers() const {
  QList<int> out;
  for (auto it = m_cells.begin(); it != m_cells.end(); ++it)
    if (out.isEmpty() || out.back() != it.key().first) out.append(it.key().first);  // QMap: sorted by layer
  return out;
}

double ExpertLoadMap::cell(int layer, int expert) const {
  const auto it = m_cells.constFind(qMakePair(layer, expert));
  return it == m_cells.constEnd() ? NAN : it->value;
}

void ExpertLoadMap::replotNow() {
  m_replot->stop();
  const QList<int> ls = layers();
  if (ls.isEmpty() || m_experts == 0) {
    m_plot->replot();
    return;
  }
  m_map->data()->setSize(m_experts, int(ls.size()));
  m_map->data()->setRange(QCPRange(0, std::max(1, m_experts - 1)), QCPRange(0, std::max<qsizetype>(1, ls.size() - 1)));
  double hi = 2.0 / m_experts;  // at least twice the balanced share, so balance reads as mid-scale
  for (int row = 0; row < ls.size(); ++row) {
    for (int e = 0; e < m_experts; ++e) {
      const double v = cell(ls[row], e);
      m_map->data()->setCell(e, row, std::isnan(v) ? 0.0 : v);
      if (std::isfinite(v)) hi = std::max(hi, v);
    }
  }
  m_map->setDataRange(QCPRange(0, hi));
  // Integer ticks labelled with the real layer indexes.
  auto yTicks = QSharedPointer<QCPAxisTickerText>::create();
  for (int row = 0; row < ls.size(); ++row) yTicks->addTick(row, QString::number(ls[row]));
  m_plot->yAxis->setTicker(yTicks);
  auto xTicks = QSharedPointer<QCPAxisTickerFixed>::create();
  xTicks->setTickStep(m_experts > 32 ? 8 : (m_experts > 16 ? 4 : 1));
  xTicks->setScaleStrategy(QCPAxisTickerFixed::ssNone);
  m_plot->xAxis->setTicker(xTicks);
  m_plot->xAxis->setRange(-0.5, m_experts - 0.5);
  m_plot->yAxis->setRange(-0.5, ls.size() - 0.5);
  m_caption->setText(tr("Expert load at step %1 — %2 MoE layers × %3 routed experts (balanced: %4 each)")
                         .arg(m_latestStep)
                         .arg(ls.size())
                         .arg(m_experts)
                         .arg(formatFraction(1.0 / m_experts)));
  m_plot->replot();
}

}  // namespace fathom::ui
