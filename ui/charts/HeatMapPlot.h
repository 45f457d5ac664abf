// The colour-map plot the heat maps share (the Monitor's expert-load map and rank step-time map):
// a QCustomPlot holding a QCPColorMap with its colour scale on the right, plasma colours
// (perceptually even, readable in both themes — no white top that vanishes on a light background as
// gpThermal's does), cells not interpolated, the scale aligned with the plot's margins, themed.
#pragma once

#include <QString>

class QCPColorMap;
class QCPColorScale;
class QCustomPlot;
class QWidget;

namespace fathom::ui {

struct HeatMapPlot {
  QCustomPlot* plot = nullptr;
  QCPColorMap* map = nullptr;
  QCPColorScale* scale = nullptr;
};

HeatMapPlot makeHeatMapPlot(QWidget* parent, const QString& xLabel, const QString& yLabel, const QString& scaleLabel, int minimumHeight);
// Colours of the current Theme on the plot's background, axes and scale.
void applyHeatMapTheme(const HeatMapPlot& p);

}  // namespace fathom::ui
