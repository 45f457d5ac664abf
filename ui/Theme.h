// Light and dark themes: the application palette (Fusion style) plus the named colours that
// charts, tables and the YAML highlighter use. Themes are data (resources/themes/*.json); the
// mode follows the system unless the user picked one (View > Theme, kept in QSettings).
#pragma once

#include <QColor>
#include <QHash>
#include <QObject>
#include <QPalette>
#include <QVector>

namespace fathom::ui {

class Theme : public QObject {
  Q_OBJECT
 public:
  enum class Mode { System, Light, Dark };

  // The process-wide theme (the palette is process-wide too). Created on first use.
  static Theme* instance();

  Mode mode() const { return m_mode; }
  // Applies the palette at once and remembers the choice.
  void setMode(Mode mode);
  bool isDark() const { return m_dark; }

  // A named colour ("chart.grid", "status.running", ...); magenta when the theme lacks it so a
  // missing entry is obvious on screen rather than silently black.
  QColor color(const QString& name) const;
  // Colour of the i-th series (runs in Compare, ranks in a run); cycles through the palette.
  QColor seriesColor(int index) const;
  int seriesColorCount() const { return m_series.size(); }
  // Colour of a run status ("running", "failed", ...).
  QColor statusColor(const QString& status) const;

  static QString modeName(Mode mode);
  static Mode modeFromName(const QString& name);

 signals:
  void changed();

 private:
  explicit Theme(QObject* parent);
  void apply();
  bool systemPrefersDark() const;
  bool load(const QString& resource);

  Mode m_mode = Mode::System;
  bool m_dark = false;
  QPalette m_systemPalette;  // the platform palette before ours replaced it
  QHash<QString, QColor> m_colors;
  QVector<QColor> m_series;
};

}  // namespace fathom::ui
