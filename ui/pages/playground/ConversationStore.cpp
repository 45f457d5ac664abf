// ConversationStore: playground history as JSON files; see ConversationStore.h.
#include "ui/pages/playground/ConversationStore.h"

#include <QDir>
#include <QFile>
#include <QJsonArray>
#include <QJsonDocument>
#include <QRandomGenerator>
#include <QSaveFile>

#include <algorithm>

namespace fathom::ui {

QJsonObject Conversation::toJson() const {
  QJsonArray sl;
  for (const StoredSlot& s : models) {
    QJsonArray msgs;
    for (const StoredMessage& m : s.messages) {
      QJsonObject o{{QStringLiteral("role"), m.role}, {QStringLiteral("content"), m.content}};
      if (m.role == QLatin1String("assistant")) {
        o.insert(QStringLiteral("tokens"), m.tokens);
        if (m.ttftMs >= 0) o.insert(QStringLiteral("ttft_ms"), m.ttftMs);
        o.insert(QStringLiteral("tokens_per_s"), m.tokensPerSecond);
        if (!m.finishReason.isEmpty()) o.insert(QStringLiteral("finish_reason"), m.finishReason);
      }
      msgs.append(o);
    }
    sl.append(QJsonObject{{QStringLiteral("model"), s.model}, {QStringLiteral("model_id"), s.modelId}, {QStringLiteral("messages"), msgs}});
  }
  return QJsonObject{{QStringLiteral("version"), 1},
                     {QStringLiteral("id"), id},
                     {QStringLiteral("title"), title},
                     {QStringLiteral("created"), created.toString(Qt::ISODateWithMs)},
                     {QStringLiteral("updated"), updated.toString(Qt::ISODateWithMs)},
                     {QStringLiteral("mode"), mode},
                     {QStringLiteral("system"), system},
                     {QStringLiteral("params"), params},
                     {QStringLiteral("slots"), sl}};
}

Conversation Conversation::fromJson(const QJsonObject& o) {
  Conversation c;
  c.id = o.value(QStringLiteral("id")).toString();
  c.title = o.value(QStringLiteral("title")).toString();
  c.created = QDateTime::fromString(o.value(QStringLiteral("created")).toString(), Qt::ISODateWithMs);
  c.updated = QDateTime::fromString(o.value(QStringLiteral("updated")).toString(), Qt::ISODateWithMs);
  c.mode = o.value(QStringLiteral("mode")).toString(QStringLiteral("chat"));
  c.system = o.value(QStringLiteral("system")).toString();
  c.params = o.value(QStringLiteral("params")).toObject();
  for (const QJsonValue& sv : o.value(QStringLiteral("slots")).toArray()) {
    const QJsonObject so = sv.toObject();
    StoredSlot s;
    s.model = so.value(QStringLiteral("model")).toString();
    s.modelId = so.value(QStringLiteral("model_id")).toString();
    for (const QJsonValue& mv : so.value(QStringLiteral("messages")).toArray()) {
      const QJsonObject mo = mv.toObject();
      StoredMessage m;
      m.role = mo.value(QStringLiteral("role")).toString();
      m.content = mo.value(QStringLiteral("content")).toString();
      m.tokens = mo.value(QStringLiteral("tokens")).toInt();
      m.ttftMs = mo.value(QStringLiteral("ttft_ms")).toDouble(-1);
      m.tokensPerSecond = mo.value(QStringLiteral("tokens_per_s")).toDouble();
      m.finishReason = mo.value(QStringLiteral("finish_reason")).toString();
      s.messages << m;
    }
    c.models << s;
  }
  return c;
}

QString ConversationStore::newId() {
  return QDateTime::currentDateTime().toString(QStringLiteral("yyyyMMdd-HHmmss")) +
         QStringLiteral("-%1").arg(QRandomGenerator::global()->bounded(0x10000), 4, 16, QLatin1Char('0'));
}

QString ConversationStore::pathOf(const QString& id) const { return QDir(m_dir).filePath(id + QStringLiteral(".json")); }

bool ConversationStore::save(Conversation& c) {
  if (m_dir.isEmpty()) {
    m_error = QStringLiteral("no workspace: history is not saved");
    return false;
  }
  if (!QDir().mkpath(m_dir)) {
    m_error = QStringLiteral("cannot create %1").arg(QDir::toNativeSeparators(m_dir));
    return false;
  }
  if (c.id.isEmpty()) c.id = newId();
  c.updated = QDateTime::currentDateTime();
  if (!c.created.isValid()) c.created = c.updated;
  QSaveFile f(pathOf(c.id));
  if (!f.open(QIODevice::WriteOnly) || f.write(QJsonDocument(c.toJson()).toJson(QJsonDocument::Indented)) < 0 || !f.commit()) {
    m_error = QStringLiteral("cannot write %1: %2").arg(QDir::toNativeSeparators(f.fileName()), f.errorString());
    return false;
  }
  return true;
}

bool ConversationStore::load(const QString& id, Conversation* c) const {
  QFile f(pathOf(id));
  if (!f.open(QIODevice::ReadOnly)) {
    m_error = QStringLiteral("cannot read %1: %2").arg(QDir::toNativeSeparators(f.fileName()), f.errorString());
    return false;
  }
  QJsonParseError pe;
  const QJsonDocument doc = QJsonDocument::fromJson(f.readAll(), &pe);
  if (!doc.isObject()) {
    m_error = QStringLiteral("%1: not a conversation (%2 at byte %3)").arg(QDir::toNativeSeparators(f.fileName()), pe.errorString()).arg(pe.offset);
    return false;
  }
  *c = Conversation::fromJson(doc.object());
  if (c->id.isEmpty()) c->id = id;
  return true;
}

bool ConversationStore::remove(const QString& id) { return QFile::remove(pathOf(id)); }

QList<Conversation> ConversationStore::list() const {
  QList<Conversation> out;
  if (m_dir.isEmpty()) return out;
  for (const QString& name : QDir(m_dir).entryList({QStringLiteral("*.json")}, QDir::Files)) {
    Conversation c;
    if (load(name.chopped(5), &c)) out << c;
  }
  std::sort(out.begin(), out.end(), [](const Conversation& a, const Conversation& b) { return a.updated > b.updated; });
  return out;
}

}  // namespace fathom::ui
