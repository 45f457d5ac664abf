// Number formatting shared by tables, charts and the estimator.
#include "ui/Format.h"

#include <cmath>

namespace fathom::ui {

QString formatBytes(double bytes, int precision) {
  if (!std::isfinite(bytes)) return QStringLiteral("—");
  static const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB"};
  double v = std::fabs(bytes);
  int u = 0;
  while (v >= 1024.0 && u < 5) {
    v /= 1024.0;
    ++u;
  }
  const QString sign = bytes < 0 ? QStringLiteral("-") : QString();
  if (u == 0) return sign + QString::number(static_cast<qint64>(v)) + QStringLiteral(" B");
  return sign + QString::number(v, 'f', precision) + QLatin1Char(' ') + QLatin1String(units[u]);
}

QString formatSi(double value, int precision) {
  if (!std::isfinite(value)) return QStringLiteral("—");
  static const char* suffix[] = {"", "K", "M", "G", "T", "P"};
  double v = std::fabs(value);
  int u = 0;
  while (v >= 1000.0 && u < 5) {
    v /= 1000.0;
    ++u;
  }
  const QString sign = value < 0 ? QStringLiteral("-") : QString();
  if (u == 0) {
    // Small counts stay integers when they are integers.
    if (v == std::floor(v)) return sign + QString::number(static_cast<qint64>(v));
    return sign + QString::number(v, 'f', precision);
  }
  return sign + QString::number(v, 'f', precision) + QLatin1String(suffix[u]);
}

QString formatTokensPerSecond(double value) { return formatSi(value) + QStringLiteral(" tok/s"); }

QString formatFraction(double fraction, int precision) {
  if (!std::isfinite(fraction)) return QStringLiteral("—");
  return QString::number(fraction * 100.0, 'f', precision) + QLatin1Char('%');
}

QString formatDuration(double seconds) {
  if (!std::isfinite(seconds) || seconds < 0) return QStringLiteral("—");
  if (seconds < 10) return QString::number(seconds, 'f', 1) + QLatin1Char('s');
  const qint64 s = static_cast<qint64>(std::llround(seconds));
  const qint64 d = s / 86400, h = (s / 3600) % 24, m = (s / 60) % 60, sec = s % 60;
  if (d > 0) return QStringLiteral("%1d %2h").arg(d).arg(h, 2, 10, QLatin1Char('0'));
  if (h > 0) return QStringLiteral("%1h %2m").arg(h).arg(m, 2, 10, QLatin1Char('0'));
  if (m > 0) return QStringLiteral("%1m %2s").arg(m).arg(sec, 2, 10, QLatin1Char('0'));
  return QStringLiteral("%1s").arg(sec);
}

QString formatValue(double value, int significant) {
  if (std::isnan(value)) return QStringLiteral("—");
  if (std::isinf(value)) return value > 0 ? QStringLiteral("∞") : QStringLiteral("-∞");
  if (value != 0 && (std::fabs(value) < 1e-3 || std::fabs(value) >= 1e6)) return QString::number(value, 'e', significant - 1);
  return QString::number(value, 'g', significant);
}

QString formatSmall(double value) {
  if (std::isnan(value)) return QStringLiteral("—");
  if (value != 0 && std::fabs(value) < 1e-3) return QString::number(value, 'e', 2);
  return QString::number(value, 'g', 4);
}

}  // namespace fathom::ui
