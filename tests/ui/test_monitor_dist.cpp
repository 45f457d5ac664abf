// The Monitor on a data-parallel run, fed by a RunSession following a real events.jsonl of 3 Gloo
// ranks (tests/ui/fixtures/dist_three_ranks.jsonl, written by fathom-engine: 12 steps, every rank
// reporting rank-tagged metric and system records): the session keeps every rank's series; the
// loss chart shows the global loss once (rank 0), not once per rank; step time, communication
// time, sync latency, wait share and bus bandwidth have one series per rank; the rank heat map
// holds each rank's step time per step. A single-rank run shows no heat map. And a real 2-rank
// CPU run started as the Launch dialog starts it (LocalLauncher, Gloo) completes on both ranks and
// shows up the same way.
#include <QTemporaryDir>
#include <QtTest>

#include <qcustomplot.h>

#include "cluster/jobs/RunSession.h"
#include "cluster/launch/LocalLauncher.h"
#include "ui/charts/ChartGrid.h"
#include "ui/charts/ChartPanel.h"
#include "ui/pages/monitor/RankHeatMap.h"
#include "ui/pages/monitor/RunDashboard.h"

using namespace fathom;
using namespace fathom::ui;

class TestMonitorDist : public QObject {
  Q_OBJECT
 private slots:
  void ranksAreChartedApartAndTheHeatMapHoldsStepTimes() {
    QTemporaryDir dir;
    QVERIFY(QFile::copy(QStringLiteral(UI_FIXTURES_DIR "/dist_three_ranks.jsonl"), dir.filePath(QStringLiteral("events.jsonl"))));
    cluster::RunSession session(QStringLiteral("dist-3ranks"), dir.path());
    session.start();
    QTRY_VERIFY_WITH_TIMEOUT(session.hasExitRecord(), 5000);
    session.flush();
    QCOMPARE(session.ranks(), (QList<int>{0, 1, 2}));
    for (int r = 0; r < 3; ++r) {
      QCOMPARE(session.series(QStringLiteral("loss"), r).size(), 12);
      QCOMPARE(session.series(QStringLiteral("step_time_s"), r).size(), 12);
      QVERIFY(!session.series(QStringLiteral("comm.all_reduce.busbw_gbps"), r).isEmpty());
    }

    RunDashboard dash;
    dash.resize(1400, 1100);
    dash.show();
    QVERIFY(QTest::qWaitForWindowExposed(&dash));
    dash.setSession(&session);

    // Global values: rank 0 only.
    ChartPanel* loss = dash.panel(QStringLiteral("loss"));
    QCOMPARE(loss->seriesCount(), 1);
    QCOMPARE(loss->seriesData(0).size(), std::size_t(12));
    QCOMPARE(loss->seriesData(0).ys().back(), 5.076733748118083);
    QCOMPARE(dash.panel(QStringLiteral("lr"))->seriesCount(), 1);
    QCOMPARE(dash.panel(QStringLiteral("tokens_per_s"))->seriesCount(), 1);
    // Per rank.
    for (const char* id : {"rank_step_time", "comm_time", "comm_sync", "comm_wait", "comm_busbw"}) {
      ChartPanel* p = dash.panel(QString::fromLatin1(id));
      QVERIFY2(p, id);
      QVERIFY2(p->seriesCount() >= 3, id);
      QVERIFY2(dash.grid()->visiblePanels().contains(p), id);
    }
    ChartPanel* st = dash.panel(QStringLiteral("rank_step_time"));
    const int r2 = st->seriesIndex(QStringLiteral("step_time_s · r2"));
    QVERIFY(r2 >= 0);
    QCOMPARE(st->seriesData(r2).ys().back(), 0.056303215);
    QVERIFY(dash.panel(QStringLiteral("comm_busbw"))->seriesIndex(QStringLiteral("all_reduce · r1")) >= 0);
    QVERIFY(dash.panel(QStringLiteral("comm_time"))->seriesIndex(QStringLiteral("comm_s · r1")) >= 0);

    RankHeatMap* map = dash.rankHeatMap();
    QVERIFY(map->isVisible());
    QCOMPARE(map->rankCount(), 3);
    QCOMPARE(map->steps().size(), 12);
    QCOMPARE(map->cell(2, 12), 0.056303215);
    QCOMPARE(map->cell(0, 12), 0.047477182);
    map->replotNow();
    QCPColorMapData* data = map->colorMap()->data();
    QCOMPARE(data->keySize(), 12);
    QCOMPARE(data->valueSize(), 3);
    QCOMPARE(data->cell(11, 2), 0.056303215);  // column of step 12, row of rank 2
    QVERIFY(map->slowestRank() >= 0);

    if (const QString shots = qEnvironmentVariable("FATHOM_SCREENSHOT_DIR"); !shots.isEmpty()) {
      QTest::qWait(300);
      QVERIFY(dash.grab().save(QDir(shots).filePath(QStringLiteral("monitor-dist.png"))));
    }

    // Live points append: a late rank-1 step lands in its row.
    dash.appendPoints({cluster::MetricPoint{13, 0, 10.0, QStringLiteral("step_time_s"), 0.5, 1, 1000}});
    QCOMPARE(map->cell(1, 13), 0.5);
  }

  void realTwoRankRunLaunchedLikeTheLaunchDialog() {
    QString why;
    const QString engine = cluster::LocalLauncher::findEngineBinary(QString(), &why);
    if (engine.isEmpty()) QSKIP(qPrintable(QStringLiteral("no fathom-engine binary: ") + why));
    QTemporaryDir dir;
    const QString cfg = dir.filePath(QStringLiteral("run.yaml"));
    QFile f(cfg);
    QVERIFY(f.open(QIODevice::WriteOnly));
    f.write(QStringLiteral("extends: debug-tiny\n"
                           "run: {name: dp, seed: 3, device: cpu, threads: 1, workspace: %1/ws}\n"
                           "data: {train: [%2/corpus], seq_len: 32, shards_dir: %1/data, validation_fraction: 0.25}\n"
                           "tokenizer: {kind: bpe, vocab_size: 384, path: ''}\n"
                           "model: {d_model: 64, n_layers: 2, n_heads: 4, n_kv_heads: 2, d_ff: 0, max_seq_len: 64, vocab_size: 0}\n"
                           "train: {micro_batch_size: 4, max_steps: 8, log_interval: 1, eval_interval: 0, sample_interval: 0}\n"
                           "checkpoint: {save_every_steps: 0, save_interval: 0}\n"
                           "distributed: {timeout_s: 60}\n")
                .arg(dir.path(), QStringLiteral(FATHOM_FIXTURES_DIR))
                .toUtf8());
    f.close();
    cluster::LaunchSpec spec;
    spec.runId = QStringLiteral("dp-2");
    spec.configPath = cfg;
    spec.runDir = dir.filePath(QStringLiteral("runs/dp-2"));
    spec.nprocs = 2;
    spec.devices = {QStringLiteral("cpu")};
    spec.engineBinary = engine;
    cluster::LocalLauncher launcher;
    const QStringList preview = launcher.commandPreview(spec);
    QCOMPARE(preview.size(), 2);
    QVERIFY(preview[1].contains(QStringLiteral("distributed.backend=gloo")));
    QVERIFY(preview[1].contains(QStringLiteral("RANK=1")));
    const cluster::LaunchResult r = launcher.start(spec);
    QVERIFY2(r.ok, qPrintable(r.error));
    cluster::RunSession session(spec.runId, spec.runDir);
    session.start();
    QTRY_VERIFY_WITH_TIMEOUT(session.hasExitRecord(), 120000);
    session.flush();
    QCOMPARE(session.status(), QStringLiteral("completed"));
    QCOMPARE(session.ranks(), (QList<int>{0, 1}));
    QCOMPARE(session.series(QStringLiteral("loss"), 1).size(), 8);
    QCOMPARE(session.series(QStringLiteral("loss"), 0).back().value, session.series(QStringLiteral("loss"), 1).back().value);
    RunDashboard dash;
    dash.show();
    QVERIFY(QTest::qWaitForWindowExposed(&dash));
    dash.setSession(&session);
    QCOMPARE(dash.panel(QStringLiteral("loss"))->seriesCount(), 1);
    QCOMPARE(dash.rankHeatMap()->rankCount(), 2);
    QVERIFY(dash.rankHeatMap()->isVisible());
    QVERIFY(dash.panel(QStringLiteral("comm_busbw"))->seriesIndex(QStringLiteral("all_reduce · r1")) >= 0);
  }

  void singleRankRunHasNoHeatMap() {
    RunDashboard dash;
    dash.show();
    QVERIFY(QTest::qWaitForWindowExposed(&dash));
    QVector<cluster::MetricPoint> pts;
    for (int s = 1; s <= 5; ++s) {
      pts.append(cluster::MetricPoint{s, s * 100, double(s), QStringLiteral("loss"), 3.0 - s * 0.1, 0, s});
      pts.append(cluster::MetricPoint{s, s * 100, double(s), QStringLiteral("step_time_s"), 0.1, 0, s});
    }
    dash.appendPoints(pts);
    QVERIFY(dash.rankHeatMap()->isHidden());
    QCOMPARE(dash.panel(QStringLiteral("loss"))->seriesName(0), QStringLiteral("loss"));
  }
};

QTEST_MAIN(TestMonitorDist)
#include "test_monitor_dist.moc"
