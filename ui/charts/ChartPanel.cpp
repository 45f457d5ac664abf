// ChartPanel: QCustomPlot configured for many points. QCustomPlot's own adaptive sampling is off
// (it would scan every point on every replot); our DecimatedSeries hands it <= 4 points per pixel
// column of the visible range, recomputed only when the range, the size or the data change.
#include "ui/charts/ChartPanel.h"

#include <QApplication>
#include <QDir>
#include <QMessageBox>
#include <QFile>
#include <QFileDialog>
#include <QFileInfo>
#include <QHBoxLayout>
#include <QLabel>
#include <QMenu>
#include <QSaveFile>
#include <QSvgGenerator>
#include <QTextStream>
#include <QTimer>
#include <QToolButton>
#include <QVBoxLayout>

#include <cmath>
#include <qcustomplot.h>

#include "ui/Format.h"
#include "ui/Icons.h"
#include "ui/Theme.h"

namespace fathom::ui {

namespace {

// Tick labels with SI suffixes: 512K, 1.2M (tokens, tokens/s).
class SiTicker : public QCPAxisTicker {
 protected:
  QString getTickLabel(double tick, const QLocale&, QChar, int) override { return formatSi(tick, 1); }
};

// Integer tick labels for steps (QCustomPlot would write 1e+04).
class StepTicker : public QCPAxisTicker {
 protected:
  QString getTickLabel(double tick, const QLocale&, QChar, int) override {
    return std::fabs(tick) >= 1e6 ? formatSi(tick, 2) : QString::number(static_cast<qint64>(std::llround(tick)));
  }
};

}  // namespace

QString xAxisName(XAxisKind kind) {
  switch (kind) {
    case XAxisKind::Step: return QObject::tr("step");
    case XAxisKind::Tokens: return QObject::tr("tokens");
    case XAxisKind::Time: return QObject::tr("time");
  }
  return QString();
}

ChartPanel::ChartPanel(const QString& id, const QString& title, const QString& unit, double scale, QWidget* parent)
    : QFrame(parent), m_id(id), m_title(title), m_unit(unit), m_scale(scale), m_hoverX(NAN) {
  setObjectName(QStringLiteral("ChartPanel"));
  setFrameShape(QFrame::StyledPanel);
  auto* layout = new QVBoxLayout(this);
  layout->setContentsMargins(8, 6, 8, 4);
  layout->setSpacing(2);

  auto* header = new QHBoxLayout;
  header->setSpacing(4);
  m_titleLabel = new QLabel(unit.isEmpty() ? title : QStringLiteral("%1 <span style='font-weight:normal'>(%2)</span>").arg(title, unit), this);
  QFont tf = m_titleLabel->font();
  tf.setBold(true);
  m_titleLabel->setFont(tf);
  header->addWidget(m_titleLabel);
  header->addStretch(1);
  m_valueLabel = new QLabel(this);
  m_valueLabel->setForegroundRole(QPalette::PlaceholderText);
  header->addWidget(m_valueLabel);
  m_pin = new QToolButton(this);
  m_pin->setAutoRaise(true);
  m_pin->setCheckable(true);
  m_pin->setIconSize(QSize(14, 14));
  m_pin->setToolTip(tr("Pin: keep this panel at the top of the grid"));
  connect(m_pin, &QToolButton::toggled, this, [this](bool on) {
    m_pinned = on;
    emit pinToggled(on);
  });
  header->addWidget(m_pin);
  m_menu = new QToolButton(this);
  m_menu->setAutoRaise(true);
  m_menu->setIconSize(QSize(14, 14));
  m_menu->setToolTip(tr("Export, pop out, reorder"));
  connect(m_menu, &QToolButton::clicked, this, [this] { showContextMenu(m_menu->mapTo(this, m_menu->rect().bottomLeft())); });
  header->addWidget(m_menu);
  layout->addLayout(header);

  m_plot = new QCustomPlot(this);
  m_plot->setMinimumHeight(170);
  m_plot->setNoAntialiasingOnDrag(true);
  m_plot->setPlottingHint(QCP::phCacheLabels, true);
  m_plot->setInteractions(QCP::iRangeZoom);
  m_plot->axisRect()->setRangeZoomAxes(m_plot->xAxis, nullptr);  // x only: y follows the data
  m_plot->setSelectionRectMode(QCP::srmZoom);
  m_plot->axisRect()->setAutoMargins(QCP::msLeft | QCP::msBottom);
  m_plot->axisRect()->setMargins(QMargins(0, 6, 10, 0));
  m_plot->yAxis->setNumberFormat(QStringLiteral("gb"));
  m_plot->yAxis->setPadding(2);
  m_plot->xAxis->setPadding(2);
  m_plot->xAxis->ticker()->setTickCount(5);
  m_plot->yAxis->ticker()->setTickCount(4);
  if (unit == QLatin1String("tok/s")) m_plot->yAxis->setTicker(QSharedPointer<QCPAxisTicker>(new SiTicker));
  m_plot->legend->setVisible(false);
  m_plot->legend->setBorderPen(Qt::NoPen);
  m_plot->axisRect()->insetLayout()->setInsetAlignment(0, Qt::AlignRight | Qt::AlignTop);
  layout->addWidget(m_plot, 1);

  m_hoverLine = new QCPItemStraightLine(m_plot);
  m_hoverLine->setVisible(false);
  m_hoverLine->setSelectable(false);
  m_hoverLabel = new QCPItemText(m_plot);
  m_hoverLabel->setVisible(false);
  m_hoverLabel->setSelectable(false);
  m_hoverLabel->setPositionAlignment(Qt::AlignLeft | Qt::AlignTop);
  m_hoverLabel->position->setType(QCPItemPosition::ptAxisRectRatio);
  m_hoverLabel->position->setCoords(0.01, 0.02);
  m_hoverLabel->setTextAlignment(Qt::AlignLeft);
  m_hoverLabel->setPadding(QMargins(6, 4, 6, 4));
  m_hoverLabel->setLayer(QStringLiteral("legend"));
  m_empty = new QCPItemText(m_plot);
  m_empty->position->setType(QCPItemPosition::ptAxisRectRatio);
  m_empty->position->setCoords(0.5, 0.5);
  m_empty->setPositionAlignment(Qt::AlignCenter);
  m_empty->setText(tr("Waiting for data…"));

  m_plot->installEventFilter(this);
  connect(m_plot->xAxis, qOverload<const QCPRange&>(&QCPAxis::rangeChanged), this, [this](const QCPRange& r) {
    if (m_settingRange) return;
    // The user zoomed (wheel or rectangle): stop following and redraw at the new resolution.
    m_following = false;
    emit userZoomed(r.lower, r.upper);
    requestReplot();
  });
  connect(m_plot, &QCustomPlot::mouseDoubleClick, this, [this](QMouseEvent*) {
    resetView();
    emit userReset();
  });
  connect(m_plot, &QCustomPlot::mouseMove, this, [this](QMouseEvent* e) {
    const double x = m_plot->xAxis->pixelToCoord(e->position().x());
    showHover(x, true);
    emit hovered(x);
  });
  setContextMenuPolicy(Qt::CustomContextMenu);
  connect(this, &QWidget::customContextMenuRequested, this, &ChartPanel::showContextMenu);
  m_plot->setContextMenuPolicy(Qt::CustomContextMenu);
  connect(m_plot, &QWidget::customContextMenuRequested, this, [this](const QPoint& p) { showContextMenu(m_plot->mapTo(this, p)); });
  connect(Theme::instance(), &Theme::changed, this, [this] {
    applyTheme();
    requestReplot();
  });
  setXAxisKind(XAxisKind::Step);
  applyTheme();
}

ChartPanel::~ChartPanel() = default;

void ChartPanel::applyTheme() {
  Theme* t = Theme::instance();
  const QColor bg = t->color(QStringLiteral("chart.panel")), text = t->color(QStringLiteral("chart.text"));
  QPalette pal = palette();
  pal.setColor(QPalette::Window, bg);
  setPalette(pal);
  setAutoFillBackground(true);
  setStyleSheet(QStringLiteral("QFrame#ChartPanel { background: %1; border: 1px solid %2; border-radius: 6px; }")
                    .arg(bg.name(), t->color(QStringLiteral("chart.border")).name()));
  m_titleLabel->setStyleSheet(QStringLiteral("color: %1;").arg(t->color(QStringLiteral("chart.title")).name()));
  m_plot->setBackground(bg);
  m_plot->axisRect()->setBackground(bg);
  for (QCPAxis* a : {m_plot->xAxis, m_plot->yAxis}) {
    a->setBasePen(QPen(t->color(QStringLiteral("chart.axis"))));
    a->setTickPen(QPen(t->color(QStringLiteral("chart.axis"))));
    a->setSubTickPen(Qt::NoPen);
    a->setTickLabelColor(text);
    a->setLabelColor(text);
    a->grid()->setPen(QPen(t->color(QStringLiteral("chart.grid")), 1));
    a->grid()->setZeroLinePen(Qt::NoPen);
  }
  m_plot->xAxis->grid()->setVisible(true);
  m_plot->legend->setBrush(QColor(t->color(QStringLiteral("chart.tooltip"))));
  m_plot->legend->setTextColor(text);
  QPen hover(t->color(QStringLiteral("chart.hover")));
  hover.setStyle(Qt::DotLine);
  m_hoverLine->setPen(hover);
  m_hoverLabel->setBrush(t->color(QStringLiteral("chart.tooltip")));
  m_hoverLabel->setPen(QPen(t->color(QStringLiteral("chart.border"))));
  m_hoverLabel->setColor(t->color(QStringLiteral("chart.title")));
  m_empty->setColor(text);
  for (int i = 0; i < static_cast<int>(m_series.size()); ++i) applySeriesStyle(*m_series[i], i);
  for (int i = 0; i < m_markerItems.size(); ++i) markerPen(m_markerItems[i], m_markers.value(i).name);
  const QColor muted = t->color(QStringLiteral("chart.text")), title = t->color(QStringLiteral("chart.title"));
  m_pin->setIcon(Icons::icon(QStringLiteral("pin"), muted, title, 14));
  m_menu->setIcon(Icons::icon(QStringLiteral("more"), muted, title, 14));
}

void ChartPanel::markerPen(QCPItemStraightLine* item, const QString& name) const {
  // Evaluations happen often and val_loss already shows them: keep those lines faint.
  QColor c = Theme::instance()->color(QStringLiteral("event.") + name);
  c.setAlpha(name == QLatin1String("eval") ? 70 : 170);
  QPen p(c, 1);
  p.setStyle(name == QLatin1String("eval") ? Qt::DotLine : Qt::DashLine);
  item->setPen(p);
}

void ChartPanel::applySeriesStyle(Series& s, int index) {
  QPen pen(s.color, 1.6);
  pen.setStyle(s.style);
  s.graph->setPen(pen);
  // Sparse series (val_loss, the first system samples) get a dot per point so one point shows.
  if (s.scatter || s.data.size() < 16) s.graph->setScatterStyle(QCPScatterStyle(QCPScatterStyle::ssDisc, s.color, s.scatter ? 5 : 4));
  else s.graph->setScatterStyle(QCPScatterStyle());
  if (m_stacked) {
    QColor fill = s.color;
    fill.setAlpha(Theme::instance()->isDark() ? 110 : 90);
    s.graph->setBrush(fill);
    s.graph->setChannelFillGraph(index > 0 ? m_series[index - 1]->graph : nullptr);
  } else {
    s.graph->setBrush(Qt::NoBrush);
    s.graph->setChannelFillGraph(nullptr);
  }
}

int ChartPanel::addSeries(const QString& name, const QColor& color, Qt::PenStyle style, bool scatter) {
  auto s = std::make_unique<Series>();
  s->name = name;
  s->color = color;
  s->style = style;
  s->scatter = scatter;
  s->graph = m_plot->addGraph();
  s->graph->setName(name);
  s->graph->setAdaptiveSampling(false);  // we decimate ourselves
  m_series.push_back(std::move(s));
  const int index = static_cast<int>(m_series.size()) - 1;
  applySeriesStyle(*m_series.back(), index);
  m_plot->legend->setVisible(m_series.size() > 1);
  return index;
}

int ChartPanel::seriesIndex(const QString& name) const {
  for (int i = 0; i < static_cast<int>(m_series.size()); ++i)
    if (m_series[i]->name == name) return i;
  return -1;
}

QString ChartPanel::seriesName(int index) const { return m_series[index]->name; }

void ChartPanel::setSeriesColor(int index, const QColor& color) {
  m_series[index]->color = color;
  applySeriesStyle(*m_series[index], index);
  requestReplot();
}

void ChartPanel::setStacked(bool stacked) {
  m_stacked = stacked;
  for (int i = 0; i < static_cast<int>(m_series.size()); ++i) applySeriesStyle(*m_series[i], i);
}

void ChartPanel::clearSeries() {
  m_plot->clearGraphs();
  m_series.clear();
  m_plot->legend->setVisible(false);
  requestReplot();
}

void ChartPanel::clearData() {
  for (auto& s : m_series) {
    s->data.clear();
    s->graph->data()->clear();
  }
  m_valueLabel->clear();
  requestReplot();
}

void ChartPanel::append(int series, double x, double y) {
  m_series[series]->data.append(x, y * m_scale);
  requestReplot();
}

void ChartPanel::append(int series, const double* x, const double* y, std::size_t n) {
  DecimatedSeries& d = m_series[series]->data;
  d.reserve(d.size() + n);
  for (std::size_t i = 0; i < n; ++i) d.append(x[i], y[i] * m_scale);
  requestReplot();
}

void ChartPanel::setXAxisKind(XAxisKind kind) {
  m_xKind = kind;
  switch (kind) {
    case XAxisKind::Step: m_plot->xAxis->setTicker(QSharedPointer<QCPAxisTicker>(new StepTicker)); break;
    case XAxisKind::Tokens: m_plot->xAxis->setTicker(QSharedPointer<QCPAxisTicker>(new SiTicker)); break;
    case XAxisKind::Time: {
      auto t = QSharedPointer<QCPAxisTickerTime>(new QCPAxisTickerTime);
      t->setTimeFormat(QStringLiteral("%h:%m:%s"));
      m_plot->xAxis->setTicker(t);
      break;
    }
  }
  m_plot->xAxis->ticker()->setTickCount(5);
  requestReplot();
}

void ChartPanel::setMarkers(const QVector<ChartMarker>& markers) {
  for (QCPItemStraightLine* item : m_markerItems) m_plot->removeItem(item);
  m_markerItems.clear();
  m_markers.clear();
  for (const ChartMarker& m : markers) addMarker(m);
  requestReplot();
}

void ChartPanel::addMarker(const ChartMarker& marker) {
  auto* line = new QCPItemStraightLine(m_plot);
  line->setSelectable(false);
  line->setClipToAxisRect(true);
  line->point1->setCoords(marker.x, 0);
  line->point2->setCoords(marker.x, 1);
  markerPen(line, marker.name);
  line->setLayer(QStringLiteral("grid"));
  m_markerItems.push_back(line);
  m_markers.push_back(marker);
  requestReplot();
}

void ChartPanel::setEmptyText(const QString& text) {
  m_empty->setText(text);
  requestReplot();
}

void ChartPanel::setPinned(bool pinned) {
  m_pin->setChecked(pinned);
}

bool ChartPanel::dataXRange(double* lo, double* hi) const {
  bool any = false;
  for (const auto& s : m_series) {
    if (s->data.empty()) continue;
    const double a = s->data.xs().front(), b = s->data.xs().back();
    if (!any || a < *lo) *lo = a;
    if (!any || b > *hi) *hi = b;
    any = true;
  }
  return any;
}

void ChartPanel::fullXRange(double* lo, double* hi) const {
  if (m_rangeProvider && m_rangeProvider(lo, hi)) {
    if (*hi <= *lo) *hi = *lo + 1;
    return;
  }
  bool any = false;
  for (const auto& s : m_series) {
    if (s->data.empty()) continue;
    const double a = s->data.xs().front(), b = s->data.xs().back();
    if (!any || a < *lo) *lo = a;
    if (!any || b > *hi) *hi = b;
    any = true;
  }
  if (!any) {
    *lo = 0;
    *hi = 1;
  } else if (*hi <= *lo) {
    *hi = *lo + 1;
  }
}

QPair<double, double> ChartPanel::xRange() const { return {m_plot->xAxis->range().lower, m_plot->xAxis->range().upper}; }

void ChartPanel::setXRange(double lo, double hi) {
  m_following = false;
  m_settingRange = true;
  m_plot->xAxis->setRange(lo, hi);
  m_settingRange = false;
  requestReplot();
}

void ChartPanel::resetView() {
  m_following = true;
  requestReplot();
}

void ChartPanel::requestReplot() {
  m_dirty = true;
  if (m_replotQueued) return;
  m_replotQueued = true;
  QTimer::singleShot(0, this, [this] {
    m_replotQueued = false;
    if (m_dirty && isVisible()) redraw();
  });
}

void ChartPanel::replotNow() {
  redraw();
  m_plot->replot(QCustomPlot::rpImmediateRefresh);
}

void ChartPanel::showEvent(QShowEvent* event) {
  QFrame::showEvent(event);
  if (m_dirty) requestReplot();
}

void ChartPanel::redraw() {
  m_dirty = false;
  double lo = 0, hi = 1;
  if (m_following) {
    fullXRange(&lo, &hi);
    m_settingRange = true;
    m_plot->xAxis->setRange(lo, hi);
    m_settingRange = false;
  } else {
    lo = m_plot->xAxis->range().lower;
    hi = m_plot->xAxis->range().upper;
  }
  const int columns = std::max(16, m_plot->axisRect()->width());
  bool any = false;
  for (int i = 0; i < static_cast<int>(m_series.size()); ++i) {
    Series* s = m_series[i].get();
    const bool sparse = s->data.size() < 16;
    if (sparse != (s->graph->scatterStyle().shape() != QCPScatterStyle::ssNone) && !s->scatter) applySeriesStyle(*s, i);
    s->data.decimate(lo, hi, columns, &m_scratch);
    QVector<QCPGraphData> pts(static_cast<int>(m_scratch.size()));
    for (int k = 0; k < pts.size(); ++k) pts[k] = QCPGraphData(m_scratch.x[k], m_scratch.y[k]);
    s->graph->data()->set(pts, true);
    any |= !s->data.empty();
  }
  m_empty->setVisible(!any);
  updateYRange(lo, hi);
  // Latest value of the first series (the total of a stacked panel), in the title bar.
  const Series* head = m_series.empty() ? nullptr : (m_stacked ? m_series.back().get() : m_series.front().get());
  if (head && !head->data.empty()) {
    const double v = head->data.ys().back();
    m_valueLabel->setText(m_unit == QLatin1String("tok/s") ? formatSi(v) : formatValue(v));
  }
  if (!std::isnan(m_hoverX)) showHover(m_hoverX, m_hoverLabel->visible());
  m_plot->replot(QCustomPlot::rpQueuedReplot);
}

void ChartPanel::updateYRange(double xLo, double xHi) {
  double lo = 0, hi = 0;
  bool any = false;
  for (const auto& s : m_series) {
    double a, b;
    if (!s->data.yRange(xLo, xHi, &a, &b)) continue;
    if (!any || a < lo) lo = a;
    if (!any || b > hi) hi = b;
    any = true;
  }
  if (!any) {
    m_plot->yAxis->setRange(0, 1);
    return;
  }
  if (m_stacked || (lo >= 0 && (m_unit == QLatin1String("%") || m_unit == QLatin1String("GiB") || m_unit == QLatin1String("W")))) lo = 0;
  const double span = hi - lo;
  if (span <= 0 && hi == 0) {  // all zeros (e.g. MFU on a CPU): a readable 0..1 axis
    m_plot->yAxis->setRange(0, 1);
    return;
  }
  const double pad = span > 0 ? span * 0.06 : std::max(std::fabs(hi) * 0.05, 1e-12);
  m_plot->yAxis->setRange(lo == 0 ? 0 : lo - pad, hi + pad);
}

QString ChartPanel::formatX(double x) const {
  switch (m_xKind) {
    case XAxisKind::Step: return tr("step %1").arg(static_cast<qint64>(std::llround(x)));
    case XAxisKind::Tokens: return tr("%1 tokens").arg(formatSi(x));
    case XAxisKind::Time: return formatDuration(x);
  }
  return QString();
}

QString ChartPanel::hoverText(double x) const {
  QStringList lines;
  double shownX = x;
  // Snap to the nearest point of the first series with data, so the read-out shows real samples.
  for (const auto& s : m_series) {
    const std::ptrdiff_t i = s->data.nearest(x);
    if (i >= 0) {
      shownX = s->data.xs()[i];
      break;
    }
  }
  lines << formatX(shownX);
  for (const auto& s : m_series) {
    const std::ptrdiff_t i = s->data.nearest(shownX);
    if (i < 0) continue;
    const double v = s->data.ys()[i];
    const QString value = m_unit == QLatin1String("tok/s") ? formatSi(v) : formatValue(v);
    lines << QStringLiteral("● %1  %2%3").arg(s->name.isEmpty() ? m_title : s->name, value,
                                               m_unit.isEmpty() || m_unit == QLatin1String("tok/s") ? QString() : QLatin1Char(' ') + m_unit);
  }
  // Events within a few pixels.
  const double tol = std::fabs(m_plot->xAxis->pixelToCoord(4) - m_plot->xAxis->pixelToCoord(0));
  for (const ChartMarker& m : m_markers)
    if (std::fabs(m.x - shownX) <= tol) lines << QStringLiteral("▏%1").arg(m.text.isEmpty() ? m.name : m.text);
  return lines.join(QLatin1Char('\n'));
}

void ChartPanel::showHover(double x, bool withLabel) {
  m_hoverX = x;
  if (std::isnan(x) || m_series.empty()) {
    m_hoverLine->setVisible(false);
    m_hoverLabel->setVisible(false);
    m_plot->replot(QCustomPlot::rpQueuedReplot);
    return;
  }
  m_hoverLine->point1->setCoords(x, 0);
  m_hoverLine->point2->setCoords(x, 1);
  m_hoverLine->setVisible(true);
  m_hoverLabel->setVisible(withLabel);
  if (withLabel) {
    m_hoverLabel->setText(hoverText(x));
    // Keep the label away from the cursor: left half -> right corner.
    const bool right = m_plot->xAxis->coordToPixel(x) < m_plot->axisRect()->center().x();
    m_hoverLabel->setPositionAlignment(Qt::AlignTop | (right ? Qt::AlignRight : Qt::AlignLeft));
    m_hoverLabel->position->setCoords(right ? 0.99 : 0.01, 0.02);
  }
  m_plot->replot(QCustomPlot::rpQueuedReplot);
}

bool ChartPanel::eventFilter(QObject* watched, QEvent* event) {
  if (watched == m_plot && event->type() == QEvent::Leave) {
    showHover(NAN, false);
    emit hovered(NAN);
  }
  if (watched == m_plot && event->type() == QEvent::Resize) requestReplot();
  return QFrame::eventFilter(watched, event);
}

int ChartPanel::drawnPointCount() const {
  int n = 0;
  for (const auto& s : m_series) n += s->graph->data()->size();
  return n;
}

void ChartPanel::showContextMenu(const QPoint& pos) {
  QMenu menu(this);
  menu.addAction(tr("Reset zoom (double-click)"), this, [this] {
    resetView();
    emit userReset();
  });
  menu.addAction(m_pinned ? tr("Unpin") : tr("Pin to top"), this, [this] { setPinned(!m_pinned); });
  menu.addAction(tr("Move earlier"), this, [this] { emit moveRequested(-1); });
  menu.addAction(tr("Move later"), this, [this] { emit moveRequested(+1); });
  menu.addAction(tr("Pop out"), this, [this] { emit popOutRequested(); });
  menu.addSeparator();
  menu.addAction(tr("Export image or data…"), this, &ChartPanel::exportWithDialog);
  menu.exec(mapToGlobal(pos));
}

void ChartPanel::exportWithDialog() {
  QString filter;
  const QString base = m_id + QStringLiteral(".png");
  const QString path = QFileDialog::getSaveFileName(this, tr("Export %1").arg(m_title), base,
                                                    tr("PNG image (*.png);;SVG image (*.svg);;PDF (*.pdf);;CSV data (*.csv)"), &filter);
  if (path.isEmpty()) return;
  const QString suffix = QFileInfo(path).suffix().toLower();
  QString error;
  bool ok = false;
  if (suffix == QLatin1String("svg")) ok = exportSvg(path);
  else if (suffix == QLatin1String("pdf")) ok = exportPdf(path);
  else if (suffix == QLatin1String("csv")) ok = exportCsv(path, &error);
  else ok = exportPng(path);
  if (!ok)
    QMessageBox::warning(this, tr("Export"), tr("Could not write %1%2. Check the folder exists and is writable.")
                                                 .arg(QDir::toNativeSeparators(path), error.isEmpty() ? QString() : QStringLiteral(": ") + error));
}

bool ChartPanel::exportPng(const QString& path, int width, int height) {
  redraw();
  return m_plot->savePng(path, width, height, 2.0);
}

bool ChartPanel::exportPdf(const QString& path) {
  redraw();
  return m_plot->savePdf(path);
}

bool ChartPanel::exportSvg(const QString& path, int width, int height) {
  redraw();
  const int w = width > 0 ? width : m_plot->width(), h = height > 0 ? height : m_plot->height();
  QSvgGenerator gen;
  gen.setFileName(path);
  gen.setSize(QSize(w, h));
  gen.setViewBox(QRect(0, 0, w, h));
  gen.setTitle(m_title);
  gen.setDescription(tr("Fathom chart: %1").arg(m_title));
  QCPPainter painter;
  if (!painter.begin(&gen)) return false;
  m_plot->toPainter(&painter, w, h);
  painter.end();
  return QFileInfo(path).size() > 0;
}

bool ChartPanel::exportCsv(const QString& path, QString* error) const {
  QSaveFile f(path);
  if (!f.open(QIODevice::WriteOnly | QIODevice::Text)) {
    if (error) *error = f.errorString();
    return false;
  }
  QTextStream out(&f);
  out.setRealNumberPrecision(17);
  const QString xName = m_xKind == XAxisKind::Time ? QStringLiteral("time_s") : xAxisName(m_xKind);
  auto quote = [](QString s) { return s.contains(QLatin1Char(',')) || s.contains(QLatin1Char('"')) ? QLatin1Char('"') + s.replace(QLatin1Char('"'), QStringLiteral("\"\"")) + QLatin1Char('"') : s; };
  bool sameX = !m_series.empty();
  for (const auto& s : m_series) sameX = sameX && s->data.xs() == m_series.front()->data.xs();
  if (sameX) {
    out << xName;
    for (const auto& s : m_series) out << ',' << quote(s->name.isEmpty() ? m_title : s->name);
    out << '\n';
    const auto& xs = m_series.front()->data.xs();
    for (std::size_t i = 0; i < xs.size(); ++i) {
      out << xs[i];
      for (const auto& s : m_series) out << ',' << s->data.ys()[i];
      out << '\n';
    }
  } else {
    out << "series," << xName << ",value\n";
    for (const auto& s : m_series) {
      const QString name = quote(s->name.isEmpty() ? m_title : s->name);
      for (std::size_t i = 0; i < s->data.size(); ++i) out << name << ',' << s->data.xs()[i] << ',' << s->data.ys()[i] << '\n';
    }
  }
  out.flush();
  if (!f.commit()) {
    if (error) *error = f.errorString();
    return false;
  }
  return true;
}

}  // namespace fathom::ui
