// SseParser: incremental server-sent events; see SseParser.h.
#include "ui/pages/playground/SseParser.h"

#include <QJsonArray>
#include <QJsonDocument>
#include <QJsonObject>

namespace fathom::ui {

QList<QByteArray> SseParser::feed(const QByteArray& bytes) {
  QList<QByteArray> events;
  m_buffer += bytes;
  qsizetype start = 0;
  for (;;) {
    const qsizetype nl = m_buffer.indexOf('\n', start);
    if (nl < 0) break;
    QByteArray line = m_buffer.mid(start, nl - start);
    start = nl + 1;
    if (line.endsWith('\r')) line.chop(1);
    if (line.isEmpty()) {  // blank line: the event ends
      if (m_hasData) events << m_data;
      m_data.clear();
      m_hasData = false;
      continue;
    }
    if (line.startsWith(':')) continue;  // comment (keep-alive)
    const qsizetype colon = line.indexOf(':');
    const QByteArray field = colon < 0 ? line : line.left(colon);
    if (field != "data") continue;
    QByteArray value = colon < 0 ? QByteArray() : line.mid(colon + 1);
    if (value.startsWith(' ')) value.remove(0, 1);
    if (m_hasData) m_data += '\n';
    m_data += value;
    m_hasData = true;
  }
  m_buffer.remove(0, start);
  return events;
}

QByteArray SseParser::flush() {
  QList<QByteArray> last = feed(QByteArrayLiteral("\n\n"));
  reset();
  return last.isEmpty() ? QByteArray() : last.constLast();
}

static StreamToken tokenFrom(const QJsonObject& o) {
  StreamToken t;
  t.text = o.value(QStringLiteral("token")).toString();
  if (o.contains(QStringLiteral("logprob"))) {
    t.logprob = o.value(QStringLiteral("logprob")).toDouble();
    t.hasLogprob = true;
  }
  if (o.contains(QStringLiteral("id"))) t.id = o.value(QStringLiteral("id")).toInt(-1);
  else if (t.text.startsWith(QLatin1String("token_id:"))) t.id = t.text.mid(9).toInt();
  for (const QJsonValue& v : o.value(QStringLiteral("top_logprobs")).toArray()) {
    const QJsonObject a = v.toObject();
    t.top.append({a.value(QStringLiteral("token")).toString(), a.value(QStringLiteral("logprob")).toDouble()});
  }
  return t;
}

StreamDelta decodeChunk(const QByteArray& data) {
  StreamDelta d;
  QJsonParseError pe;
  const QJsonDocument doc = QJsonDocument::fromJson(data, &pe);
  if (pe.error != QJsonParseError::NoError || !doc.isObject()) return d;
  d.valid = true;
  const QJsonObject root = doc.object();
  if (root.contains(QStringLiteral("error"))) {
    const QJsonValue e = root.value(QStringLiteral("error"));
    d.error = e.isObject() ? e.toObject().value(QStringLiteral("message")).toString() : e.toString();
    if (d.error.isEmpty()) d.error = QStringLiteral("the server reported an error");
  }
  const QJsonArray choices = root.value(QStringLiteral("choices")).toArray();
  if (!choices.isEmpty()) {
    const QJsonObject c = choices.first().toObject();
    const QJsonObject delta = c.value(QStringLiteral("delta")).toObject();
    if (delta.contains(QStringLiteral("content"))) d.content = delta.value(QStringLiteral("content")).toString();
    else if (c.contains(QStringLiteral("text"))) d.content = c.value(QStringLiteral("text")).toString();
    else if (c.value(QStringLiteral("message")).isObject())  // a non-streaming answer
      d.content = c.value(QStringLiteral("message")).toObject().value(QStringLiteral("content")).toString();
    d.finishReason = c.value(QStringLiteral("finish_reason")).toString();
    const QJsonValue lp = c.value(QStringLiteral("logprobs"));
    if (lp.isObject()) {
      const QJsonObject l = lp.toObject();
      for (const QJsonValue& v : l.value(QStringLiteral("content")).toArray()) d.tokens << tokenFrom(v.toObject());
      // /v1/completions' legacy shape: tokens[], token_logprobs[], top_logprobs[{tok: lp}].
      if (l.contains(QStringLiteral("tokens"))) {
        const QJsonArray toks = l.value(QStringLiteral("tokens")).toArray();
        const QJsonArray lps = l.value(QStringLiteral("token_logprobs")).toArray();
        const QJsonArray tops = l.value(QStringLiteral("top_logprobs")).toArray();
        for (int i = 0; i < toks.size(); ++i) {
          StreamToken t;
          t.text = toks.at(i).toString();
          if (i < lps.size() && lps.at(i).isDouble()) {
            t.logprob = lps.at(i).toDouble();
            t.hasLogprob = true;
          }
          const QJsonObject top = tops.at(i).toObject();
          for (auto it = top.begin(); it != top.end(); ++it) t.top.append({it.key(), it.value().toDouble()});
          d.tokens << t;
        }
      }
    }
  }
  const QJsonObject usage = root.value(QStringLiteral("usage")).toObject();
  if (!usage.isEmpty()) {
    d.promptTokens = usage.value(QStringLiteral("prompt_tokens")).toInt(-1);
    d.completionTokens = usage.value(QStringLiteral("completion_tokens")).toInt(-1);
  }
  return d;
}

QString errorMessageFromBody(const QByteArray& body) {
  const QJsonDocument doc = QJsonDocument::fromJson(body);
  if (doc.isObject()) {
    const QJsonValue e = doc.object().value(QStringLiteral("error"));
    const QString m = e.isObject() ? e.toObject().value(QStringLiteral("message")).toString() : e.toString();
    if (!m.isEmpty()) return m;
  }
  return QString::fromUtf8(body).trimmed().left(500);
}

}  // namespace fathom::ui
