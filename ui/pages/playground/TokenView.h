// The conversation as text: each message under its role, and generated tokens coloured one by one
// (alternating shades, or by probability: red unlikely → green likely). Hovering a token shows its
// id, log-probability and the alternatives the server reported. Read-only.
#pragma once

#include <QList>
#include <QTextEdit>

#include "ui/pages/playground/SseParser.h"

namespace fathom::ui {

class TokenView : public QTextEdit {
  Q_OBJECT
 public:
  enum class Colouring { Alternating, ByProbability };
  explicit TokenView(QWidget* parent = nullptr);

  void setColouring(Colouring c);
  Colouring colouring() const { return m_colouring; }

  // A whole message under a role heading ("system", "user", "assistant", "prompt").
  void appendMessage(const QString& role, const QString& text);
  // Starts the reply that appendTokens() fills.
  void beginReply(const QString& heading);
  // Streamed text; with tokens (logprobs asked for), one coloured run per token.
  void appendDelta(const QString& text, const QList<StreamToken>& tokens);
  // A muted line after the reply (stopped, error).
  void appendNote(const QString& text, bool error = false);

  QString replyText() const { return m_reply; }
  const QList<StreamToken>& replyTokens() const { return m_tokens; }
  // The tooltip text of the token run at a viewport point ("" when none).
  QString tokenToolTipAt(const QPoint& viewportPos) const;
  static QString tokenToolTip(const StreamToken& t);

 protected:
  bool viewportEvent(QEvent* event) override;

 private:
  QColor tokenColour(const StreamToken& t, int index) const;
  void moveToEnd();

  Colouring m_colouring = Colouring::ByProbability;
  QString m_reply;
  QList<StreamToken> m_tokens;
};

}  // namespace fathom::ui
