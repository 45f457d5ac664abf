// The Monitor's MoE views, fed by a RunSession following a hand-written events.jsonl of a
// DeepSeekMoE-tiny style run (tests/ui/fixtures/moe_expert_load.jsonl: 4 layers, the first dense,
// 8 routed experts; metric extras moe.aux_loss, moe.load_imbalance, moe.dropped_frac and
// moe.load.<layer>.<expert>): the heat map holds exactly the latest load of every (layer,
// expert) cell, the scalar MoE series get their own panels, and per-expert keys do not flood the
// grid with one line chart each. A dense run shows no heat map.
#include <QTemporaryDir>
#include <QtTest>

#include <qcustomplot.h>

#include "cluster/jobs/RunSession.h"
#include "ui/charts/ChartGrid.h"
#include "ui/charts/ChartPanel.h"
#include "ui/charts/ExpertLoadMap.h"
#include "ui/pages/monitor/RunDashboard.h"

using namespace fathom;
using namespace fathom::ui;

class TestMonitorMoe : public QObject {
  Q_OBJECT
 private slots:
  void heatMapHoldsTheLatestLoadPerCell() {
    QTemporaryDir dir;
    QVERIFY(QFile::copy(QStringLiteral(UI_FIXTURES_DIR "/moe_expert_load.jsonl"), dir.filePath(QStringLiteral("events.jsonl"))));
    cluster::RunSession session(QStringLiteral("deepseek-moe-tiny-fixture"), dir.path());
    session.start();
    QTRY_VERIFY_WITH_TIMEOUT(session.hasExitRecord(), 5000);
    session.flush();

    RunDashboard dash;
    dash.resize(1400, 1000);
    dash.show();
    QVERIFY(QTest::qWaitForWindowExposed(&dash));
    dash.setSession(&session);

    ExpertLoadMap* map = dash.expertLoad();
    QVERIFY(map->isVisible());
    QCOMPARE(map->layers(), (QList<int>{1, 2, 3}));  // layer 0 is dense: no row
    QCOMPARE(map->expertCount(), 8);
    QCOMPARE(map->latestStep(), 20);
    // Step 20's values (the fixture's last metric record), not step 2's.
    const double layer2[8] = {0.234708, 0.130403, 0.218275, 0.051864, 0.090292, 0.05716, 0.104731, 0.112567};
    double sum = 0;
    for (int e = 0; e < 8; ++e) {
      QCOMPARE(map->cell(2, e), layer2[e]);
      sum += map->cell(2, e);
    }
    QVERIFY(std::abs(sum - 1.0) < 1e-5);  // a layer's shares sum to one
    QCOMPARE(map->cell(3, 0), 0.058934);
    QVERIFY(std::isnan(map->cell(0, 0)));
    // The colour map's cells are those numbers: x = expert, y = row of the layer.
    map->replotNow();
    QCPColorMapData* data = map->colorMap()->data();
    QCOMPARE(data->keySize(), 8);
    QCOMPARE(data->valueSize(), 3);
    QCOMPARE(data->cell(0, 1), 0.234708);  // expert 0, layer 2 (second row)
    QCOMPARE(data->cell(3, 1), 0.051864);
    QCOMPARE(data->cell(0, 2), 0.058934);  // expert 0, layer 3
    QVERIFY(map->toolTip().contains(QStringLiteral("routed")));

    // Scalar MoE series: own panels with every step.
    for (const char* id : {"moe_aux", "moe_imbalance", "moe_dropped"}) {
      ChartPanel* p = dash.panel(QString::fromLatin1(id));
      QVERIFY2(p && p->seriesCount() == 1, id);
      QCOMPARE(p->seriesData(0).size(), std::size_t(10));
      QVERIFY2(dash.grid()->visiblePanels().contains(p), id);
    }
    QCOMPARE(dash.panel(QStringLiteral("moe_aux"))->seriesData(0).ys().back(), 0.018423);
    QCOMPARE(dash.panel(QStringLiteral("moe_imbalance"))->seriesData(0).ys().front(), 2.290755);
    // No line chart per expert.
    for (ChartPanel* p : dash.grid()->panels()) QVERIFY2(!p->id().startsWith(QStringLiteral("extra:moe.load.")), qPrintable(p->id()));

    if (const QString shots = qEnvironmentVariable("FATHOM_SCREENSHOT_DIR"); !shots.isEmpty()) {
      QTest::qWait(300);
      QVERIFY(dash.grab().save(QDir(shots).filePath(QStringLiteral("monitor-moe.png"))));
    }

    // Live points: a newer step replaces a cell, an older one does not.
    dash.appendPoints({cluster::MetricPoint{22, 45056, 6.0, QStringLiteral("moe.load.2.3"), 0.2, 0, 999}});
    QCOMPARE(map->cell(2, 3), 0.2);
    QCOMPARE(map->latestStep(), 22);
    dash.appendPoints({cluster::MetricPoint{4, 8192, 1.0, QStringLiteral("moe.load.2.3"), 0.9, 0, 1000}});
    QCOMPARE(map->cell(2, 3), 0.2);
    // Another rank's routing is not mixed in.
    dash.appendPoints({cluster::MetricPoint{24, 0, 7.0, QStringLiteral("moe.load.2.3"), 0.7, 1, 1001}});
    QCOMPARE(map->cell(2, 3), 0.2);

    // A dense run: no heat map.
    dash.setSession(nullptr);
    QVERIFY(map->isHidden());
    QVERIFY(map->isEmpty());
  }
};

QTEST_MAIN(TestMonitorMoe)
#include "test_monitor_moe.moc"
