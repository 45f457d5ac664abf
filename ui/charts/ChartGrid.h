// The Monitor's grid of chart panels (a W&B-style workspace): responsive columns, pinned panels
// first, panels reorderable and poppable into their own window, hover and zoom shared across
// panels (one x-axis for all). Panels without series are hidden unless marked always-visible.
#pragma once

#include <QList>
#include <QPointer>
#include <QScrollArea>
#include <QStringList>

#include "ui/charts/ChartPanel.h"

class QGridLayout;

namespace fathom::ui {

class ChartGrid : public QScrollArea {
  Q_OBJECT
 public:
  explicit ChartGrid(QWidget* parent = nullptr);

  // Takes ownership. `alwaysVisible` panels show an empty state instead of disappearing.
  ChartPanel* addPanel(ChartPanel* panel, bool alwaysVisible = false);
  void clearPanels();
  ChartPanel* panel(const QString& id) const;
  QList<ChartPanel*> panels() const { return m_order; }
  // Panels in display order (pinned first), visible ones only.
  QList<ChartPanel*> visiblePanels() const;

  void setXAxisKind(XAxisKind kind);
  // Re-evaluates which panels are visible and lays them out (cheap; call after adding series).
  void relayout();
  void resetAllViews();
  // Asks every panel to redraw (coalesced): after a batch, so that panels following the shared
  // x range move together even when only some of them got points.
  void requestReplotAll();
  // The x range covered by every panel's data together (the shared axis while following).
  bool unionXRange(double* lo, double* hi) const;

  // Order and pins, for QSettings.
  QStringList orderState() const;
  QStringList pinnedState() const;
  void restoreState(const QStringList& order, const QStringList& pinned);

 protected:
  void resizeEvent(QResizeEvent* event) override;

 private:
  void wire(ChartPanel* panel);
  void move(ChartPanel* panel, int delta);
  void popOut(ChartPanel* panel);
  int columnsFor(int width) const;

  QWidget* m_content;
  QGridLayout* m_layout;
  QList<ChartPanel*> m_order;
  QList<QPointer<ChartPanel>> m_poppedOut;
  int m_columns = 0;
  bool m_syncing = false;
};

}  // namespace fathom::ui
