// Grid layout and the cross-panel behaviour (hover line everywhere, zoom in one = zoom in all).
#include "ui/charts/ChartGrid.h"

#include <QCloseEvent>
#include <QDialog>
#include <QGridLayout>
#include <QResizeEvent>
#include <QVBoxLayout>

#include <cmath>

namespace fathom::ui {

namespace {

// Hosts a popped-out panel; closing it hands the panel back to the grid.
class PopOutWindow : public QDialog {
 public:
  PopOutWindow(ChartPanel* panel, std::function<void(ChartPanel*)> giveBack, QWidget* parent)
      : QDialog(parent, Qt::Window), m_panel(panel), m_giveBack(std::move(giveBack)) {
    setWindowTitle(panel->title());
    setAttribute(Qt::WA_DeleteOnClose);
    auto* layout = new QVBoxLayout(this);
    layout->setContentsMargins(6, 6, 6, 6);
    panel->setParent(this);
    layout->addWidget(panel);
    panel->show();
    resize(900, 520);
  }

 protected:
  void closeEvent(QCloseEvent* event) override {
    if (m_panel) m_giveBack(m_panel);
    QDialog::closeEvent(event);
  }

 private:
  QPointer<ChartPanel> m_panel;
  std::function<void(ChartPanel*)> m_giveBack;
};

}  // namespace

ChartGrid::ChartGrid(QWidget* parent) : QScrollArea(parent) {
  setWidgetResizable(true);
  setFrameShape(QFrame::NoFrame);
  m_content = new QWidget(this);
  m_layout = new QGridLayout(m_content);
  m_layout->setContentsMargins(8, 8, 8, 8);
  m_layout->setSpacing(10);
  setWidget(m_content);
}

ChartPanel* ChartGrid::addPanel(ChartPanel* panel, bool alwaysVisible) {
  panel->setParent(m_content);
  panel->setProperty("alwaysVisible", alwaysVisible);
  m_order << panel;
  panel->setRangeProvider([this](double* lo, double* hi) { return unionXRange(lo, hi); });
  wire(panel);
  relayout();
  return panel;
}

void ChartGrid::clearPanels() {
  for (ChartPanel* p : m_order) p->deleteLater();
  for (const QPointer<ChartPanel>& p : m_poppedOut)
    if (p) p->window()->close();
  m_order.clear();
  m_poppedOut.clear();
  relayout();
}

ChartPanel* ChartGrid::panel(const QString& id) const {
  for (ChartPanel* p : m_order)
    if (p->id() == id) return p;
  return nullptr;
}

void ChartGrid::wire(ChartPanel* panel) {
  connect(panel, &ChartPanel::hovered, this, [this, panel](double x) {
    for (ChartPanel* p : m_order)
      if (p != panel && p->isVisible()) p->showHover(x, false);
  });
  connect(panel, &ChartPanel::userZoomed, this, [this, panel](double lo, double hi) {
    if (m_syncing) return;
    m_syncing = true;
    for (ChartPanel* p : m_order)
      if (p != panel) p->setXRange(lo, hi);
    m_syncing = false;
  });
  connect(panel, &ChartPanel::userReset, this, [this, panel] {
    for (ChartPanel* p : m_order)
      if (p != panel) p->resetView();
  });
  connect(panel, &ChartPanel::pinToggled, this, [this] { relayout(); });
  connect(panel, &ChartPanel::moveRequested, this, [this, panel](int delta) { move(panel, delta); });
  connect(panel, &ChartPanel::popOutRequested, this, [this, panel] { popOut(panel); });
}

void ChartGrid::move(ChartPanel* panel, int delta) {
  // Move past the neighbouring *visible* panel, so a move is always visible.
  const QList<ChartPanel*> visible = visiblePanels();
  const int vi = visible.indexOf(panel);
  const int vj = vi + delta;
  if (vi < 0 || vj < 0 || vj >= visible.size()) return;
  const int i = m_order.indexOf(panel), j = m_order.indexOf(visible[vj]);
  m_order.move(i, j);
  relayout();
}

void ChartGrid::popOut(ChartPanel* panel) {
  const int i = m_order.indexOf(panel);
  if (i < 0) return;
  m_order.removeAt(i);
  m_poppedOut << panel;
  panel->setRangeProvider(nullptr);  // alone in its window: its own range
  auto* w = new PopOutWindow(panel, [this, i](ChartPanel* p) {
    m_poppedOut.removeAll(p);
    p->setParent(m_content);
    p->setRangeProvider([this](double* lo, double* hi) { return unionXRange(lo, hi); });
    m_order.insert(std::min(i, static_cast<int>(m_order.size())), p);
    relayout();
  }, window());
  w->show();
  relayout();
}

QList<ChartPanel*> ChartGrid::visiblePanels() const {
  QList<ChartPanel*> pinned, rest;
  for (ChartPanel* p : m_order) {
    if (p->seriesCount() == 0 && !p->property("alwaysVisible").toBool()) continue;
    (p->isPinned() ? pinned : rest) << p;
  }
  return pinned + rest;
}

int ChartGrid::columnsFor(int width) const { return std::clamp(width / 430, 1, 3); }

void ChartGrid::relayout() {
  const QList<ChartPanel*> visible = visiblePanels();
  // takeAt() hands over the QWidgetItem (the panels themselves stay ours): delete it, or every
  // relayout leaks one per panel (LeakSanitizer, 2026-11-30).
  while (QLayoutItem* item = m_layout->takeAt(0)) delete item;
  for (ChartPanel* p : m_order)
    if (!visible.contains(p)) p->hide();
  m_columns = columnsFor(viewport()->width());
  for (int i = 0; i < visible.size(); ++i) {
    m_layout->addWidget(visible[i], i / m_columns, i % m_columns);
    visible[i]->show();
  }
  for (int c = 0; c < 3; ++c) m_layout->setColumnStretch(c, c < m_columns ? 1 : 0);
  // Rows keep a readable height; the area scrolls when there are many.
  const int rows = (static_cast<int>(visible.size()) + m_columns - 1) / std::max(1, m_columns);
  for (int r = 0; r < rows + 1; ++r) m_layout->setRowMinimumHeight(r, r < rows ? 240 : 0);
  m_layout->setRowStretch(rows, 1);
}

void ChartGrid::resizeEvent(QResizeEvent* event) {
  QScrollArea::resizeEvent(event);
  if (columnsFor(viewport()->width()) != m_columns) relayout();
}

void ChartGrid::setXAxisKind(XAxisKind kind) {
  for (ChartPanel* p : m_order) p->setXAxisKind(kind);
}

bool ChartGrid::unionXRange(double* lo, double* hi) const {
  bool any = false;
  for (ChartPanel* p : m_order) {
    double a, b;
    if (!p->dataXRange(&a, &b)) continue;
    if (!any || a < *lo) *lo = a;
    if (!any || b > *hi) *hi = b;
    any = true;
  }
  return any;
}

void ChartGrid::requestReplotAll() {
  for (ChartPanel* p : m_order)
    if (p->seriesCount() > 0) p->requestReplot();
}

void ChartGrid::resetAllViews() {
  for (ChartPanel* p : m_order) p->resetView();
}

QStringList ChartGrid::orderState() const {
  QStringList ids;
  for (ChartPanel* p : m_order) ids << p->id();
  return ids;
}

QStringList ChartGrid::pinnedState() const {
  QStringList ids;
  for (ChartPanel* p : m_order)
    if (p->isPinned()) ids << p->id();
  return ids;
}

void ChartGrid::restoreState(const QStringList& order, const QStringList& pinned) {
  // Known ids take the saved order; new panels keep their place after them.
  QList<ChartPanel*> sorted;
  for (const QString& id : order)
    if (ChartPanel* p = panel(id)) sorted << p;
  for (ChartPanel* p : m_order)
    if (!sorted.contains(p)) sorted << p;
  m_order = sorted;
  for (ChartPanel* p : m_order) p->setPinned(pinned.contains(p->id()));
  relayout();
}

}  // namespace fathom::ui
