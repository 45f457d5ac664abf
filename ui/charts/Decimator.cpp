// M4 decimation (reference and indexed). Both walk the same column boundaries and break ties the
// same way (first occurrence of the minimum and of the maximum), so their outputs are identical.
#include "ui/charts/Decimator.h"

#include <algorithm>
#include <cmath>

namespace fathom::ui {
namespace {

// Left edge of column c. Both implementations use this one formula so that a point on a boundary
// lands in the same column whatever the rounding.
inline double columnEdge(double xLo, double xHi, int columns, int c) {
  return xLo + (xHi - xLo) * static_cast<double>(c) / static_cast<double>(columns);
}

inline void push(DecimatedPoints* out, double x, double y) {
  out->x.push_back(x);
  out->y.push_back(y);
}

// Keeps the first finite minimum and maximum seen, scanning in index order.
struct MinMaxAcc {
  const double* y;
  std::ptrdiff_t iMin = -1, iMax = -1;
  void take(std::ptrdiff_t k) {
    const double v = y[k];
    if (!std::isfinite(v)) return;
    if (iMin < 0 || v < y[iMin]) iMin = k;
    if (iMax < 0 || v > y[iMax]) iMax = k;
  }
  // A block summary: its first minimum and first maximum.
  void takeBlock(int64_t bMin, int64_t bMax) {
    if (bMin < 0) return;
    if (iMin < 0 || y[bMin] < y[iMin]) iMin = bMin;
    if (iMax < 0 || y[bMax] > y[iMax]) iMax = bMax;
  }
};

// Emits the M4 points of [i, j): all of them when there are at most four, else first, min, max,
// last in index order (duplicates once).
template <class MinMaxFn>
void emitColumn(const double* x, const double* y, std::size_t i, std::size_t j, DecimatedPoints* out,
                MinMaxFn&& minMax) {
  if (j - i <= 4) {
    for (std::size_t k = i; k < j; ++k) push(out, x[k], y[k]);
    return;
  }
  std::ptrdiff_t iMin = -1, iMax = -1;
  minMax(i, j, &iMin, &iMax);
  if (iMin < 0) {  // nothing finite: one NaN keeps the gap visible
    push(out, x[i], y[i]);
    return;
  }
  std::ptrdiff_t picks[4] = {static_cast<std::ptrdiff_t>(i), iMin, iMax, static_cast<std::ptrdiff_t>(j - 1)};
  std::sort(picks, picks + 4);
  std::ptrdiff_t last = -1;
  for (std::ptrdiff_t k : picks) {
    if (k == last) continue;
    push(out, x[k], y[k]);
    last = k;
  }
}

// Shared column walk: neighbours outside the range, then each non-empty column.
template <class MinMaxFn>
void walkColumns(const double* x, const double* y, std::size_t n, double xLo, double xHi, int columns,
                 DecimatedPoints* out, MinMaxFn&& minMax) {
  out->clear();
  if (n == 0) return;
  if (!(xHi >= xLo) || !std::isfinite(xLo) || !std::isfinite(xHi)) return;
  const std::size_t i0 = static_cast<std::size_t>(std::lower_bound(x, x + n, xLo) - x);
  const std::size_t i1 = static_cast<std::size_t>(std::upper_bound(x, x + n, xHi) - x);
  if (i0 > 0) push(out, x[i0 - 1], y[i0 - 1]);
  if (xHi == xLo || columns <= 1) {
    if (i1 > i0) emitColumn(x, y, i0, i1, out, minMax);
  } else {
    std::size_t i = i0;
    while (i < i1) {
      // Column of x[i]: estimate, then correct against the exact edges.
      int c = static_cast<int>(std::floor((x[i] - xLo) / (xHi - xLo) * columns));
      c = std::clamp(c, 0, columns - 1);
      while (c + 1 < columns && x[i] >= columnEdge(xLo, xHi, columns, c + 1)) ++c;
      while (c > 0 && x[i] < columnEdge(xLo, xHi, columns, c)) --c;
      std::size_t j = i1;
      if (c + 1 < columns) {
        const double edge = columnEdge(xLo, xHi, columns, c + 1);
        j = static_cast<std::size_t>(std::lower_bound(x + i, x + i1, edge) - x);
        if (j <= i) j = i + 1;  // cannot happen with the correction above; never loop forever
      }
      emitColumn(x, y, i, j, out, minMax);
      i = j;
    }
  }
  if (i1 < n) push(out, x[i1], y[i1]);
}

}  // namespace

void decimateM4(const double* x, const double* y, std::size_t n, double xLo, double xHi, int columns,
                DecimatedPoints* out) {
  walkColumns(x, y, n, xLo, xHi, columns, out,
              [y](std::size_t i, std::size_t j, std::ptrdiff_t* iMin, std::ptrdiff_t* iMax) {
                MinMaxAcc acc{y};
                for (std::size_t k = i; k < j; ++k) acc.take(static_cast<std::ptrdiff_t>(k));
                *iMin = acc.iMin;
                *iMax = acc.iMax;
              });
}

// ---- DecimatedSeries ---------------------------------------------------------------------------

void DecimatedSeries::append(double x, double y) {
  if (!m_x.empty() && x < m_x.back()) truncateFrom(x);
  m_x.push_back(x);
  m_y.push_back(y);
  indexAppended();
}

void DecimatedSeries::append(const double* x, const double* y, std::size_t n) {
  for (std::size_t k = 0; k < n; ++k) append(x[k], y[k]);
}

void DecimatedSeries::indexAppended() {
  const std::size_t k = m_x.size() - 1;
  const double v = m_y[k];
  const std::size_t b1 = k / kBlock, b2 = k / (kBlock * kBlock);
  if (b1 >= m_l1.size()) m_l1.resize(b1 + 1);
  if (b2 >= m_l2.size()) m_l2.resize(b2 + 1);
  if (!std::isfinite(v)) return;
  for (Extremes* e : {&m_l1[b1], &m_l2[b2]}) {
    if (e->iMin < 0 || v < m_y[e->iMin]) e->iMin = static_cast<int64_t>(k);
    if (e->iMax < 0 || v > m_y[e->iMax]) e->iMax = static_cast<int64_t>(k);
  }
}

void DecimatedSeries::truncateFrom(double x0) {
  const std::size_t n = static_cast<std::size_t>(std::lower_bound(m_x.begin(), m_x.end(), x0) - m_x.begin());
  if (n == m_x.size()) return;
  m_x.resize(n);
  m_y.resize(n);
  rebuildIndexFrom(n / kBlock);
}

void DecimatedSeries::rebuildIndexFrom(std::size_t block) {
  // Level 1: blocks from `block` on are recomputed from the points.
  const std::size_t n = m_x.size();
  const std::size_t nb1 = (n + kBlock - 1) / kBlock;
  m_l1.resize(std::min(m_l1.size(), block));
  for (std::size_t b = m_l1.size(); b < nb1; ++b) {
    MinMaxAcc acc{m_y.data()};
    for (std::size_t k = b * kBlock; k < std::min(n, (b + 1) * kBlock); ++k) acc.take(static_cast<std::ptrdiff_t>(k));
    m_l1.push_back({acc.iMin, acc.iMax});
  }
  // Level 2: from the level-1 blocks.
  const std::size_t nb2 = (nb1 + kBlock - 1) / kBlock;
  m_l2.resize(std::min(m_l2.size(), block / kBlock));
  for (std::size_t b = m_l2.size(); b < nb2; ++b) {
    MinMaxAcc acc{m_y.data()};
    for (std::size_t c = b * kBlock; c < std::min(nb1, (b + 1) * kBlock); ++c) acc.takeBlock(m_l1[c].iMin, m_l1[c].iMax);
    m_l2.push_back({acc.iMin, acc.iMax});
  }
}

void DecimatedSeries::clear() {
  m_x.clear();
  m_y.clear();
  m_l1.clear();
  m_l2.clear();
}

void DecimatedSeries::reserve(std::size_t n) {
  m_x.reserve(n);
  m_y.reserve(n);
  m_l1.reserve(n / kBlock + 1);
  m_l2.reserve(n / (kBlock * kBlock) + 1);
}

void DecimatedSeries::minMax(std::size_t i0, std::size_t i1, std::ptrdiff_t* iMin, std::ptrdiff_t* iMax) const {
  constexpr std::size_t B1 = kBlock, B2 = kBlock * kBlock;
  MinMaxAcc acc{m_y.data()};
  std::size_t k = i0;
  // Raw points up to the first level-1 boundary, then level-1 blocks up to a level-2 boundary,
  // then whole level-2 blocks, and back down on the right side. Visiting in index order with
  // strict comparisons keeps the first occurrence, as the reference does.
  auto rawTo = [&](std::size_t end) { for (; k < end; ++k) acc.take(static_cast<std::ptrdiff_t>(k)); };
  auto l1To = [&](std::size_t end) {
    for (; k + B1 <= end; k += B1) acc.takeBlock(m_l1[k / B1].iMin, m_l1[k / B1].iMax);
  };
  auto l2To = [&](std::size_t end) {
    for (; k + B2 <= end; k += B2) acc.takeBlock(m_l2[k / B2].iMin, m_l2[k / B2].iMax);
  };
  rawTo(std::min(i1, (k + B1 - 1) / B1 * B1));
  if (k < i1) {
    l1To(std::min(i1, (k + B2 - 1) / B2 * B2));
    l2To(i1);
    l1To(i1);
    rawTo(i1);
  }
  *iMin = acc.iMin;
  *iMax = acc.iMax;
}

void DecimatedSeries::decimate(double xLo, double xHi, int columns, DecimatedPoints* out) const {
  walkColumns(m_x.data(), m_y.data(), m_x.size(), xLo, xHi, columns, out,
              [this](std::size_t i, std::size_t j, std::ptrdiff_t* iMin, std::ptrdiff_t* iMax) {
                minMax(i, j, iMin, iMax);
              });
}

bool DecimatedSeries::yRange(double* lo, double* hi) const {
  if (m_x.empty()) return false;
  return yRange(m_x.front(), m_x.back(), lo, hi);
}

bool DecimatedSeries::yRange(double xLo, double xHi, double* lo, double* hi) const {
  const std::size_t i0 = static_cast<std::size_t>(std::lower_bound(m_x.begin(), m_x.end(), xLo) - m_x.begin());
  const std::size_t i1 = static_cast<std::size_t>(std::upper_bound(m_x.begin(), m_x.end(), xHi) - m_x.begin());
  if (i1 <= i0) return false;
  std::ptrdiff_t iMin = -1, iMax = -1;
  minMax(i0, i1, &iMin, &iMax);
  if (iMin < 0) return false;
  *lo = m_y[iMin];
  *hi = m_y[iMax];
  return true;
}

std::ptrdiff_t DecimatedSeries::nearest(double x) const {
  if (m_x.empty()) return -1;
  const auto it = std::lower_bound(m_x.begin(), m_x.end(), x);
  if (it == m_x.end()) return static_cast<std::ptrdiff_t>(m_x.size()) - 1;
  const std::ptrdiff_t i = it - m_x.begin();
  if (i > 0 && (x - m_x[i - 1]) <= (m_x[i] - x)) return i - 1;
  return i;
}

}  // namespace fathom::ui
