// One chart panel of the Monitor's grid: a QCustomPlot showing a few series of one metric, with
// decimated redraws (DecimatedSeries: at most 4 points per pixel column reach QCustomPlot), drag
// to zoom the x-axis, double-click to reset (follow the newest data), a hover read-out of every
// series at that x, event markers, and export to PNG/SVG/PDF/CSV. It owns copies of its series;
// redraws are coalesced: appends only mark it dirty, one queued replot follows.
#pragma once

#include <QColor>
#include <QFrame>
#include <QPointer>
#include <QVector>

#include <functional>
#include <memory>
#include <vector>

#include "ui/charts/Decimator.h"

class QCustomPlot;
class QCPGraph;
class QCPItemText;
class QCPItemStraightLine;
class QLabel;
class QToolButton;
class QMouseEvent;

namespace fathom::ui {

enum class XAxisKind { Step, Tokens, Time };
QString xAxisName(XAxisKind kind);  // "step", "tokens", "time (s)"

struct ChartMarker {
  double x = 0;
  QString name;  // checkpoint_saved, eval, nan_skipped, resumed
  QString text;  // tooltip-like description
};

class ChartPanel : public QFrame {
  Q_OBJECT
 public:
  // `scale` multiplies every y appended (bytes -> GiB, fraction -> %); `unit` labels the values.
  ChartPanel(const QString& id, const QString& title, const QString& unit, double scale = 1.0,
             QWidget* parent = nullptr);
  ~ChartPanel() override;

  const QString& id() const { return m_id; }
  QString title() const { return m_title; }
  const QString& unit() const { return m_unit; }

  // Series. Stacked panels fill each series down to the previous one (the caller appends
  // cumulative values). `scatter` draws a dot per point (sparse series such as val_loss).
  int addSeries(const QString& name, const QColor& color, Qt::PenStyle style = Qt::SolidLine, bool scatter = false);
  int seriesCount() const { return static_cast<int>(m_series.size()); }
  int seriesIndex(const QString& name) const;
  QString seriesName(int index) const;
  const DecimatedSeries& seriesData(int index) const { return m_series[index]->data; }
  void setSeriesColor(int index, const QColor& color);
  void setStacked(bool stacked);
  void clearSeries();  // removes all series
  void clearData();    // keeps the series, drops their points

  // Appends points (y is multiplied by the panel's scale). Cheap: only marks the panel dirty.
  void append(int series, double x, double y);
  void append(int series, const double* x, const double* y, std::size_t n);

  void setXAxisKind(XAxisKind kind);
  XAxisKind xAxisKind() const { return m_xKind; }
  void setMarkers(const QVector<ChartMarker>& markers);
  void addMarker(const ChartMarker& marker);
  void setEmptyText(const QString& text);

  // View. Following = the x range tracks all data; a zoom stops following until reset.
  bool isFollowing() const { return m_following; }
  void setXRange(double lo, double hi);  // stops following
  void resetView();                      // follows again
  QPair<double, double> xRange() const;

  // Hover read-out at x (NaN hides it); `withLabel` shows the values (the panel under the mouse).
  void showHover(double x, bool withLabel);
  // The read-out text at x: the x value, then every series' value at the nearest point.
  QString hoverText(double x) const;

  // Schedules one redraw (decimation + queued replot); many calls before it runs cost one.
  void requestReplot();
  // Decimates and replots now (tests, benchmarks, exports).
  void replotNow();
  // Points QCustomPlot holds after the last decimation, over all series (tests).
  int drawnPointCount() const;

  bool exportPng(const QString& path, int width = 0, int height = 0);
  bool exportSvg(const QString& path, int width = 0, int height = 0);
  bool exportPdf(const QString& path);
  // The full-resolution data: one column per series when they share their x values, else
  // long format (series, x, value).
  bool exportCsv(const QString& path, QString* error = nullptr) const;

  // x range of all data (false when empty).
  bool dataXRange(double* lo, double* hi) const;
  // While following, the x range comes from here (the grid's union over panels, so every
  // panel shows the same x range); null = this panel's own data.
  void setRangeProvider(std::function<bool(double*, double*)> provider) { m_rangeProvider = std::move(provider); }

  bool isPinned() const { return m_pinned; }
  void setPinned(bool pinned);
  QCustomPlot* plot() const { return m_plot; }

 signals:
  void hovered(double x);  // NaN when the mouse left
  void userZoomed(double lo, double hi);
  void userReset();
  void pinToggled(bool pinned);
  void popOutRequested();
  void moveRequested(int delta);  // -1 earlier, +1 later

 protected:
  bool eventFilter(QObject* watched, QEvent* event) override;
  void showEvent(QShowEvent* event) override;

 private:
  struct Series {
    QString name;
    QColor color;
    Qt::PenStyle style = Qt::SolidLine;
    bool scatter = false;
    DecimatedSeries data;
    QCPGraph* graph = nullptr;
  };

  void applyTheme();
  void applySeriesStyle(Series& s, int index);
  void markerPen(QCPItemStraightLine* item, const QString& name) const;
  void redraw();
  void updateYRange(double xLo, double xHi);
  void fullXRange(double* lo, double* hi) const;
  void showContextMenu(const QPoint& pos);
  void exportWithDialog();
  QString formatX(double x) const;

  QString m_id, m_title, m_unit;
  double m_scale = 1.0;
  XAxisKind m_xKind = XAxisKind::Step;
  std::vector<std::unique_ptr<Series>> m_series;
  QVector<ChartMarker> m_markers;
  QVector<QCPItemStraightLine*> m_markerItems;
  bool m_stacked = false;
  bool m_following = true;
  bool m_dirty = false, m_replotQueued = false;
  bool m_settingRange = false;
  bool m_pinned = false;
  double m_hoverX;

  QLabel* m_titleLabel;
  QLabel* m_valueLabel;  // latest value, in the title bar
  QToolButton* m_pin;
  QToolButton* m_menu;
  std::function<bool(double*, double*)> m_rangeProvider;
  QCustomPlot* m_plot;
  QCPItemText* m_hoverLabel;
  QCPItemStraightLine* m_hoverLine;
  QCPItemText* m_empty;
  DecimatedPoints m_scratch;
};

}  // namespace fathom::ui
