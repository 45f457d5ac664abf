// CompletionStream: one streaming request to `fathom-engine serve`; see CompletionStream.h.
#include "ui/pages/playground/CompletionStream.h"

#include <QEventLoop>
#include <QJsonDocument>
#include <QNetworkAccessManager>
#include <QNetworkReply>
#include <QNetworkRequest>
#include <QTimer>

namespace fathom::ui {

QJsonObject SamplingParams::toJson() const {
  QJsonObject o{{QStringLiteral("max_tokens"), maxTokens},
                {QStringLiteral("temperature"), temperature},
                {QStringLiteral("top_p"), topP},
                {QStringLiteral("top_k"), topK},
                {QStringLiteral("min_p"), minP},
                {QStringLiteral("presence_penalty"), presencePenalty},
                {QStringLiteral("frequency_penalty"), frequencyPenalty},
                {QStringLiteral("repetition_penalty"), repetitionPenalty}};
  if (seed >= 0) o.insert(QStringLiteral("seed"), seed);
  if (!stop.isEmpty()) o.insert(QStringLiteral("stop"), QJsonArray::fromStringList(stop));
  return o;
}

SamplingParams SamplingParams::fromJson(const QJsonObject& o) {
  SamplingParams p;
  p.maxTokens = o.value(QStringLiteral("max_tokens")).toInt(p.maxTokens);
  p.temperature = o.value(QStringLiteral("temperature")).toDouble(p.temperature);
  p.topP = o.value(QStringLiteral("top_p")).toDouble(p.topP);
  p.topK = o.value(QStringLiteral("top_k")).toInt(p.topK);
  p.minP = o.value(QStringLiteral("min_p")).toDouble(p.minP);
  p.presencePenalty = o.value(QStringLiteral("presence_penalty")).toDouble(p.presencePenalty);
  p.frequencyPenalty = o.value(QStringLiteral("frequency_penalty")).toDouble(p.frequencyPenalty);
  p.repetitionPenalty = o.value(QStringLiteral("repetition_penalty")).toDouble(p.repetitionPenalty);
  p.seed = o.contains(QStringLiteral("seed")) ? qint64(o.value(QStringLiteral("seed")).toDouble()) : -1;
  for (const QJsonValue& v : o.value(QStringLiteral("stop")).toArray()) p.stop << v.toString();
  return p;
}

static void addLogprobs(QJsonObject& body, const SamplingParams& p, bool chat) {
  if (p.topLogprobs < 0) return;
  if (chat) {
    body.insert(QStringLiteral("logprobs"), true);
    body.insert(QStringLiteral("top_logprobs"), p.topLogprobs);
  } else {
    body.insert(QStringLiteral("logprobs"), p.topLogprobs);
  }
}

QJsonObject CompletionStream::chatBody(const QString& model, const QList<ChatMessage>& messages, const SamplingParams& p, bool stream) {
  QJsonObject body = p.toJson();
  body.insert(QStringLiteral("model"), model);
  QJsonArray msgs;
  for (const ChatMessage& m : messages)
    msgs.append(QJsonObject{{QStringLiteral("role"), m.role}, {QStringLiteral("content"), m.content}});
  body.insert(QStringLiteral("messages"), msgs);
  body.insert(QStringLiteral("stream"), stream);
  addLogprobs(body, p, true);
  return body;
}

QJsonObject CompletionStream::completionBody(const QString& model, const QString& prompt, const SamplingParams& p, bool stream) {
  QJsonObject body = p.toJson();
  body.insert(QStringLiteral("model"), model);
  body.insert(QStringLiteral("prompt"), prompt);
  body.insert(QStringLiteral("stream"), stream);
  addLogprobs(body, p, false);
  return body;
}

CompletionStream::CompletionStream(QNetworkAccessManager* nam, QObject* parent) : QObject(parent), m_nam(nam) {}

CompletionStream::~CompletionStream() {
  if (m_reply) {
    m_reply->disconnect(this);
    m_reply->abort();
    m_reply->deleteLater();
  }
}

void CompletionStream::start(const QUrl& baseUrl, const QString& path, const QJsonObject& body, const QByteArray& apiKey) {
  if (m_reply) {
    m_reply->disconnect(this);
    m_reply->abort();
    m_reply->deleteLater();
  }
  m_parser.reset();
  m_text.clear();
  m_finish.clear();
  m_error.clear();
  m_tokens.clear();
  m_errorBody.clear();
  m_ttftMs = m_firstAtMs = m_lastAtMs = -1;
  m_deltaCount = 0;
  m_usageTokens = -1;
  m_aborted = false;
  QUrl url = baseUrl;
  url.setPath(path);
  QNetworkRequest req(url);
  req.setHeader(QNetworkRequest::ContentTypeHeader, QStringLiteral("application/json"));
  req.setRawHeader("Accept", "text/event-stream");
  if (!apiKey.isEmpty()) req.setRawHeader("Authorization", "Bearer " + apiKey);
  // Loopback: no proxy, no HTTP/2 upgrade, and no transfer timeout (a long generation is fine).
  req.setAttribute(QNetworkRequest::Http2AllowedAttribute, false);
  req.setTransferTimeout(0);
  m_clock.start();
  m_reply = m_nam->post(req, QJsonDocument(body).toJson(QJsonDocument::Compact));
  connect(m_reply, &QNetworkReply::readyRead, this, &CompletionStream::onReadyRead);
  connect(m_reply, &QNetworkReply::finished, this, &CompletionStream::onFinished);
  Q_EMIT started();
}

void CompletionStream::abort() {
  if (!m_reply) return;
  m_aborted = true;
  m_reply->abort();  // finished() follows, synchronously
}

int CompletionStream::completionTokens() const {
  if (m_usageTokens >= 0) return m_usageTokens;
  return m_tokens.isEmpty() ? m_deltaCount : int(m_tokens.size());
}

double CompletionStream::tokensPerSecond() const {
  const int n = completionTokens();
  if (n < 2 || m_firstAtMs < 0 || m_lastAtMs <= m_firstAtMs) return 0;
  return (n - 1) * 1000.0 / (m_lastAtMs - m_firstAtMs);
}

double CompletionStream::elapsedMs() const { return m_clock.isValid() ? double(m_clock.nsecsElapsed()) / 1e6 : 0; }

void CompletionStream::onReadyRead() {
  if (!m_reply) return;
  const QByteArray bytes = m_reply->readAll();
  const int status = m_reply->attribute(QNetworkRequest::HttpStatusCodeAttribute).toInt();
  if (status >= 400) {  // an error body, read whole in onFinished
    m_errorBody += bytes;
    return;
  }
  for (const QByteArray& data : m_parser.feed(bytes)) handleEvent(data);
}

void CompletionStream::handleEvent(const QByteArray& data) {
  if (SseParser::isDone(data)) return;
  const StreamDelta d = decodeChunk(data);
  if (!d.valid) return;
  if (!d.error.isEmpty()) m_error = d.error;
  if (d.completionTokens >= 0) m_usageTokens = d.completionTokens;
  if (!d.finishReason.isEmpty()) m_finish = d.finishReason;
  if (d.content.isEmpty() && d.tokens.isEmpty()) return;
  const double now = elapsedMs();
  if (m_ttftMs < 0) m_ttftMs = m_firstAtMs = now;
  m_lastAtMs = now;
  m_deltaCount += d.tokens.isEmpty() ? 1 : 0;
  m_text += d.content;
  m_tokens += d.tokens;
  Q_EMIT deltaReceived(d.content, d.tokens);
}

void CompletionStream::onFinished() {
  QNetworkReply* r = m_reply;
  if (!r) return;
  const int status = r->attribute(QNetworkRequest::HttpStatusCodeAttribute).toInt();
  const QByteArray rest = r->isOpen() ? r->readAll() : QByteArray();  // an aborted reply is closed
  if (status >= 400) {
    m_errorBody += rest;
    m_error = QStringLiteral("HTTP %1: %2").arg(status).arg(errorMessageFromBody(m_errorBody));
  } else {
    for (const QByteArray& data : m_parser.feed(rest)) handleEvent(data);
    const QByteArray last = m_parser.flush();
    if (!last.isEmpty()) handleEvent(last);
    if (r->error() != QNetworkReply::NoError && !m_aborted && m_error.isEmpty()) m_error = r->errorString();
  }
  if (m_aborted && m_finish.isEmpty()) m_finish = QStringLiteral("stopped");
  m_reply = nullptr;
  r->deleteLater();
  Q_EMIT finished();
}

QByteArray CompletionStream::postBlocking(const QUrl& url, const QJsonObject& body, int* status, int timeoutMs) {
  QNetworkAccessManager nam;
  QNetworkRequest req(url);
  req.setHeader(QNetworkRequest::ContentTypeHeader, QStringLiteral("application/json"));
  req.setAttribute(QNetworkRequest::Http2AllowedAttribute, false);
  QNetworkReply* r = nam.post(req, QJsonDocument(body).toJson(QJsonDocument::Compact));
  QEventLoop loop;
  QObject::connect(r, &QNetworkReply::finished, &loop, &QEventLoop::quit);
  QTimer::singleShot(timeoutMs, &loop, &QEventLoop::quit);
  loop.exec();
  if (!r->isFinished()) r->abort();
  if (status) *status = r->attribute(QNetworkRequest::HttpStatusCodeAttribute).toInt();
  const QByteArray out = r->readAll();
  delete r;
  return out;
}

}  // namespace fathom::ui
