// One colour per run, the same in every panel and across restarts: the first time a run is
// shown it takes the next palette slot; the assignment is kept in QSettings.
#pragma once

#include <QColor>
#include <QHash>
#include <QString>

namespace fathom::ui {

class RunColors {
 public:
  static RunColors& instance();
  // Palette slot of a run (assigned on first use).
  int slot(const QString& runId);
  QColor color(const QString& runId);
  void forget(const QString& runId);

 private:
  RunColors();
  void save() const;
  QHash<QString, int> m_slots;
  int m_next = 0;
};

}  // namespace fathom::ui
