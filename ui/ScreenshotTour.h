// `fathom --screenshot-dir DIR` (hidden): the documentation screenshots, deterministic and with
// no window manager needed. Launches two short debug-tiny runs (one finishes, one keeps going),
// waits until the live one has drawn points, then shows each page and grabs the window to
// DIR/<page>.png, stops the live run (checkpoint, then exit) and quits.
#pragma once

#include <QElapsedTimer>
#include <QObject>
#include <QString>
#include <QTimer>

namespace fathom::cluster {
class JobQueue;
class Workspace;
}  // namespace fathom::cluster

namespace fathom::ui {

class MainWindow;

class ScreenshotTour : public QObject {
  Q_OBJECT
 public:
  ScreenshotTour(MainWindow* window, cluster::Workspace* workspace, cluster::JobQueue* queue, const QString& dir,
                 QObject* parent = nullptr);
  // Starts the runs; the tour then proceeds on its own and calls QCoreApplication::exit(code).
  void start();

 private:
  void poll();
  void capture();
  bool grab(const QString& name);
  void finish(int code, const QString& message);

  MainWindow* m_window;
  cluster::Workspace* m_ws;
  cluster::JobQueue* m_queue;
  QString m_dir;
  QString m_firstRun, m_liveRun;
  QTimer m_timer;
  QElapsedTimer m_elapsed;
  bool m_captured = false;
};

}  // namespace fathom::ui
