// Compare runs: tick several runs, pick one metric, see them overlaid (aligned by step or by
// tokens), one colour per run. Data comes from each run's session (live ones keep growing).
#pragma once

#include <QHash>
#include <QPointer>
#include <QWidget>

#include "cluster/workspace/Records.h"

class QComboBox;
class QListWidget;
class QListWidgetItem;

namespace fathom::cluster {
class JobQueue;
class Workspace;
class RunSession;
}  // namespace fathom::cluster

namespace fathom::ui {

class ChartPanel;

class ComparePanel : public QWidget {
  Q_OBJECT
 public:
  ComparePanel(cluster::Workspace* workspace, cluster::JobQueue* queue, QWidget* parent = nullptr);

  void reloadRuns();
  void setChecked(const QStringList& runIds);
  QStringList checkedRuns() const;
  void setMetric(const QString& key);
  QString metric() const;
  void setAlignByTokens(bool tokens);
  ChartPanel* chart() const { return m_chart; }

 private:
  void rebuild();
  void refreshMetrics();
  void onMetrics(const QString& runId, const QVector<cluster::MetricPoint>& points);

  cluster::Workspace* m_ws;
  cluster::JobQueue* m_queue;
  QListWidget* m_runs;
  QComboBox* m_metric;
  QComboBox* m_align;
  ChartPanel* m_chart;
  QWidget* m_chartHost;
  QHash<QString, int> m_seriesOf;  // run id -> series index
  QList<QMetaObject::Connection> m_connections;
  bool m_updating = false;
};

}  // namespace fathom::ui
