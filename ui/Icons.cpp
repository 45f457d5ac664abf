// SVG tinting via text substitution, rendered with QSvgRenderer at 2x for high-DPI screens.
#include "ui/Icons.h"

#include <QFile>
#include <QHash>
#include <QPainter>
#include <QSvgRenderer>

namespace fathom::ui {

QPixmap Icons::pixmap(const QString& name, const QColor& color, int size) {
  static QHash<QString, QByteArray> sources;
  auto it = sources.find(name);
  if (it == sources.end()) {
    QFile f(QStringLiteral(":/icons/%1.svg").arg(name));
    it = sources.insert(name, f.open(QIODevice::ReadOnly) ? f.readAll() : QByteArray());
  }
  QByteArray svg = it.value();
  svg.replace("#000000", color.name().toLatin1());
  QSvgRenderer renderer(svg);
  const qreal dpr = 2.0;
  QPixmap pm(QSize(size, size) * dpr);
  pm.fill(Qt::transparent);
  if (renderer.isValid()) {
    QPainter p(&pm);
    renderer.render(&p);
  }
  pm.setDevicePixelRatio(dpr);
  return pm;
}

QIcon Icons::icon(const QString& name, const QColor& normal, const QColor& active, int size) {
  QIcon icon;
  icon.addPixmap(pixmap(name, normal, size), QIcon::Normal, QIcon::Off);
  icon.addPixmap(pixmap(name, active, size), QIcon::Normal, QIcon::On);
  icon.addPixmap(pixmap(name, active, size), QIcon::Active, QIcon::Off);
  icon.addPixmap(pixmap(name, active, size), QIcon::Active, QIcon::On);
  return icon;
}

}  // namespace fathom::ui
