// One request to an OpenAI-compatible server (`fathom-engine serve`): POST /v1/chat/completions or
// /v1/completions with stream: true, read incrementally (readyRead) through SseParser; emits each
// delta as it arrives, measures time to first token and tokens/s, abort() stops it. Also the
// request body (sampling parameters) and a blocking helper for tests.
#pragma once

#include <QElapsedTimer>
#include <QJsonArray>
#include <QJsonObject>
#include <QNetworkAccessManager>
#include <QNetworkReply>
#include <QObject>
#include <QPointer>
#include <QUrl>

#include "ui/pages/playground/SseParser.h"

namespace fathom::ui {

// Sampling parameters with the defaults the playground starts from.
struct SamplingParams {
  int maxTokens = 256;
  double temperature = 0.7;
  double topP = 0.95;
  int topK = 40;
  double minP = 0.05;
  double presencePenalty = 0;
  double frequencyPenalty = 0;
  double repetitionPenalty = 1.1;
  qint64 seed = -1;  // -1: none (random)
  QStringList stop;
  int topLogprobs = 5;  // 0: logprobs without alternatives; -1: no logprobs

  QJsonObject toJson() const;
  static SamplingParams fromJson(const QJsonObject& o);
};

struct ChatMessage {
  QString role;     // system | user | assistant
  QString content;
};

class CompletionStream : public QObject {
  Q_OBJECT
 public:
  CompletionStream(QNetworkAccessManager* nam, QObject* parent = nullptr);
  ~CompletionStream() override;

  // The request bodies (also used for the same request without streaming).
  static QJsonObject chatBody(const QString& model, const QList<ChatMessage>& messages, const SamplingParams& p, bool stream);
  static QJsonObject completionBody(const QString& model, const QString& prompt, const SamplingParams& p, bool stream);

  // Starts a streaming request (aborts one in flight). `path` is "/v1/chat/completions" or
  // "/v1/completions".
  void start(const QUrl& baseUrl, const QString& path, const QJsonObject& body, const QByteArray& apiKey = {});
  void abort();
  bool isRunning() const { return m_reply != nullptr; }

  QString text() const { return m_text; }
  QList<StreamToken> tokens() const { return m_tokens; }
  int completionTokens() const;  // usage when reported, else tokens counted
  double timeToFirstTokenMs() const { return m_ttftMs; }  // -1 before the first token
  double tokensPerSecond() const;  // decode rate: tokens after the first / time since the first
  double elapsedMs() const;
  QString finishReason() const { return m_finish; }
  QString error() const { return m_error; }
  bool wasAborted() const { return m_aborted; }

  // POSTs and waits (tests and tools only: runs a local event loop).
  static QByteArray postBlocking(const QUrl& url, const QJsonObject& body, int* status, int timeoutMs = 120000);

 Q_SIGNALS:
  void started();
  // New text (and its tokens, when logprobs were asked for) arrived.
  void deltaReceived(const QString& text, const QList<fathom::ui::StreamToken>& tokens);
  // The stream ended: finished normally, aborted, or failed (error() non-empty).
  void finished();

 private:
  void onReadyRead();
  void onFinished();
  void handleEvent(const QByteArray& data);

  QNetworkAccessManager* m_nam;
  QPointer<QNetworkReply> m_reply;
  SseParser m_parser;
  QElapsedTimer m_clock;
  double m_ttftMs = -1, m_firstAtMs = -1, m_lastAtMs = -1;
  QString m_text, m_finish, m_error;
  QList<StreamToken> m_tokens;
  int m_deltaCount = 0, m_usageTokens = -1;
  bool m_aborted = false;
  QByteArray m_errorBody;
};

}  // namespace fathom::ui
