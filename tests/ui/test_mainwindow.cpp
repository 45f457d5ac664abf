// The shell: seven modes on the mode bar with Ctrl+1..7, the honest empty states of later
// issues, theme switching (palette and chart colours follow), the status bar's job count, and
// window state (page, geometry, open run) restored by a second MainWindow from QSettings.
#include <QApplication>
#include <QLabel>
#include <QStackedWidget>
#include <QStandardPaths>
#include <QTemporaryDir>
#include <QToolButton>
#include <QtTest>

#include "cluster/jobs/JobQueue.h"
#include "cluster/workspace/Workspace.h"
#include "ui/MainWindow.h"
#include "ui/ModeBar.h"
#include "ui/Theme.h"
#include "ui/pages/EmptyStatePage.h"
#include "ui/pages/hosts/HostsPage.h"
#include "ui/pages/designer/DesignerPage.h"
#include "ui/pages/monitor/MonitorPage.h"

using namespace fathom;
using namespace fathom::ui;

class TestMainWindow : public QObject {
  Q_OBJECT
 private slots:
  void initTestCase() {
    QStandardPaths::setTestModeEnabled(true);
    QSettings().clear();
    QVERIFY(m_dir.isValid());
    QString error;
    QVERIFY2(m_ws.open(m_dir.path(), &error), qPrintable(error));
    m_ws.ensureDefaultProject();
  }

  void modesShortcutsAndEmptyStates() {
    cluster::JobQueue queue(&m_ws);
    MainWindow w(&m_ws, &queue);
    w.show();
    QVERIFY(QTest::qWaitForWindowExposed(&w));
    QCOMPARE(w.modeBar()->count(), int(MainWindow::PageCount));
    QStringList labels;
    for (int i = 0; i < w.modeBar()->count(); ++i) labels << w.modeBar()->button(i)->text();
    QCOMPARE(labels, QStringList({"Designer", "Runs", "Monitor", "Checkpoints", "Fine-tune", "Playground", "Hosts"}));
    // First start: the default project is open in the Designer, ready to launch.
    QCOMPARE(w.currentPage(), int(MainWindow::DesignerMode));
    QCOMPARE(w.designer()->currentPath(), m_ws.defaultProjectPath());
    QVERIFY(w.designer()->lastResult().ok());
    for (int i = 0; i < MainWindow::PageCount; ++i) {
      QTest::keyClick(&w, static_cast<Qt::Key>(Qt::Key_1 + i), Qt::ControlModifier);
      QCOMPARE(w.currentPage(), i);
      QVERIFY(w.modeBar()->button(i)->isChecked());
    }
    // The Hosts page (issue 9) replaced its empty state.
    w.setCurrentPage(MainWindow::HostsMode);
    auto* stack = w.findChild<QStackedWidget*>();
    auto* hosts = qobject_cast<HostsPage*>(stack->currentWidget());
    QVERIFY(hosts);
    QVERIFY(hosts->hostTable());
    // The status bar counts jobs.
    QVERIFY(w.jobsLabel()->text().contains(QStringLiteral("0 running")));
  }

  void themes() {
    Theme* t = Theme::instance();
    t->setMode(Theme::Mode::Dark);
    QVERIFY(t->isDark());
    QVERIFY(qApp->palette().color(QPalette::Window).lightness() < 80);
    const QColor darkGrid = t->color(QStringLiteral("chart.grid"));
    t->setMode(Theme::Mode::Light);
    QVERIFY(!t->isDark());
    QVERIFY(qApp->palette().color(QPalette::Window).lightness() > 180);
    QVERIFY(t->color(QStringLiteral("chart.grid")) != darkGrid);
    // Every colour the widgets ask for exists in both themes (a missing one shows magenta).
    for (Theme::Mode mode : {Theme::Mode::Light, Theme::Mode::Dark}) {
      t->setMode(mode);
      for (const char* name : {"chart.grid", "chart.panel", "status.running", "status.failed", "event.checkpoint_saved",
                               "event.eval", "event.nan_skipped", "yaml.key", "estimate.activations", "modebar.background"})
        QVERIFY2(t->color(QString::fromLatin1(name)) != QColor(Qt::magenta), name);
    }
    QCOMPARE(QSettings().value(QStringLiteral("view/theme")).toString(), QStringLiteral("dark"));
    t->setMode(Theme::Mode::System);
  }

  void stateIsRestored() {
    cluster::JobQueue queue(&m_ws);
    cluster::RunRecord r;
    r.id = QStringLiteral("restore-1");
    r.name = QStringLiteral("restore");
    r.status = cluster::run_status::completed;
    r.runDir = m_dir.filePath(QStringLiteral("runs/restore-1"));
    r.createdAt = QDateTime::currentDateTimeUtc();
    QVERIFY(m_ws.runs().upsert(r));
    {
      MainWindow w(&m_ws, &queue);
      w.show();
      QVERIFY(QTest::qWaitForWindowExposed(&w));
      w.resize(1234, 777);
      w.openRunInMonitor(QStringLiteral("restore-1"));
      QCOMPARE(w.currentPage(), int(MainWindow::MonitorMode));
      QVERIFY(w.close());  // saves the state
    }
    MainWindow again(&m_ws, &queue);
    again.show();
    QVERIFY(QTest::qWaitForWindowExposed(&again));
    QCOMPARE(again.currentPage(), int(MainWindow::MonitorMode));
    QCOMPARE(again.monitor()->currentRun(), QStringLiteral("restore-1"));
    QCOMPARE(again.size(), QSize(1234, 777));
  }

 private:
  QTemporaryDir m_dir;
  cluster::Workspace m_ws;
};

QTEST_MAIN(TestMainWindow)
#include "test_mainwindow.moc"
