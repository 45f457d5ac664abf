// Theme loading and application. Qt < 6.5 has no QStyleHints::colorScheme(), so "System" reads
// the platform palette's window lightness instead (what GTK and KDE platform themes provide).
#include "ui/Theme.h"

#include <QApplication>
#include <QFile>
#include <QJsonArray>
#include <QJsonDocument>
#include <QJsonObject>
#include <QMetaEnum>
#include <QSettings>
#include <QStyleFactory>
#include <QStyleHints>

// The resources live in the static fathom_ui library, whose static initialiser the linker may drop:
// register them explicitly (outside any namespace, as Q_INIT_RESOURCE requires).
static void initFathomResources() { Q_INIT_RESOURCE(fathom); }

namespace fathom::ui {
namespace {

QPalette::ColorRole roleFromName(const QString& name, bool* ok) {
  const QMetaEnum e = QMetaEnum::fromType<QPalette::ColorRole>();
  const int v = e.keyToValue(name.toLatin1().constData(), ok);
  return static_cast<QPalette::ColorRole>(v);
}

}  // namespace

Theme* Theme::instance() {
  static Theme* theme = nullptr;
  if (!theme) {
    initFathomResources();
    theme = new Theme(qApp);
  }
  return theme;
}

Theme::Theme(QObject* parent) : QObject(parent) {
  m_systemPalette = QGuiApplication::palette();
  if (qobject_cast<QApplication*>(qApp)) QApplication::setStyle(QStyleFactory::create(QStringLiteral("Fusion")));
  m_mode = modeFromName(QSettings().value(QStringLiteral("view/theme"), QStringLiteral("system")).toString());
#if QT_VERSION >= QT_VERSION_CHECK(6, 5, 0)
  connect(QGuiApplication::styleHints(), &QStyleHints::colorSchemeChanged, this, [this] {
    if (m_mode == Mode::System) apply();
  });
#endif
  apply();
}

QString Theme::modeName(Mode mode) {
  switch (mode) {
    case Mode::Light: return QStringLiteral("light");
    case Mode::Dark: return QStringLiteral("dark");
    case Mode::System: break;
  }
  return QStringLiteral("system");
}

Theme::Mode Theme::modeFromName(const QString& name) {
  if (name == QLatin1String("light")) return Mode::Light;
  if (name == QLatin1String("dark")) return Mode::Dark;
  return Mode::System;
}

void Theme::setMode(Mode mode) {
  m_mode = mode;
  QSettings().setValue(QStringLiteral("view/theme"), modeName(mode));
  apply();
}

bool Theme::systemPrefersDark() const {
#if QT_VERSION >= QT_VERSION_CHECK(6, 5, 0)
  const Qt::ColorScheme scheme = QGuiApplication::styleHints()->colorScheme();
  if (scheme != Qt::ColorScheme::Unknown) return scheme == Qt::ColorScheme::Dark;
#endif
  // A light text on a dark window is a dark platform theme.
  return m_systemPalette.color(QPalette::Window).lightness() < m_systemPalette.color(QPalette::WindowText).lightness();
}

bool Theme::load(const QString& resource) {
  QFile f(resource);
  if (!f.open(QIODevice::ReadOnly)) {
    qWarning("Theme: cannot open %s; is resources/fathom.qrc linked into the program?", qPrintable(resource));
    return false;
  }
  const QJsonObject root = QJsonDocument::fromJson(f.readAll()).object();
  QPalette pal;
  const QJsonObject roles = root.value(QStringLiteral("palette")).toObject();
  for (auto it = roles.begin(); it != roles.end(); ++it) {
    bool ok = false;
    const QPalette::ColorRole role = roleFromName(it.key(), &ok);
    if (ok) pal.setColor(QPalette::All, role, QColor(it.value().toString()));
  }
  const QJsonObject disabled = root.value(QStringLiteral("disabled")).toObject();
  for (auto it = disabled.begin(); it != disabled.end(); ++it) {
    bool ok = false;
    const QPalette::ColorRole role = roleFromName(it.key(), &ok);
    if (ok) pal.setColor(QPalette::Disabled, role, QColor(it.value().toString()));
  }
  m_colors.clear();
  const QJsonObject colors = root.value(QStringLiteral("colors")).toObject();
  for (auto it = colors.begin(); it != colors.end(); ++it) {
    // "#rrggbbaa" in the files; QColor reads "#aarrggbb", so move the alpha.
    QString s = it.value().toString();
    if (s.size() == 9) s = QLatin1Char('#') + s.mid(7, 2) + s.mid(1, 6);
    m_colors.insert(it.key(), QColor(s));
  }
  m_series.clear();
  for (const QJsonValue& v : root.value(QStringLiteral("series")).toArray()) m_series.push_back(QColor(v.toString()));
  if (m_series.isEmpty()) m_series.push_back(QColor(0x4c78a8));
  QGuiApplication::setPalette(pal);
  return true;
}

void Theme::apply() {
  m_dark = m_mode == Mode::Dark || (m_mode == Mode::System && systemPrefersDark());
  load(m_dark ? QStringLiteral(":/themes/dark.json") : QStringLiteral(":/themes/light.json"));
  emit changed();
}

QColor Theme::color(const QString& name) const { return m_colors.value(name, QColor(Qt::magenta)); }

QColor Theme::seriesColor(int index) const {
  if (m_series.isEmpty()) return QColor(0x4c78a8);
  const int n = m_series.size();
  return m_series[((index % n) + n) % n];
}

QColor Theme::statusColor(const QString& status) const {
  return m_colors.value(QStringLiteral("status.") + status, QGuiApplication::palette().color(QPalette::Text));
}

}  // namespace fathom::ui
