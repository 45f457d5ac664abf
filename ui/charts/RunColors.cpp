// RunColors: slots cycle through the theme's series palette; the theme maps a slot to a colour,
// so a run keeps its slot when the theme changes.
#include "ui/charts/RunColors.h"

#include <QSettings>

#include "ui/Theme.h"

namespace fathom::ui {

RunColors& RunColors::instance() {
  static RunColors colors;
  return colors;
}

RunColors::RunColors() {
  QSettings s;
  const QVariantMap map = s.value(QStringLiteral("compare/runColors")).toMap();
  for (auto it = map.begin(); it != map.end(); ++it) m_slots.insert(it.key(), it.value().toInt());
  m_next = s.value(QStringLiteral("compare/nextColor"), 0).toInt();
}

int RunColors::slot(const QString& runId) {
  auto it = m_slots.find(runId);
  if (it != m_slots.end()) return it.value();
  const int slot = m_next++;
  m_slots.insert(runId, slot);
  save();
  return slot;
}

QColor RunColors::color(const QString& runId) { return Theme::instance()->seriesColor(slot(runId)); }

void RunColors::forget(const QString& runId) {
  if (m_slots.remove(runId)) save();
}

void RunColors::save() const {
  QSettings s;
  QVariantMap map;
  for (auto it = m_slots.begin(); it != m_slots.end(); ++it) map.insert(it.key(), it.value());
  s.setValue(QStringLiteral("compare/runColors"), map);
  s.setValue(QStringLiteral("compare/nextColor"), m_next);
}

}  // namespace fathom::ui
