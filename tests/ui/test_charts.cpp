// Charts: a ChartPanel with 1,000,000 points hands QCustomPlot at most 4 points per pixel column;
// zoom, reset and hover; PNG/SVG/CSV export; and the Monitor's RunDashboard fed by a RunSession
// replaying a real events.jsonl captured on an NVIDIA H200 (fixtures/gpu_debug_tiny_h200.jsonl:
// debug-tiny, bf16, 400 steps, system samples every 0.5 s), so the GPU panels are checked with
// what the engine really writes.
#include <QApplication>
#include <QElapsedTimer>
#include <QFile>
#include <QImage>
#include <QSignalSpy>
#include <QStandardPaths>
#include <QTemporaryDir>
#include <QtTest>

#include <qcustomplot.h>

#include <cmath>

#include "cluster/jobs/RunSession.h"
#include "ui/charts/ChartGrid.h"
#include "ui/charts/ChartPanel.h"
#include "ui/pages/monitor/RunDashboard.h"

using namespace fathom::ui;
using fathom::cluster::MetricPoint;
using fathom::cluster::RunSession;

class TestCharts : public QObject {
  Q_OBJECT
 private slots:
  void initTestCase() { QStandardPaths::setTestModeEnabled(true); }

  void millionPointsAreDecimated() {
    ChartPanel panel(QStringLiteral("loss"), QStringLiteral("Loss"), QString());
    panel.resize(800, 400);
    panel.show();
    QVERIFY(QTest::qWaitForWindowExposed(&panel));
    const int s = panel.addSeries(QStringLiteral("loss"), Qt::blue);
    const std::size_t n = 1000000;
    std::vector<double> x(n), y(n);
    for (std::size_t i = 0; i < n; ++i) {
      x[i] = double(i);
      y[i] = 5.0 * std::exp(-double(i) / 2e5) + 0.3 * std::sin(double(i) * 0.37);
    }
    panel.append(s, x.data(), y.data(), n);
    QElapsedTimer t;
    t.start();
    panel.replotNow();
    const qint64 ms = t.elapsed();
    const int width = panel.plot()->axisRect()->width();
    QVERIFY(width > 100);
    QVERIFY2(panel.drawnPointCount() <= 4 * width + 2, qPrintable(QString::number(panel.drawnPointCount())));
    QVERIFY(panel.drawnPointCount() > width);  // not over-decimated either
    qInfo("1M points: %d drawn, redraw %lld ms (bench_chart_decimation measures this properly)", panel.drawnPointCount(), ms);
    QVERIFY2(ms < 1000, "a decimated 1M-point redraw must not take seconds, even on a loaded machine");
    // The y range covers the data's extremes.
    QVERIFY(panel.plot()->yAxis->range().upper >= 5.0);
    QVERIFY(panel.plot()->yAxis->range().lower <= 0.0);
  }

  void zoomResetAndHover() {
    ChartPanel panel(QStringLiteral("lr"), QStringLiteral("Learning rate"), QString());
    panel.resize(600, 300);
    panel.show();
    QVERIFY(QTest::qWaitForWindowExposed(&panel));
    const int a = panel.addSeries(QStringLiteral("r0"), Qt::red);
    const int b = panel.addSeries(QStringLiteral("r1"), Qt::green);
    for (int i = 0; i <= 1000; ++i) {
      panel.append(a, i, i * 2.0);
      panel.append(b, i, i * 3.0);
    }
    panel.replotNow();
    QVERIFY(panel.isFollowing());
    QCOMPARE(panel.xRange().first, 0.0);
    QCOMPARE(panel.xRange().second, 1000.0);

    // A user zoom (what the wheel and the drag rectangle do) stops following.
    QSignalSpy zoomed(&panel, &ChartPanel::userZoomed);
    panel.plot()->xAxis->setRange(100, 200);
    QCOMPARE(zoomed.count(), 1);
    QVERIFY(!panel.isFollowing());
    panel.replotNow();
    QCOMPARE(panel.xRange().first, 100.0);
    // New data does not move a zoomed view.
    panel.append(a, 1001, 1.0);
    panel.replotNow();
    QCOMPARE(panel.xRange().second, 200.0);
    // Double-click resets and follows again.
    QSignalSpy reset(&panel, &ChartPanel::userReset);
    const QPoint centre = panel.plot()->axisRect()->rect().center();
    QTest::mouseDClick(panel.plot(), Qt::LeftButton, Qt::NoModifier, centre);
    QCOMPARE(reset.count(), 1);
    QVERIFY(panel.isFollowing());
    panel.replotNow();
    QCOMPARE(panel.xRange().second, 1001.0);

    // Hover shows every series at that x.
    const QString text = panel.hoverText(500.2);
    QVERIFY2(text.contains(QStringLiteral("step 500")), qPrintable(text));
    QVERIFY(text.contains(QStringLiteral("r0  1000")));
    QVERIFY(text.contains(QStringLiteral("r1  1500")));
  }

  void exports() {
    QTemporaryDir dir;
    ChartPanel panel(QStringLiteral("gpu_util"), QStringLiteral("GPU utilisation"), QStringLiteral("%"));
    panel.resize(500, 300);
    panel.show();
    QVERIFY(QTest::qWaitForWindowExposed(&panel));
    const int a = panel.addSeries(QStringLiteral("gpu0"), Qt::red);
    const int b = panel.addSeries(QStringLiteral("gpu1"), Qt::blue);
    for (int i = 0; i < 50; ++i) {
      panel.append(a, i, 40 + i);
      panel.append(b, i, 90 - i);
    }
    const QString csv = dir.filePath(QStringLiteral("u.csv"));
    QString error;
    QVERIFY2(panel.exportCsv(csv, &error), qPrintable(error));
    QFile f(csv);
    QVERIFY(f.open(QIODevice::ReadOnly));
    const QStringList lines = QString::fromUtf8(f.readAll()).trimmed().split(QLatin1Char('\n'));
    QCOMPARE(lines.size(), 51);
    QCOMPARE(lines[0], QStringLiteral("step,gpu0,gpu1"));
    QCOMPARE(lines[1], QStringLiteral("0,40,90"));
    QCOMPARE(lines[50], QStringLiteral("49,89,41"));

    const QString png = dir.filePath(QStringLiteral("u.png"));
    QVERIFY(panel.exportPng(png, 400, 200));
    QImage img(png);
    QVERIFY(!img.isNull());
    QCOMPARE(img.width(), 800);  // scale 2 for sharp documents

    const QString svg = dir.filePath(QStringLiteral("u.svg"));
    QVERIFY(panel.exportSvg(svg));
    QFile sf(svg);
    QVERIFY(sf.open(QIODevice::ReadOnly));
    const QByteArray svgText = sf.readAll();
    QVERIFY(svgText.contains("<svg"));
    QVERIFY(svgText.contains("GPU utilisation"));
  }

  void dashboardRoutesAndStacks() {
    RunDashboard dash;
    dash.resize(1400, 900);
    dash.show();
    QVERIFY(QTest::qWaitForWindowExposed(&dash));
    QVector<MetricPoint> pts;
    auto add = [&](qint64 step, const char* key, double v, int rank = 0) {
      MetricPoint p;
      p.step = step;
      p.tokens = step * 100;
      p.tSec = step * 0.5;
      p.key = QString::fromLatin1(key);
      p.value = v;
      p.rank = rank;
      p.seq = step;
      pts << p;
    };
    for (int s = 1; s <= 10; ++s) {
      add(s, "loss", 5.0 - s * 0.1);
      add(s, "lr", 1e-3);
      add(s, "data_s", 0.1);
      add(s, "fwd_s", 0.2);
      add(s, "bwd_s", 0.4);
      add(s, "opt_s", 0.05);
      add(s, "comm_s", 0.0);
      add(s, "moe.load.3", 0.5);  // an `extra` series gets its own panel
    }
    add(10, "val_loss", 4.2);
    dash.appendPoints(pts);
    QVERIFY(dash.panel(QStringLiteral("loss")));
    QCOMPARE(dash.panel(QStringLiteral("loss"))->seriesCount(), 2);
    QCOMPARE(dash.panel(QStringLiteral("loss"))->seriesData(0).size(), std::size_t(10));
    QCOMPARE(dash.panel(QStringLiteral("loss"))->seriesData(1).size(), std::size_t(1));
    // No GPU keys: no GPU panel is shown.
    QCOMPARE(dash.panel(QStringLiteral("gpu_util"))->seriesCount(), 0);
    QVERIFY(!dash.grid()->visiblePanels().contains(dash.panel(QStringLiteral("gpu_util"))));
    QVERIFY(dash.panel(QStringLiteral("extra:moe.load.3")));
    // Step-time split: cumulative data, +fwd, +bwd, +opt, +comm.
    ChartPanel* split = dash.panel(QStringLiteral("step_time"));
    QCOMPARE(split->seriesCount(), 5);
    const double expect[5] = {0.1, 0.3, 0.7, 0.75, 0.75};
    for (int i = 0; i < 5; ++i) {
      QCOMPARE(split->seriesData(i).size(), std::size_t(10));
      QVERIFY(std::fabs(split->seriesData(i).ys().back() - expect[i]) < 1e-12);
    }
    // Switching the x-axis to tokens re-reads the points (only from a session; here: unchanged
    // routing, new axis kind on every panel).
    dash.setXAxisKind(XAxisKind::Tokens);
    QCOMPARE(dash.panel(QStringLiteral("loss"))->xAxisKind(), XAxisKind::Tokens);
  }

  void realGpuRunReplay() {
    // A run directory holding the captured events.jsonl, followed by a RunSession as the
    // Monitor follows a live run.
    QTemporaryDir dir;
    QVERIFY(QFile::copy(QStringLiteral(UI_FIXTURES_DIR "/gpu_debug_tiny_h200.jsonl"), dir.filePath(QStringLiteral("events.jsonl"))));
    RunSession session(QStringLiteral("gpu-debug-tiny-h200"), dir.path());
    session.start();
    QTRY_VERIFY_WITH_TIMEOUT(session.hasExitRecord(), 5000);
    session.flush();

    RunDashboard dash;
    dash.resize(1500, 1000);
    dash.show();
    QVERIFY(QTest::qWaitForWindowExposed(&dash));
    dash.setSession(&session);

    // Training panels.
    ChartPanel* loss = dash.panel(QStringLiteral("loss"));
    QCOMPARE(loss->seriesData(0).size(), std::size_t(200));  // log_interval 2 over 400 steps
    QCOMPARE(loss->seriesData(0).xs().back(), 400.0);
    QVERIFY(loss->seriesData(0).ys().back() < loss->seriesData(0).ys().front());
    QCOMPARE(loss->seriesCount(), 2);  // loss and val_loss (eval every 50 steps)
    QCOMPARE(loss->seriesData(1).size(), session.series(QStringLiteral("val_loss"), 0).size());

    // GPU panels exist because the H200 reported them, one series for gpu0.
    for (const char* id : {"gpu_util", "gpu_temp", "gpu_power", "gpu_mem"}) {
      ChartPanel* p = dash.panel(QString::fromLatin1(id));
      QVERIFY2(p->seriesCount() >= 1, id);
      QVERIFY2(p->seriesName(0).startsWith(QStringLiteral("gpu0")), qPrintable(p->seriesName(0)));
      QVERIFY2(dash.grid()->visiblePanels().contains(p), id);
    }
    const auto temps = session.series(QStringLiteral("gpu0.temperature_c"), 0);
    QVERIFY(temps.size() >= 10);
    QCOMPARE(dash.panel(QStringLiteral("gpu_temp"))->seriesData(0).size(), std::size_t(temps.size()));
    // Memory in GiB: an H200 run uses well over 0 and under its 141 GiB.
    const double memGiB = dash.panel(QStringLiteral("gpu_mem"))->seriesData(0).ys().back();
    QVERIFY2(memGiB > 0.1 && memGiB < 141, qPrintable(QString::number(memGiB)));
    // Power in watts, plausible for an H200.
    const double watts = dash.panel(QStringLiteral("gpu_power"))->seriesData(0).ys().back();
    QVERIFY(watts > 20 && watts < 800);

    // Every panel shares the x range while following.
    double lo = 0, hi = 0;
    QVERIFY(dash.grid()->unionXRange(&lo, &hi));
    QCOMPARE(hi, 400.0);
    // Checkpoint markers (save_every_steps 100): the hover over step 200 mentions it.
    loss->replotNow();
    QVERIFY2(loss->hoverText(200).contains(QStringLiteral("checkpoint")), qPrintable(loss->hoverText(200)));

    // The time axis re-reads the session: x becomes seconds since the first record.
    dash.setXAxisKind(XAxisKind::Time);
    QVERIFY(loss->seriesData(0).xs().back() > 1.0);
    QVERIFY(loss->seriesData(0).xs().back() < 60.0);
  }
};

QTEST_MAIN(TestCharts)
#include "test_charts.moc"
