// Numbers as the workbench shows them: units and sensible precision (1.23 GiB, 512.4K tok/s,
// 43.1% MFU, 1h 02m). Pure functions over QString; no widgets.
#pragma once

#include <QString>
#include <QtGlobal>

namespace fathom::ui {

// 1.23 GiB, 512 B, 4.0 KiB (binary units; memory and file sizes).
QString formatBytes(double bytes, int precision = 2);
// 512.4K, 1.2M, 3.4G, 950 (decimal SI suffixes, for counts and rates).
QString formatSi(double value, int precision = 1);
// "512.4K tok/s".
QString formatTokensPerSecond(double value);
// 0.431 -> "43.1%".
QString formatFraction(double fraction, int precision = 1);
// 3723 s -> "1h 02m", 75 s -> "1m 15s", 4.2 s -> "4.2s".
QString formatDuration(double seconds);
// Loss-like values: 4 significant digits ("3.142", "0.01234"); "—" for NaN.
QString formatValue(double value, int significant = 4);
// Learning rates and other small numbers: "3.00e-4" below 1e-3.
QString formatSmall(double value);

}  // namespace fathom::ui
