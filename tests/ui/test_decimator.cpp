// Decimator correctness: every pixel column keeps its minimum and maximum (and its first and
// last point), the indexed series equals the linear reference on random data and ranges, the
// output stays within 4 points per column (+2 neighbours), NaNs leave gaps, and a rewritten
// history (x going back) truncates the series.
#include <QtTest>

#include <cmath>
#include <limits>
#include <random>

#include "ui/charts/Decimator.h"

using fathom::ui::DecimatedPoints;
using fathom::ui::DecimatedSeries;
using fathom::ui::decimateM4;

namespace {

// Column index of x with the same edge rule as the decimator: edge(c) = lo + (hi-lo)*c/columns.
int columnOf(double x, double lo, double hi, int columns) {
  int c = 0;
  while (c + 1 < columns && x >= lo + (hi - lo) * (c + 1) / columns) ++c;
  return c;
}

struct Data {
  std::vector<double> x, y;
};

Data randomWalk(std::size_t n, unsigned seed, bool withNaN = false, bool duplicates = false) {
  std::mt19937 rng(seed);
  std::normal_distribution<double> step(0.0, 1.0);
  std::uniform_int_distribution<int> gap(0, duplicates ? 2 : 1);
  Data d;
  double x = 0, y = 0;
  for (std::size_t i = 0; i < n; ++i) {
    x += duplicates ? gap(rng) : 1 + (rng() % 3);
    y += step(rng);
    d.x.push_back(x);
    d.y.push_back(withNaN && rng() % 50 == 0 ? std::numeric_limits<double>::quiet_NaN() : y);
  }
  return d;
}

void checkColumns(const Data& d, double lo, double hi, int columns, const DecimatedPoints& out) {
  // Raw per-column extremes.
  std::vector<double> rawMin(columns, INFINITY), rawMax(columns, -INFINITY), outMin(columns, INFINITY), outMax(columns, -INFINITY);
  std::vector<int> rawCount(columns, 0), outCount(columns, 0);
  for (std::size_t i = 0; i < d.x.size(); ++i) {
    if (d.x[i] < lo || d.x[i] > hi) continue;
    const int c = columnOf(d.x[i], lo, hi, columns);
    ++rawCount[c];
    if (std::isfinite(d.y[i])) {
      rawMin[c] = std::min(rawMin[c], d.y[i]);
      rawMax[c] = std::max(rawMax[c], d.y[i]);
    }
  }
  for (std::size_t i = 0; i < out.size(); ++i) {
    if (out.x[i] < lo || out.x[i] > hi) continue;
    const int c = columnOf(out.x[i], lo, hi, columns);
    ++outCount[c];
    if (std::isfinite(out.y[i])) {
      outMin[c] = std::min(outMin[c], out.y[i]);
      outMax[c] = std::max(outMax[c], out.y[i]);
    }
  }
  for (int c = 0; c < columns; ++c) {
    QVERIFY2((rawCount[c] > 0) == (outCount[c] > 0), qPrintable(QStringLiteral("column %1: %2 raw, %3 drawn").arg(c).arg(rawCount[c]).arg(outCount[c])));
    QVERIFY2(outCount[c] <= 4, qPrintable(QStringLiteral("column %1 has %2 points").arg(c).arg(outCount[c])));
    QCOMPARE(outMin[c], rawMin[c]);
    QCOMPARE(outMax[c], rawMax[c]);
  }
  // Output keeps the original order.
  for (std::size_t i = 1; i < out.size(); ++i) QVERIFY(out.x[i] >= out.x[i - 1]);
}

}  // namespace

class TestDecimator : public QObject {
  Q_OBJECT
 private slots:
  void minMaxPreservedPerColumn_data() {
    QTest::addColumn<int>("n");
    QTest::addColumn<int>("columns");
    QTest::addColumn<bool>("nan");
    QTest::addColumn<bool>("duplicates");
    QTest::newRow("dense") << 100000 << 800 << false << false;
    QTest::newRow("sparse") << 300 << 1000 << false << false;
    QTest::newRow("nan gaps") << 20000 << 500 << true << false;
    QTest::newRow("repeated x") << 20000 << 333 << false << true;
    QTest::newRow("one column") << 1000 << 1 << false << false;
  }
  void minMaxPreservedPerColumn() {
    QFETCH(int, n);
    QFETCH(int, columns);
    QFETCH(bool, nan);
    QFETCH(bool, duplicates);
    const Data d = randomWalk(static_cast<std::size_t>(n), 7u + n, nan, duplicates);
    DecimatedPoints out;
    const double lo = d.x.front(), hi = d.x.back();
    decimateM4(d.x.data(), d.y.data(), d.x.size(), lo, hi, columns, &out);
    checkColumns(d, lo, hi, columns, out);
    QVERIFY(out.size() <= static_cast<std::size_t>(4 * columns + 2));
    // A sub-range, with neighbours outside it.
    const double a = lo + (hi - lo) * 0.3, b = lo + (hi - lo) * 0.55;
    decimateM4(d.x.data(), d.y.data(), d.x.size(), a, b, columns, &out);
    checkColumns(d, a, b, columns, out);
    QVERIFY(out.x.front() < a);  // the point before the range, so the line reaches the edge
    QVERIFY(out.x.back() > b);
  }

  void indexedEqualsReference() {
    const Data d = randomWalk(200000, 42, true);
    DecimatedSeries s;
    s.append(d.x.data(), d.y.data(), d.x.size());
    QCOMPARE(s.size(), d.x.size());
    std::mt19937 rng(1);
    std::uniform_real_distribution<double> u(d.x.front() - 10, d.x.back() + 10);
    for (int trial = 0; trial < 200; ++trial) {
      double a = u(rng), b = u(rng);
      if (a > b) std::swap(a, b);
      const int columns = 1 + static_cast<int>(rng() % 2000);
      DecimatedPoints ref, fast;
      decimateM4(d.x.data(), d.y.data(), d.x.size(), a, b, columns, &ref);
      s.decimate(a, b, columns, &fast);
      QCOMPARE(fast.size(), ref.size());
      for (std::size_t i = 0; i < ref.size(); ++i) {
        QCOMPARE(fast.x[i], ref.x[i]);
        if (std::isnan(ref.y[i])) QVERIFY(std::isnan(fast.y[i]));
        else QCOMPARE(fast.y[i], ref.y[i]);
      }
    }
  }

  void yRangeMatchesScan() {
    const Data d = randomWalk(50000, 3, true);
    DecimatedSeries s;
    s.append(d.x.data(), d.y.data(), d.x.size());
    for (int k = 0; k < 50; ++k) {
      const double a = d.x[k * 700], b = d.x[k * 700 + 300 + k * 13];
      double lo = 0, hi = 0, rlo = INFINITY, rhi = -INFINITY;
      QVERIFY(s.yRange(a, b, &lo, &hi));
      for (std::size_t i = 0; i < d.x.size(); ++i)
        if (d.x[i] >= a && d.x[i] <= b && std::isfinite(d.y[i])) {
          rlo = std::min(rlo, d.y[i]);
          rhi = std::max(rhi, d.y[i]);
        }
      QCOMPARE(lo, rlo);
      QCOMPARE(hi, rhi);
    }
  }

  void allNaNColumnKeepsGap() {
    std::vector<double> x{0, 1, 2, 3, 4, 5, 6, 7, 8, 9}, y(10, NAN);
    y[0] = 1;
    y[9] = 2;
    DecimatedPoints out;
    decimateM4(x.data(), y.data(), x.size(), 0, 9, 3, &out);
    bool sawNaN = false;
    for (double v : out.y) sawNaN |= std::isnan(v);
    QVERIFY(sawNaN);
  }

  void rewrittenHistoryTruncates() {
    DecimatedSeries s;
    for (int i = 0; i <= 300; ++i) s.append(i, i);
    // A resume from the checkpoint at step 200 reports steps 201.. again.
    s.append(201, -1);
    QCOMPARE(s.size(), std::size_t(202));
    QCOMPARE(s.xs().back(), 201.0);
    QCOMPARE(s.ys().back(), -1.0);
    double lo, hi;
    QVERIFY(s.yRange(&lo, &hi));
    QCOMPARE(lo, -1.0);
    QCOMPARE(hi, 200.0);
    // The index still agrees with the reference after the truncation.
    for (int i = 202; i < 10000; ++i) s.append(i, std::sin(i * 0.01));
    DecimatedPoints ref, fast;
    decimateM4(s.xs().data(), s.ys().data(), s.size(), 0, 9999, 97, &ref);
    s.decimate(0, 9999, 97, &fast);
    QCOMPARE(fast.x, ref.x);
    QCOMPARE(fast.y, ref.y);
  }

  void nearest() {
    DecimatedSeries s;
    QCOMPARE(s.nearest(3), std::ptrdiff_t(-1));
    for (int i = 0; i < 10; ++i) s.append(i * 10, i);
    QCOMPARE(s.nearest(-5), std::ptrdiff_t(0));
    QCOMPARE(s.nearest(14), std::ptrdiff_t(1));
    QCOMPARE(s.nearest(16), std::ptrdiff_t(2));
    QCOMPARE(s.nearest(1000), std::ptrdiff_t(9));
  }

  void emptyAndDegenerate() {
    DecimatedSeries s;
    DecimatedPoints out;
    s.decimate(0, 1, 100, &out);
    QCOMPARE(out.size(), std::size_t(0));
    s.append(5, 1);
    s.decimate(5, 5, 100, &out);  // a zero-width range
    QCOMPARE(out.size(), std::size_t(1));
    s.decimate(NAN, 1, 100, &out);
    QCOMPARE(out.size(), std::size_t(0));
  }
};

QTEST_APPLESS_MAIN(TestDecimator)
#include "test_decimator.moc"
