// Playground history: one JSON file per conversation under <workspace>/playground/<id>.json,
// written whole to a temporary file and renamed over. A conversation keeps its mode, system prompt,
// sampling parameters and, per model slot (two in compare mode), the model and its messages with
// the speed of each reply.
#pragma once

#include <QDateTime>
#include <QJsonObject>
#include <QList>
#include <QString>

namespace fathom::ui {

struct StoredMessage {
  StoredMessage() = default;
  StoredMessage(const QString& r, const QString& c) : role(r), content(c) {}
  QString role, content;
  double ttftMs = -1, tokensPerSecond = 0;
  int tokens = 0;
  QString finishReason;
};

struct StoredSlot {
  QString model;    // the directory served
  QString modelId;  // what the server called it
  QList<StoredMessage> messages;
};

struct Conversation {
  QString id;  // file name without .json
  QString title;
  QDateTime created, updated;
  QString mode = QStringLiteral("chat");  // chat | completion
  QString system;
  QJsonObject params;
  QList<StoredSlot> models;  // one per model slot (two in compare mode)

  QJsonObject toJson() const;
  static Conversation fromJson(const QJsonObject& o);
};

class ConversationStore {
 public:
  explicit ConversationStore(const QString& dir = {}) : m_dir(dir) {}
  void setDir(const QString& dir) { m_dir = dir; }
  QString dir() const { return m_dir; }
  bool isValid() const { return !m_dir.isEmpty(); }

  static QString newId();  // "20260130-142501-3f2a"
  QString pathOf(const QString& id) const;
  // Sets `updated` (and `created` when empty); creates the directory. False with error() on failure.
  bool save(Conversation& c);
  bool load(const QString& id, Conversation* c) const;
  bool remove(const QString& id);
  // Newest first (by updated).
  QList<Conversation> list() const;
  QString error() const { return m_error; }

 private:
  QString m_dir;
  mutable QString m_error;
};

}  // namespace fathom::ui
