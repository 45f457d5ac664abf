// Server-sent events as `fathom-engine serve` streams them (OpenAI's format): bytes arrive in any
// split (mid-line, mid-UTF-8 character); feed() keeps the unfinished tail and returns whole events'
// `data:` payloads. decodeChunk() reads one chat.completion.chunk / text_completion chunk. Pure
// functions over Qt Core; no network, no widgets.
#pragma once

#include <QByteArray>
#include <QList>
#include <QString>
#include <QStringList>

namespace fathom::ui {

class SseParser {
 public:
  // Appends bytes; returns the data of every event they complete (multi-line data joined by \n).
  // Comments (": ...") and other fields (event:, id:, retry:) are skipped. "[DONE]" is returned as
  // it is; isDone() tells it.
  QList<QByteArray> feed(const QByteArray& bytes);
  // The data of an event left unterminated when the stream ended ("" when none).
  QByteArray flush();
  void reset() { m_buffer.clear(); m_data.clear(); m_hasData = false; }
  static bool isDone(const QByteArray& data) { return data.trimmed() == "[DONE]"; }

 private:
  QByteArray m_buffer;  // bytes after the last complete line
  QByteArray m_data;    // data lines of the event being read
  bool m_hasData = false;
};

// One generated token with its log-probability and the alternatives the server reported.
struct StreamToken {
  QString text;
  double logprob = 0;
  bool hasLogprob = false;
  int id = -1;  // when the server reports one ("id" field or a "token_id:N" token name)
  QList<QPair<QString, double>> top;
};

// What one chunk carries.
struct StreamDelta {
  QString content;         // choices[0].delta.content or choices[0].text
  QString finishReason;    // choices[0].finish_reason ("" while streaming)
  QList<StreamToken> tokens;  // choices[0].logprobs.content
  int promptTokens = -1, completionTokens = -1;  // usage, when this chunk carries it
  QString error;           // {"error":{"message":...}} sent in the stream
  bool valid = false;      // the payload was a JSON object
};

StreamDelta decodeChunk(const QByteArray& data);

// The message of an OpenAI-style error body ({"error":{"message":...}}), else the body itself
// (trimmed, at most 500 characters).
QString errorMessageFromBody(const QByteArray& body);

}  // namespace fathom::ui
