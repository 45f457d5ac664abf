// The workbench's icons: monochrome SVGs from resources/icons, tinted at load time so they follow
// the theme (the files draw with #000000, which is replaced by the requested colour).
#pragma once

#include <QColor>
#include <QIcon>
#include <QPixmap>

namespace fathom::ui {

class Icons {
 public:
  static QPixmap pixmap(const QString& name, const QColor& color, int size);
  // Normal and checked/active colours.
  static QIcon icon(const QString& name, const QColor& normal, const QColor& active, int size = 24);
};

}  // namespace fathom::ui
