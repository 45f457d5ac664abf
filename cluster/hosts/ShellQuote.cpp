// The one quoting function for remote shells (see ShellQuote.h).
#include "cluster/hosts/ShellQuote.h"

#include <QRegularExpression>

namespace fathom::cluster {

QString shellQuote(const QString& value) {
  if (value.isEmpty()) return QStringLiteral("''");
  static const QRegularExpression plain(QStringLiteral("^[A-Za-z0-9@%_+=:,./-]+$"));
  if (plain.match(value).hasMatch()) return value;
  QString q = value;
  q.replace(QLatin1Char('\''), QLatin1String("'\\''"));
  return QLatin1Char('\'') + q + QLatin1Char('\'');
}

QString shellJoin(const QStringList& argv) {
  QStringList parts;
  parts.reserve(argv.size());
  for (const QString& a : argv) parts << shellQuote(a);
  return parts.join(QLatin1Char(' '));
}

QString shellAssign(const QString& nameEqualsValue) {
  static const QRegularExpression ident(QStringLiteral("^[A-Za-z_][A-Za-z0-9_]*$"));
  const int eq = nameEqualsValue.indexOf(QLatin1Char('='));
  if (eq <= 0) return {};
  const QString name = nameEqualsValue.left(eq);
  if (!ident.match(name).hasMatch()) return {};
  return name + QLatin1Char('=') + shellQuote(nameEqualsValue.mid(eq + 1));
}

}  // namespace fathom::cluster
