// End to end, with the real fathom-engine (FATHOM_ENGINE_BIN) on a temporary workspace
// ($FATHOM_WORKSPACE): start the MainWindow, write `extends: debug-tiny` in the Designer, launch
// it from the Launch dialog by driving its widgets, watch the Monitor's loss chart gain points,
// start a second run, stop the first (checkpoint, then exit) and find its checkpoint in the
// registry and on the Checkpoints page, close the window and drop the job queue, then start a
// new queue and MainWindow (a restart) and see it re-attach to the second run, which kept running.
#include <QApplication>
#include <QLineEdit>
#include <QListWidget>
#include <QPlainTextEdit>
#include <QPushButton>
#include <QStandardPaths>
#include <QTemporaryDir>
#include <QtTest>

#include <memory>

#include "cluster/jobs/JobQueue.h"
#include "cluster/launch/LocalLauncher.h"
#include "cluster/workspace/Workspace.h"
#include "engine/config/config.h"
#include "ui/MainWindow.h"
#include "ui/charts/ChartPanel.h"
#include "ui/models/CheckpointTableModel.h"
#include "ui/pages/checkpoints/CheckpointsPage.h"
#include "ui/pages/designer/DesignerPage.h"
#include "ui/pages/launch/LaunchDialog.h"
#include "ui/pages/monitor/MonitorPage.h"
#include "ui/pages/monitor/RunDashboard.h"
#include "ui/pages/runs/RunsPage.h"

using namespace fathom;
using namespace fathom::ui;

namespace {

std::size_t lossPoints(MainWindow* w) {
  ChartPanel* loss = w->monitor()->dashboard()->panel(QStringLiteral("loss"));
  return loss && loss->seriesCount() > 0 ? loss->seriesData(0).size() : 0;
}

QString status(cluster::Workspace& ws, const QString& id) {
  const auto r = ws.runs().get(id);
  return r ? r->status : QString();
}

}  // namespace

class TestWorkbenchE2E : public QObject {
  Q_OBJECT
 private slots:
  void initTestCase() {
    QStandardPaths::setTestModeEnabled(true);
    m_engine = qEnvironmentVariable("FATHOM_ENGINE_BIN");
    QVERIFY2(!m_engine.isEmpty() && QFileInfo(m_engine).isExecutable(),
             "FATHOM_ENGINE_BIN must name the built fathom-engine (ctest sets it)");
    // debug-tiny reads ${FATHOM_DATA_DIR}/corpus/sotu/179*.txt.
    const QDir corpus(QString::fromStdString(config::default_data_dir()) + QStringLiteral("/corpus/sotu"));
    if (corpus.entryList({QStringLiteral("179*.txt")}, QDir::Files).isEmpty()) {
      qWarning("SKIP: no corpus in %s (packaging/collect-data.sh fetches it)", qPrintable(corpus.path()));
      std::exit(77);
    }
    QVERIFY(m_dir.isValid());
    qputenv("FATHOM_WORKSPACE", m_dir.path().toUtf8());
    QString error;
    QVERIFY2(m_ws.open(m_dir.path(), &error), qPrintable(error));
    m_ws.ensureDefaultProject();
  }

  void cleanupTestCase() {
    // Never leave engines behind, whatever failed.
    for (const cluster::RunRecord& r : m_ws.runs().list())
      if (r.pgid > 0 && cluster::LocalLauncher::isAlive(r.pid, r.runDir)) cluster::LocalLauncher::kill(r.pgid);
  }

  void designLaunchWatchStopRestart() {
    auto queue = std::make_unique<cluster::JobQueue>(&m_ws);
    queue->setEngineBinary(m_engine);
    queue->setMaxConcurrentCpuRuns(2);  // the second run starts while the first is running
    auto w = std::make_unique<MainWindow>(&m_ws, queue.get());
    w->resize(1400, 900);
    w->show();
    QVERIFY(QTest::qWaitForWindowExposed(w.get()));

    // ---- Designer: a debug-tiny config, then Launch.
    w->setCurrentPage(MainWindow::DesignerMode);
    DesignerPage* designer = w->designer();
    designer->newDocument(QStringLiteral("debug-tiny"));
    designer->setText(QStringLiteral("# e2e\nextends: debug-tiny\nrun:\n  name: e2e\ntrain:\n  max_steps: 100000\n"
                                     "  log_interval: 1\n"));
    QVERIFY2(designer->lastResult().ok(), designer->lastResult().ok() ? "" : designer->lastResult().errors.front().message().c_str());
    auto* launchButton = designer->findChild<QPushButton*>(QStringLiteral("launchButton"));
    QVERIFY(launchButton);
    QTest::mouseClick(launchButton, Qt::LeftButton);
    QVERIFY(!designer->currentPath().isEmpty());  // saved into the projects folder
    QVERIFY(designer->currentPath().startsWith(m_ws.projectsDir()));

    // ---- Launch dialog, driven through its widgets.
    QTRY_VERIFY(w->launchDialog() && w->launchDialog()->isVisible());
    LaunchDialog* dialog = w->launchDialog();
    dialog->nameEdit()->setText(QStringLiteral("e2e-first"));
    dialog->overridesEdit()->setPlainText(QStringLiteral("checkpoint.save_every_steps=0\n"));
    QListWidgetItem* cpu = nullptr;
    for (int i = 0; i < dialog->deviceList()->count(); ++i)
      if (dialog->deviceList()->item(i)->data(Qt::UserRole).toString() == QLatin1String("cpu")) cpu = dialog->deviceList()->item(i);
    QVERIFY(cpu);
    QCOMPARE(cpu->checkState(), Qt::Checked);
    QTRY_VERIFY(dialog->preview()->toPlainText().contains(QStringLiteral("--set checkpoint.save_every_steps=0")));
    QVERIFY(dialog->preview()->toPlainText().contains(QStringLiteral("train ") + designer->currentPath()));
    auto* go = dialog->findChild<QPushButton*>(QStringLiteral("launch"));
    QVERIFY(go && go->isEnabled());
    QTest::mouseClick(go, Qt::LeftButton);
    QTRY_VERIFY(!w->launchDialog());  // closed (and deleted) after a successful launch

    // ---- Monitor on the new run; the loss chart gains points.
    QCOMPARE(w->currentPage(), int(MainWindow::MonitorMode));
    const QString first = w->monitor()->currentRun();
    QVERIFY(first.startsWith(QStringLiteral("e2e-first")));
    QTRY_COMPARE_WITH_TIMEOUT(status(m_ws, first), QStringLiteral("running"), 30000);
    QTRY_VERIFY_WITH_TIMEOUT(lossPoints(w.get()) >= 3, 180000);
    const std::size_t seen = lossPoints(w.get());
    QTRY_VERIFY_WITH_TIMEOUT(lossPoints(w.get()) > seen, 60000);  // and keeps gaining them
    QVERIFY(w->monitor()->statusText().contains(QStringLiteral("running")));

    // ---- A second run, started from the Launch dialog too, which will outlive this window.
    QVERIFY(w->openLaunchDialog(designer->currentPath()));
    dialog = w->launchDialog();
    dialog->nameEdit()->setText(QStringLiteral("e2e-second"));
    go = dialog->findChild<QPushButton*>(QStringLiteral("launch"));
    QTRY_VERIFY(go->isEnabled());
    QTest::mouseClick(go, Qt::LeftButton);
    QTRY_VERIFY(!w->launchDialog());
    const QString second = w->monitor()->currentRun();
    QVERIFY(second.startsWith(QStringLiteral("e2e-second")));
    QVERIFY(second != first);
    QTRY_COMPARE_WITH_TIMEOUT(status(m_ws, second), QStringLiteral("running"), 30000);
    QTRY_VERIFY_WITH_TIMEOUT(lossPoints(w.get()) >= 2, 120000);

    // ---- Stop the first run from the Runs page: checkpoint, then exit.
    w->setCurrentPage(MainWindow::RunsMode);
    w->runsPage()->selectRun(first);
    QCOMPARE(w->runsPage()->selectedRun(), first);
    w->runsPage()->stopSelected();
    QTRY_COMPARE_WITH_TIMEOUT(status(m_ws, first), QStringLiteral("stopped"), 120000);
    QTRY_VERIFY_WITH_TIMEOUT(!m_ws.checkpoints().listForRun(first).isEmpty(), 20000);
    const cluster::CheckpointRecord ck = m_ws.checkpoints().listForRun(first).back();
    QVERIFY(ck.step > 0);
    QVERIFY(QFileInfo(ck.path + QStringLiteral("/MANIFEST.json")).exists());
    QVERIFY(ck.verified);
    qInfo("stopped %s at step %lld with checkpoint %s", qPrintable(first), ck.step, qPrintable(ck.path));
    w->setCurrentPage(MainWindow::CheckpointsMode);
    QTRY_VERIFY(w->checkpoints()->model()->countForRun(first) >= 1);

    // ---- Quit: close the window, drop the queue. The second run keeps going (detached).
    w->openRunInMonitor(second);
    QVERIFY(w->close());
    w.reset();
    queue.reset();
    QCOMPARE(status(m_ws, second), QStringLiteral("running"));
    const auto rec = m_ws.runs().get(second);
    QVERIFY(rec && cluster::LocalLauncher::isAlive(rec->pid, rec->runDir));

    // ---- Restart: a new queue re-attaches, a new window restores the Monitor on the run.
    auto queue2 = std::make_unique<cluster::JobQueue>(&m_ws);
    queue2->setEngineBinary(m_engine);
    QVERIFY(queue2->runningIds().contains(second));
    auto w2 = std::make_unique<MainWindow>(&m_ws, queue2.get());
    w2->show();
    QVERIFY(QTest::qWaitForWindowExposed(w2.get()));
    QCOMPARE(w2->currentPage(), int(MainWindow::MonitorMode));
    QCOMPARE(w2->monitor()->currentRun(), second);
    // Caught up from events.jsonl, then still growing: the run kept training all along.
    QTRY_VERIFY_WITH_TIMEOUT(lossPoints(w2.get()) >= 2, 30000);
    const std::size_t caughtUp = lossPoints(w2.get());
    qInfo("re-attached to %s: %zu loss points caught up from events.jsonl", qPrintable(second), caughtUp);
    QTRY_VERIFY_WITH_TIMEOUT(lossPoints(w2.get()) > caughtUp, 60000);

    // ---- Tidy up: stop the second run the normal way.
    QVERIFY(queue2->stop(second));
    QTRY_COMPARE_WITH_TIMEOUT(status(m_ws, second), QStringLiteral("stopped"), 120000);
    w2->close();
  }

 private:
  QString m_engine;
  QTemporaryDir m_dir;
  cluster::Workspace m_ws;
};

QTEST_MAIN(TestWorkbenchE2E)
#include "test_workbench_e2e.moc"
