// How long a chart redraw of 1,000,000 points per series takes, the way the Monitor draws it
// (DecimatedSeries: at most 4 points per pixel column reach QCustomPlot) against handing
// QCustomPlot every point (with its own adaptive sampling off, and on). Renders offscreen into a
// 1200x400 pixmap, the size of a large panel. Prints the median and the best of each; fails when
// the best decimated redraw misses one 60 Hz frame (16 ms).
#include <QApplication>
#include <QElapsedTimer>
#include <QTextStream>

#include <qcustomplot.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "ui/charts/Decimator.h"

namespace {

constexpr std::size_t kPoints = 1000000;
constexpr int kWidth = 1200, kHeight = 400, kReps = 9;

struct Timing {
  double median = 0, best = 0;
};

template <class F>
Timing measure(F&& redraw) {
  redraw();  // warm-up: font caches, allocations
  std::vector<double> ms;
  for (int i = 0; i < kReps; ++i) {
    QElapsedTimer t;
    t.start();
    redraw();
    ms.push_back(t.nsecsElapsed() / 1e6);
  }
  std::sort(ms.begin(), ms.end());
  return {ms[ms.size() / 2], ms.front()};
}

QCustomPlot* makePlot() {
  auto* plot = new QCustomPlot;
  plot->resize(kWidth, kHeight);
  plot->setPlottingHint(QCP::phCacheLabels, true);
  return plot;
}

}  // namespace

int main(int argc, char** argv) {
  if (qEnvironmentVariableIsEmpty("QT_QPA_PLATFORM")) qputenv("QT_QPA_PLATFORM", "offscreen");
  QApplication app(argc, argv);
  QTextStream out(stdout);

  // A loss-like curve with noise: the worst case for decimation is not smoothness but the
  // number of distinct extremes, which noise maximises.
  std::vector<double> x(kPoints), y(kPoints);
  uint64_t state = 0x9e3779b97f4a7c15ull;
  for (std::size_t i = 0; i < kPoints; ++i) {
    state = state * 6364136223846793005ull + 1442695040888963407ull;
    const double noise = double(state >> 11) / double(1ull << 53) - 0.5;
    x[i] = double(i);
    y[i] = 2.0 + 8.0 * std::exp(-double(i) / 150000.0) + 0.4 * noise;
  }

  // 1) Every point to QCustomPlot, its adaptive sampling off.
  QCustomPlot* full = makePlot();
  QCPGraph* g = full->addGraph();
  g->setAdaptiveSampling(false);
  {
    QVector<QCPGraphData> d(static_cast<int>(kPoints));
    for (std::size_t i = 0; i < kPoints; ++i) d[static_cast<int>(i)] = QCPGraphData(x[i], y[i]);
    g->data()->set(d, true);
  }
  full->xAxis->setRange(0, double(kPoints));
  full->yAxis->setRange(0, 11);
  const Timing tFull = measure([&] { full->toPixmap(kWidth, kHeight); });

  // 2) Every point, QCustomPlot's adaptive sampling on (its default).
  g->setAdaptiveSampling(true);
  const Timing tAdaptive = measure([&] { full->toPixmap(kWidth, kHeight); });

  // 3) The Monitor's way: decimate the visible range to the axis rect's width, then draw.
  fathom::ui::DecimatedSeries series;
  series.append(x.data(), y.data(), kPoints);
  QCustomPlot* dec = makePlot();
  QCPGraph* dg = dec->addGraph();
  dg->setAdaptiveSampling(false);
  dec->xAxis->setRange(0, double(kPoints));
  dec->yAxis->setRange(0, 11);
  dec->toPixmap(kWidth, kHeight);  // lay out once so the axis rect has its width
  fathom::ui::DecimatedPoints pts;
  QVector<QCPGraphData> buf;
  std::size_t drawn = 0;
  auto decimatedRedraw = [&](double lo, double hi) {
    dec->xAxis->setRange(lo, hi);
    series.decimate(lo, hi, dec->axisRect()->width(), &pts);
    buf.resize(static_cast<int>(pts.size()));
    for (int i = 0; i < buf.size(); ++i) buf[i] = QCPGraphData(pts.x[i], pts.y[i]);
    dg->data()->set(buf, true);
    drawn = pts.size();
    dec->toPixmap(kWidth, kHeight);
  };
  const Timing tDec = measure([&] { decimatedRedraw(0, double(kPoints)); });
  const Timing tDecZoom = measure([&] { decimatedRedraw(250000, 260000); });
  // The decimation alone (what a zoom or a new batch costs before drawing).
  const Timing tDecOnly = measure([&] { series.decimate(0, double(kPoints), dec->axisRect()->width(), &pts); });
  // The linear reference, for comparison with the indexed series.
  const Timing tRef = measure([&] { fathom::ui::decimateM4(x.data(), y.data(), kPoints, 0, double(kPoints), dec->axisRect()->width(), &pts); });

  out.setRealNumberNotation(QTextStream::FixedNotation);
  out.setRealNumberPrecision(2);
  out << "bench_chart_decimation: " << kPoints << " points, " << kWidth << "x" << kHeight << " px, " << kReps
      << " redraws each (median / best, ms)\n";
  out << "  without decimation, QCustomPlot adaptive sampling off : " << tFull.median << " / " << tFull.best << "\n";
  out << "  without decimation, QCustomPlot adaptive sampling on  : " << tAdaptive.median << " / " << tAdaptive.best << "\n";
  out << "  with decimation (whole range, " << drawn << " points drawn)   : " << tDec.median << " / " << tDec.best << "\n";
  out << "  with decimation, zoomed to 10,000 points          : " << tDecZoom.median << " / " << tDecZoom.best << "\n";
  out << "  decimation alone: indexed " << tDecOnly.median << " ms, linear reference " << tRef.median << " ms\n";
  out << "  speed-up over all points: " << (tFull.median / std::max(tDec.median, 1e-3)) << "x\n";
  out.flush();
  delete full;
  delete dec;
  if (tDec.best >= 16.0) {
    QTextStream(stderr) << "FAIL: the best decimated redraw took " << tDec.best << " ms, more than one 60 Hz frame (16 ms)\n";
    return 1;
  }
  return 0;
}
