// HeatMapPlot; see HeatMapPlot.h.
#include "ui/charts/HeatMapPlot.h"

#include <qcustomplot.h>

#include "ui/Theme.h"

namespace fathom::ui {

HeatMapPlot makeHeatMapPlot(QWidget* parent, const QString& xLabel, const QString& yLabel, const QString& scaleLabel, int minimumHeight) {
  HeatMapPlot p;
  p.plot = new QCustomPlot(parent);
  p.plot->setMinimumHeight(minimumHeight);
  p.map = new QCPColorMap(p.plot->xAxis, p.plot->yAxis);
  p.scale = new QCPColorScale(p.plot);
  p.plot->plotLayout()->addElement(0, 1, p.scale);
  p.scale->setType(QCPAxis::atRight);
  p.scale->axis()->setLabel(scaleLabel);
  p.map->setColorScale(p.scale);
  QCPColorGradient plasma;
  plasma.setColorStopAt(0.0, QColor(0x0d, 0x08, 0x87));
  plasma.setColorStopAt(0.25, QColor(0x7e, 0x03, 0xa8));
  plasma.setColorStopAt(0.5, QColor(0xcc, 0x47, 0x78));
  plasma.setColorStopAt(0.75, QColor(0xf8, 0x95, 0x40));
  plasma.setColorStopAt(1.0, QColor(0xf0, 0xf9, 0x21));
  p.map->setGradient(plasma);
  p.map->setInterpolate(false);
  p.map->setTightBoundary(false);
  p.plot->xAxis->setLabel(xLabel);
  p.plot->yAxis->setLabel(yLabel);
  auto* margins = new QCPMarginGroup(p.plot);
  p.plot->axisRect()->setMarginGroup(QCP::msBottom | QCP::msTop, margins);
  p.scale->setMarginGroup(QCP::msBottom | QCP::msTop, margins);
  p.plot->setMouseTracking(true);
  return p;
}

void applyHeatMapTheme(const HeatMapPlot& p) {
  Theme* t = Theme::instance();
  p.plot->setBackground(t->color(QStringLiteral("chart.background")));
  p.plot->axisRect()->setBackground(t->color(QStringLiteral("chart.background")));
  for (QCPAxis* a : {p.plot->xAxis, p.plot->yAxis, p.scale->axis()}) {
    a->setBasePen(QPen(t->color(QStringLiteral("chart.axis"))));
    a->setTickPen(QPen(t->color(QStringLiteral("chart.axis"))));
    a->setSubTickPen(Qt::NoPen);
    a->setTickLabelColor(t->color(QStringLiteral("chart.text")));
    a->setLabelColor(t->color(QStringLiteral("chart.text")));
    a->grid()->setVisible(false);
  }
}

}  // namespace fathom::ui
