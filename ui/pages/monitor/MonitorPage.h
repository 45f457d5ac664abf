// The Monitor: one run's live dashboard (chart grid with a shared, switchable x-axis), its text
// samples, its logs, and the Compare view. Follows the run through the JobQueue's RunSession;
// never redraws per record (the session batches, the panels coalesce replots).
#pragma once

#include <QElapsedTimer>
#include <QPointer>
#include <QWidget>

#include "cluster/jobs/RunSession.h"
#include "cluster/workspace/Records.h"
#include "ui/charts/ChartPanel.h"

class QComboBox;
class QLabel;
class QPushButton;
class QSettings;
class QTabWidget;
class QTextBrowser;
class QButtonGroup;

namespace fathom::cluster {
class JobQueue;
class Workspace;
class RunSession;
}  // namespace fathom::cluster

namespace fathom::ui {

class RunDashboard;
class LogView;
class ComparePanel;

class MonitorPage : public QWidget {
  Q_OBJECT
 public:
  MonitorPage(cluster::Workspace* workspace, cluster::JobQueue* queue, QWidget* parent = nullptr);

  // Shows run `id` ("" = none).
  void setRun(const QString& id);
  QString currentRun() const { return m_runId; }
  void setXAxisKind(XAxisKind kind);

  RunDashboard* dashboard() const { return m_dashboard; }
  LogView* logView() const { return m_logs; }
  ComparePanel* comparePanel() const { return m_compare; }
  QTabWidget* tabs() const { return m_tabs; }
  QString statusText() const;

  void saveState(QSettings& settings) const;
  void restoreState(const QSettings& settings);

 signals:
  void statusMessage(const QString& text);

 private:
  void reloadRunList();
  void attachSession();
  void onMetrics(const QVector<cluster::MetricPoint>& points);
  void onSamples(const QVector<cluster::SampleItem>& samples);
  void onEvents(const QVector<cluster::EventItem>& events);
  void updateStatus();
  static QString eventLine(const cluster::EventItem& e);

  cluster::Workspace* m_ws;
  cluster::JobQueue* m_queue;
  QString m_runId;
  QPointer<cluster::RunSession> m_session;
  QList<QMetaObject::Connection> m_connections;
  qint64 m_maxSteps = 0;
  // Recent (tSec, step) of rank 0, for the ETA.
  QVector<QPair<double, qint64>> m_progress;
  double m_lastTokPerS = 0, m_lastLoss = NAN;
  qint64 m_lastStep = 0;

  QComboBox* m_run;
  QLabel* m_status;
  QButtonGroup* m_xGroup;
  QPushButton* m_stop;
  QPushButton* m_checkpoint;
  QTabWidget* m_tabs;
  RunDashboard* m_dashboard;
  QTextBrowser* m_samples;
  LogView* m_logs;
  ComparePanel* m_compare;
};

}  // namespace fathom::ui
