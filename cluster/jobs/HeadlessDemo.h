// `fathom --headless-demo`: the first-run experience without a display. Ensures the default
// project, launches it through the JobQueue, prints a progress line (step, loss, tok/s, ETA) and
// the samples on stderr, and ends when the run ends. Ctrl-C (or SIGTERM) stops the run the normal
// way (checkpoint, then exit); a second Ctrl-C kills it.
#pragma once

#include <QElapsedTimer>
#include <QObject>
#include <QSocketNotifier>
#include <QString>
#include <QStringList>

#include <memory>

#include "cluster/jobs/JobQueue.h"
#include "cluster/workspace/Workspace.h"

namespace fathom::cluster {

class HeadlessDemo : public QObject {
  Q_OBJECT

 public:
  struct Options {
    QString workspaceDir;  // "" = Workspace::defaultDir()
    QString config;        // "" = the default project (projects/demo.yaml)
    qint64 steps = 0;      // > 0: --set train.max_steps=N (a short demo)
    QString engineBinary;  // "" = LocalLauncher's lookup
    QString device;        // "" = cuda:0 when the engine reports a GPU, else cpu
    QStringList overrides; // extra --set key=value
  };

  explicit HeadlessDemo(const Options& options, QObject* parent = nullptr);
  ~HeadlessDemo() override;

  // Opens the workspace, enqueues the run and starts following it. False with `error` when
  // something prevents the run from starting (the message is also printed by run()).
  bool start(QString* error);
  // Ctrl-C: the first asks the run to stop (checkpoint, then exit), the second kills it.
  void interrupt();
  QString runId() const { return m_runId; }
  // 0 completed or stopped, 1 failed or killed, 2 could not start.
  int exitCode() const { return m_exitCode; }

  // Parses [--steps N] [--workspace DIR] [--config FILE] [--engine PATH] [--device cpu|cuda:N]
  // [--set k=v]..., runs the demo in the current QCoreApplication's event loop and returns the
  // process exit code. Handles SIGINT/SIGTERM while it runs.
  static int run(const QStringList& arguments);

 Q_SIGNALS:
  void done(int exitCode);

 private:
  void onMetrics(const QString& runId, const QVector<MetricPoint>& points);
  void onSamples(const QString& runId, const QVector<SampleItem>& samples);
  void onLogs(const QString& runId, const QStringList& lines);
  void onFinished(const QString& id, const QString& status);
  void printProgress(bool force);
  void clearProgress();

  Options m_options;
  std::unique_ptr<Workspace> m_ws;
  std::unique_ptr<JobQueue> m_queue;
  QString m_runId;
  qint64 m_maxSteps = 0, m_tokensPerStep = 0;
  qint64 m_step = 0, m_printedStep = -1;
  double m_loss = 0, m_tokPerS = 0;
  int m_interrupts = 0;
  int m_exitCode = 2;
  bool m_tty = false, m_progressShown = false;
  QElapsedTimer m_sinceProgress, m_elapsed;
};

}  // namespace fathom::cluster
