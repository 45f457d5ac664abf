// The Playground page (issue 7). Three layers:
// - the SSE parser on canned bytes split at every offset (mid-line, mid-UTF-8 character), and the
//   chunk decoder (content, logprobs, usage, errors);
// - the page against a small in-process OpenAI-style server (QTcpServer) that streams slowly: the
//   tokens land in the view as they come, tokens/s and time to first token are shown, Stop ends a
//   reply, Regenerate asks again, compare sends both models the prompt, history is written;
// - the page against the real `fathom-engine serve` child (FATHOM_ENGINE_BIN) on a tiny model the
//   real engine trains: a greedy streamed chat reply equals the non-streamed one for the same seed,
//   Stop, history, compare with two servers. Skipped, with the engine's words, only while the
//   engine lacks `serve`. The Checkpoint browser's "Open in Playground" lands on the page.
#include <QAction>
#include <QApplication>
#include <QCheckBox>
#include <QClipboard>
#include <QComboBox>
#include <QJsonArray>
#include <QJsonDocument>
#include <QJsonObject>
#include <QLabel>
#include <QListWidget>
#include <QPlainTextEdit>
#include <QProcess>
#include <QPushButton>
#include <QScopeGuard>
#include <QSignalSpy>
#include <QStandardPaths>
#include <QTcpServer>
#include <QTcpSocket>
#include <QTemporaryDir>
#include <QTimer>
#include <QtTest>

#include <memory>

#include "cluster/jobs/JobQueue.h"
#include "cluster/workspace/Workspace.h"
#include "engine/config/config.h"
#include "ui/MainWindow.h"
#include "ui/pages/checkpoints/CheckpointsPage.h"
#include "ui/pages/playground/CompletionStream.h"
#include "ui/pages/playground/ConversationStore.h"
#include "ui/pages/playground/ModelSlot.h"
#include "ui/pages/playground/PlaygroundPage.h"
#include "ui/pages/playground/ServeProcess.h"
#include "ui/pages/playground/SseParser.h"
#include "ui/pages/playground/TokenView.h"

using namespace fathom;
using namespace fathom::ui;

namespace {

// A stand-in for `fathom-engine serve` speaking just enough HTTP: every POST is answered with the
// same tokens as server-sent events, one event every `intervalMs`, written in pieces that split
// lines and UTF-8 characters.
class FakeServer : public QObject {
 public:
  QStringList tokens;
  int intervalMs = 15;
  QList<QJsonObject> requests;
  int aborted = 0;

  explicit FakeServer(QStringList toks) : tokens(std::move(toks)) {
    QObject::connect(&m_server, &QTcpServer::newConnection, this, [this] {
      while (QTcpSocket* s = m_server.nextPendingConnection()) serve(s);
    });
    QVERIFY(m_server.listen(QHostAddress::LocalHost, 0));
  }
  QUrl url() const { return QUrl(QStringLiteral("http://127.0.0.1:%1").arg(m_server.serverPort())); }

 private:
  void serve(QTcpSocket* s) {
    auto* buf = new QByteArray;
    QObject::connect(s, &QTcpSocket::readyRead, s, [this, s, buf] {
      *buf += s->readAll();
      const qsizetype end = buf->indexOf("\r\n\r\n");
      if (end < 0) return;
      const QByteArray head = buf->left(end).toLower();
      const qsizetype cl = head.indexOf("content-length:");
      const int len = cl < 0 ? 0 : head.mid(cl + 15, head.indexOf('\r', cl) - cl - 15).trimmed().toInt();
      if (buf->size() < end + 4 + len) return;
      const QJsonObject body = QJsonDocument::fromJson(buf->mid(end + 4, len)).object();
      requests << body;
      s->disconnect(s, &QTcpSocket::readyRead, nullptr, nullptr);
      delete buf;
      respond(s, body);
    });
  }
  void respond(QTcpSocket* s, const QJsonObject& body) {
    const bool chat = body.contains(QStringLiteral("messages"));
    QByteArray out = "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\nConnection: close\r\n\r\n";
    QList<QByteArray> events;
    for (int i = 0; i < tokens.size(); ++i) {
      QJsonObject choice{{QStringLiteral("index"), 0}, {QStringLiteral("finish_reason"), QJsonValue()}};
      if (chat) choice.insert(QStringLiteral("delta"), QJsonObject{{QStringLiteral("content"), tokens[i]}});
      else choice.insert(QStringLiteral("text"), tokens[i]);
      const double lp = -0.1 * (i % 7);
      choice.insert(QStringLiteral("logprobs"),
                    QJsonObject{{QStringLiteral("content"),
                                 QJsonArray{QJsonObject{{QStringLiteral("token"), tokens[i]},
                                                        {QStringLiteral("logprob"), lp},
                                                        {QStringLiteral("top_logprobs"),
                                                         QJsonArray{QJsonObject{{QStringLiteral("token"), tokens[i]}, {QStringLiteral("logprob"), lp}},
                                                                    QJsonObject{{QStringLiteral("token"), QStringLiteral("zz")}, {QStringLiteral("logprob"), -3.5}}}}}}}});
      events << "data: " + QJsonDocument(QJsonObject{{QStringLiteral("object"), QStringLiteral("chat.completion.chunk")},
                                                     {QStringLiteral("choices"), QJsonArray{choice}}})
                               .toJson(QJsonDocument::Compact) +
                    "\n\n";
    }
    events << "data: " +
                  QJsonDocument(QJsonObject{{QStringLiteral("choices"),
                                             QJsonArray{QJsonObject{{QStringLiteral("index"), 0},
                                                                    {QStringLiteral("delta"), QJsonObject{}},
                                                                    {QStringLiteral("finish_reason"), QStringLiteral("length")}}}},
                                            {QStringLiteral("usage"), QJsonObject{{QStringLiteral("prompt_tokens"), 5},
                                                                                  {QStringLiteral("completion_tokens"), int(tokens.size())}}}})
                      .toJson(QJsonDocument::Compact) +
                  "\n\n";
    events << "data: [DONE]\n\n";
    // Pieces of 7 bytes: lines and multi-byte characters are cut everywhere.
    QByteArray all;
    for (const QByteArray& e : events) all += e;
    auto* pieces = new QList<QByteArray>;
    pieces->append(out);
    for (qsizetype i = 0; i < all.size(); i += 7) pieces->append(all.mid(i, 7));
    auto* timer = new QTimer(s);
    const int perEvent = std::max(1, int(pieces->size() / std::max<qsizetype>(1, events.size())));
    timer->setInterval(std::max(1, intervalMs / perEvent));
    QObject::connect(timer, &QTimer::timeout, s, [this, s, timer, pieces] {
      if (s->state() != QAbstractSocket::ConnectedState) {
        ++aborted;
        timer->stop();
        delete pieces;
        s->deleteLater();
        return;
      }
      if (pieces->isEmpty()) {
        timer->stop();
        delete pieces;
        s->disconnectFromHost();
        s->deleteLater();
        return;
      }
      s->write(pieces->takeFirst());
    });
    timer->start();
  }
  QTcpServer m_server;
};

QStringList words(int n) {
  QStringList out;
  const QStringList base{QStringLiteral("Hé"), QStringLiteral("llo"), QStringLiteral(" 世界"), QStringLiteral(" 🙂"), QStringLiteral(","),
                         QStringLiteral(" ok")};
  for (int i = 0; i < n; ++i) out << base[i % base.size()];
  return out;
}

bool engineLacksServe(const QString& text) { return ServeProcess::isUnknownCommand(text); }

}  // namespace

class TestPlaygroundPage : public QObject {
  Q_OBJECT

  QTemporaryDir m_tmp;
  cluster::Workspace m_ws;
  QString m_engine, m_ckpt;
  bool m_haveCorpus = false;

  std::unique_ptr<PlaygroundPage> page() {
    auto p = std::make_unique<PlaygroundPage>(&m_ws);
    p->setEngineBinary(m_engine);
    p->resize(1400, 850);
    return p;
  }

  // Waits until the slot's server is ready; on failure QSKIPs when the engine has no `serve`.
  static bool waitReady(ModelSlot* s, QString* error) {
    QSignalSpy ready(s->server(), &ServeProcess::ready);
    QSignalSpy failed(s->server(), &ServeProcess::failed);
    (void)QTest::qWaitFor([&] { return !ready.isEmpty() || !failed.isEmpty() || s->isReady() || !s->error().isEmpty(); }, 120000);
    *error = s->error();
    return s->isReady();
  }

 private slots:
  void initTestCase() {
    QStandardPaths::setTestModeEnabled(true);
    QVERIFY(m_tmp.isValid());
    qputenv("XDG_CONFIG_HOME", m_tmp.filePath(QStringLiteral("config")).toUtf8());
    const QString wsDir = m_tmp.filePath(QStringLiteral("ws"));
    qputenv("FATHOM_WORKSPACE", wsDir.toUtf8());
    QString error;
    QVERIFY2(m_ws.open(wsDir, &error), qPrintable(error));
    m_engine = qEnvironmentVariable("FATHOM_ENGINE_BIN");
  }

  // ---- the SSE parser --------------------------------------------------------------------------

  void sseParserAnySplit() {
    const QString expected = QStringLiteral("Héllo 世界 🙂 done");
    QByteArray stream = ": keep-alive\r\n\r\n";
    QStringList parts{QStringLiteral("Hé"), QStringLiteral("llo 世"), QStringLiteral("界 🙂"), QStringLiteral(" done")};
    for (int i = 0; i < parts.size(); ++i) {
      const QByteArray chunk =
          QJsonDocument(QJsonObject{{QStringLiteral("choices"), QJsonArray{QJsonObject{{QStringLiteral("delta"), QJsonObject{{QStringLiteral("content"), parts[i]}}}}}}})
              .toJson(QJsonDocument::Compact);
      stream += (i % 2 ? "data:" : "data: ") + chunk + (i == 2 ? "\r\n\r\n" : "\n\n");
    }
    stream += "event: ping\nid: 7\n\n";  // no data: no event
    stream += "data: [DONE]\n\n";
    for (int cut1 = 0; cut1 <= stream.size(); ++cut1) {
      for (int cut2 : {cut1, std::min<int>(int(stream.size()), cut1 + 1), std::min<int>(int(stream.size()), cut1 + 2)}) {
        SseParser p;
        QList<QByteArray> events = p.feed(stream.left(cut1));
        events += p.feed(stream.mid(cut1, cut2 - cut1));
        events += p.feed(stream.mid(cut2));
        QString text;
        int done = 0;
        for (const QByteArray& e : events) {
          if (SseParser::isDone(e)) {
            ++done;
            continue;
          }
          const StreamDelta d = decodeChunk(e);
          QVERIFY2(d.valid, e.constData());
          text += d.content;
        }
        QCOMPARE(done, 1);
        QCOMPARE(text, expected);
        QVERIFY(p.flush().isEmpty());
      }
    }
    // Byte by byte.
    SseParser p;
    QList<QByteArray> events;
    for (char c : stream) events += p.feed(QByteArray(1, c));
    QCOMPARE(events.size(), 5);
    // Multi-line data is joined with \n; an unterminated last event comes out of flush().
    SseParser q;
    QCOMPARE(q.feed("data: a\ndata: b\n\ndata: tail"), QList<QByteArray>{QByteArray("a\nb")});
    QCOMPARE(q.flush(), QByteArray("tail"));
  }

  void decodeChunkFields() {
    const StreamDelta d = decodeChunk(
        R"({"choices":[{"index":0,"delta":{"content":"hi"},"finish_reason":null,"logprobs":{"content":[{"token":"hi","logprob":-0.25,"bytes":[104,105],"top_logprobs":[{"token":"hi","logprob":-0.25},{"token":"ho","logprob":-1.5}]}]}}]})");
    QVERIFY(d.valid);
    QCOMPARE(d.content, QStringLiteral("hi"));
    QVERIFY(d.finishReason.isEmpty());
    QCOMPARE(d.tokens.size(), 1);
    QCOMPARE(d.tokens[0].logprob, -0.25);
    QCOMPARE(d.tokens[0].top.size(), 2);
    QCOMPARE(d.tokens[0].top[1].first, QStringLiteral("ho"));
    const StreamDelta u = decodeChunk(R"({"choices":[{"index":0,"delta":{},"finish_reason":"stop"}],"usage":{"prompt_tokens":3,"completion_tokens":9}})");
    QCOMPARE(u.finishReason, QStringLiteral("stop"));
    QCOMPARE(u.completionTokens, 9);
    const StreamDelta t = decodeChunk(R"({"choices":[{"index":0,"text":" raw","finish_reason":null}]})");
    QCOMPARE(t.content, QStringLiteral(" raw"));
    const StreamDelta e = decodeChunk(R"({"error":{"message":"prompt too long","type":"invalid_request_error"}})");
    QCOMPARE(e.error, QStringLiteral("prompt too long"));
    QVERIFY(!decodeChunk("not json").valid);
    QCOMPARE(errorMessageFromBody(R"({"error":{"message":"bad temperature","param":"temperature"}})"), QStringLiteral("bad temperature"));
    // The tooltip names the token, its logprob and the alternatives.
    const QString tip = TokenView::tokenToolTip(d.tokens[0]);
    QVERIFY2(tip.contains(QStringLiteral("-0.250")) && tip.contains(QStringLiteral("ho")), qPrintable(tip));
  }

  void conversationRoundTrip() {
    ConversationStore store(m_tmp.filePath(QStringLiteral("store")));
    Conversation c;
    c.title = QStringLiteral("hello");
    c.system = QStringLiteral("be brief");
    c.params = SamplingParams{}.toJson();
    StoredSlot s;
    s.model = QStringLiteral("/m");
    s.messages << StoredMessage(QStringLiteral("user"), QStringLiteral("hi")) << StoredMessage(QStringLiteral("assistant"), QStringLiteral("yo 🙂"));
    s.messages.last().tokensPerSecond = 12.5;
    c.models << s;
    QVERIFY2(store.save(c), qPrintable(store.error()));
    QVERIFY(QFileInfo(store.pathOf(c.id)).isFile());
    Conversation back;
    QVERIFY(store.load(c.id, &back));
    QCOMPARE(back.models.size(), 1);
    QCOMPARE(back.models[0].messages[1].content, QStringLiteral("yo 🙂"));
    QCOMPARE(back.models[0].messages[1].tokensPerSecond, 12.5);
    QCOMPARE(SamplingParams::fromJson(back.params).toJson(), SamplingParams{}.toJson());
    QCOMPARE(store.list().size(), 1);
  }

  // ---- the page against a stand-in server --------------------------------------------------------

  void streamsIntoTheView() {
    FakeServer server(words(24));
    auto p = page();
    p->show();
    ModelSlot* s = p->slot(0);
    s->connectToServer(server.url(), QStringLiteral("fake"));
    QVERIFY(p->sendButton()->isEnabled());
    p->setSystemPrompt(QStringLiteral("You are terse."));
    p->input()->setPlainText(QStringLiteral("Say hello"));
    QSignalSpy done(p.get(), &PlaygroundPage::exchangeFinished);
    QSignalSpy deltas(s->stream(), &CompletionStream::deltaReceived);
    p->sendButton()->click();
    QVERIFY(p->input()->toPlainText().isEmpty());
    QVERIFY(p->stopButton()->isEnabled());
    // Tokens arrive one by one while the reply runs.
    QTRY_VERIFY_WITH_TIMEOUT(deltas.size() >= 3, 10000);
    QVERIFY(s->stream()->isRunning());
    QVERIFY(!s->view()->replyText().isEmpty());
    QVERIFY(done.wait(10000));
    const QString expected = words(24).join(QString());
    QCOMPARE(s->view()->replyText(), expected);
    QVERIFY(s->view()->toPlainText().contains(expected));
    QCOMPARE(s->view()->replyTokens().size(), 24);
    QCOMPARE(s->lastReply(), expected);
    // The request: the system prompt, the message, the sampling parameters, logprobs.
    const QJsonObject req = server.requests.value(0);
    QCOMPARE(req.value(QStringLiteral("stream")).toBool(), true);
    QCOMPARE(req.value(QStringLiteral("messages")).toArray().size(), 2);
    QCOMPARE(req.value(QStringLiteral("messages")).toArray()[0].toObject().value(QStringLiteral("content")).toString(), QStringLiteral("You are terse."));
    QCOMPARE(req.value(QStringLiteral("temperature")).toDouble(), 0.7);
    QCOMPARE(req.value(QStringLiteral("top_logprobs")).toInt(), 5);
    QVERIFY(req.value(QStringLiteral("logprobs")).toBool());
    // Speed and finish reason under the reply.
    const QString stats = s->statsLabel()->text();
    QVERIFY2(stats.contains(QStringLiteral("tok/s")) && stats.contains(QStringLiteral("first token")) && stats.contains(QStringLiteral("24 tokens")) &&
                 stats.contains(QStringLiteral("length")),
             qPrintable(stats));
    QVERIFY(s->stream()->tokensPerSecond() > 0);
    QVERIFY(s->stream()->timeToFirstTokenMs() >= 0);
    // Hover on a token shows its logprob.
    QVERIFY(TokenView::tokenToolTip(s->view()->replyTokens().at(2)).contains(QStringLiteral("zz")));
    // Copy.
    p->copyButton()->click();
    QCOMPARE(QApplication::clipboard()->text(), expected);
    // History: a JSON file in <workspace>/playground with both messages and the speed.
    const QString file = p->store().pathOf(p->conversationId());
    QVERIFY2(file.startsWith(m_ws.dir() + QStringLiteral("/playground/")), qPrintable(file));
    QVERIFY(QFileInfo(file).isFile());
    Conversation c;
    QVERIFY(p->store().load(p->conversationId(), &c));
    QCOMPARE(c.models.size(), 1);
    QCOMPARE(c.models[0].messages.size(), 2);
    QCOMPARE(c.models[0].messages[1].content, expected);
    QVERIFY(c.models[0].messages[1].tokensPerSecond > 0);
    QCOMPARE(c.system, QStringLiteral("You are terse."));
    QCOMPARE(p->historyList()->count(), 1);
    // Regenerate: the same messages again, the old answer replaced.
    QVERIFY(p->regenerateButton()->isEnabled());
    p->regenerateButton()->click();
    QVERIFY(done.wait(10000));
    QCOMPARE(server.requests.size(), 2);
    QCOMPARE(server.requests[1].value(QStringLiteral("messages")).toArray().size(), 2);
    QCOMPARE(s->messages().size(), 2);
    // Reopening the conversation from the history shows it again.
    p->newConversation();
    QVERIFY(s->view()->toPlainText().isEmpty());
    QVERIFY(p->loadConversation(c.id));
    QVERIFY(s->view()->toPlainText().contains(expected));
    // Delete from the history list removes the file.
    p->historyList()->setCurrentRow(0);
    QAction* del = p->historyList()->actions().value(0);
    QVERIFY(del);
    del->trigger();
    QVERIFY(!QFileInfo::exists(file));
    QCOMPARE(p->historyList()->count(), 0);
  }

  void stopEndsTheReply() {
    FakeServer server(words(400));
    server.intervalMs = 20;
    auto p = page();
    ModelSlot* s = p->slot(0);
    s->connectToServer(server.url(), QStringLiteral("fake"));
    QSignalSpy done(p.get(), &PlaygroundPage::exchangeFinished);
    QVERIFY(p->send(QStringLiteral("Go on forever")));
    QTRY_VERIFY_WITH_TIMEOUT(s->view()->replyTokens().size() >= 3, 10000);
    p->stopButton()->click();
    QCOMPARE(done.size(), 1);
    QVERIFY(!s->isBusy());
    QCOMPARE(s->stream()->finishReason(), QStringLiteral("stopped"));
    const qsizetype n = s->view()->replyTokens().size();
    QVERIFY(n < 400);
    QTest::qWait(200);
    QCOMPARE(s->view()->replyTokens().size(), n);  // nothing arrives after Stop
    QVERIFY(s->view()->toPlainText().contains(QStringLiteral("(stopped)")));
    QVERIFY(p->sendButton()->isEnabled());
    QTRY_VERIFY_WITH_TIMEOUT(server.aborted == 1, 5000);  // the server saw the connection go
  }

  void compareSendsBoth() {
    FakeServer a(words(6)), b(QStringList{QStringLiteral("other"), QStringLiteral(" model")});
    auto p = page();
    p->setCompareMode(true);
    p->setMode(QStringLiteral("completion"));
    p->slot(0)->connectToServer(a.url(), QStringLiteral("a"));
    p->slot(1)->connectToServer(b.url(), QStringLiteral("b"));
    QSignalSpy done(p.get(), &PlaygroundPage::exchangeFinished);
    QVERIFY(p->send(QStringLiteral("Once upon a time")));
    QVERIFY(done.wait(10000));
    QCOMPARE(done.size(), 1);  // one exchange: both answered
    QCOMPARE(p->slot(0)->lastReply(), words(6).join(QString()));
    QCOMPARE(p->slot(1)->lastReply(), QStringLiteral("other model"));
    QCOMPARE(a.requests.value(0).value(QStringLiteral("prompt")).toString(), QStringLiteral("Once upon a time"));
    QCOMPARE(b.requests.value(0).value(QStringLiteral("prompt")).toString(), QStringLiteral("Once upon a time"));
    Conversation c;
    QVERIFY(p->store().load(p->conversationId(), &c));
    QCOMPARE(c.mode, QStringLiteral("completion"));
    QCOMPARE(c.models.size(), 2);
  }

  // ---- the real engine ---------------------------------------------------------------------------

  void trainTinyModel() {
    if (m_engine.isEmpty() || !QFileInfo(m_engine).isExecutable()) QSKIP("FATHOM_ENGINE_BIN does not name a built fathom-engine");
    const QDir corpus(QString::fromStdString(config::default_data_dir()) + QStringLiteral("/corpus/sotu"));
    if (corpus.entryList({QStringLiteral("179*.txt")}, QDir::Files).isEmpty())
      QSKIP(qPrintable(QStringLiteral("no corpus in %1 (packaging/collect-data.sh fetches it)").arg(corpus.path())));
    const QString cfg = m_tmp.filePath(QStringLiteral("base.yaml"));
    QFile f(cfg);
    QVERIFY(f.open(QIODevice::WriteOnly));
    f.write("extends: debug-tiny\nrun:\n  name: tinychat\ntrain:\n  max_steps: 12\n  eval_interval: 0\noptimizer:\n  warmup_steps: 2\n"
            "checkpoint:\n  save_every_steps: 12\n");
    f.close();
    const QString runDir = QDir(m_ws.runsDir()).filePath(QStringLiteral("tinychat-1"));
    QProcess proc;
    proc.setProcessChannelMode(QProcess::MergedChannels);
    proc.start(m_engine, {QStringLiteral("train"), cfg, QStringLiteral("--run-dir"), runDir, QStringLiteral("--run-id"), QStringLiteral("tinychat-1"),
                          QStringLiteral("--no-stdout")});
    QVERIFY(proc.waitForFinished(120000));
    QVERIFY2(proc.exitCode() == 0, proc.readAll().constData());
    m_ws.rescan();
    m_ckpt = QDir(runDir).filePath(QStringLiteral("checkpoints/step-12"));
    QVERIFY(QFileInfo(QDir(m_ckpt).filePath(QStringLiteral("model.safetensors"))).isFile());
  }

  void openInPlaygroundFromTheBrowser() {
    if (m_ckpt.isEmpty()) QSKIP("no tiny model (see trainTinyModel)");
    cluster::JobQueue queue(&m_ws);
    queue.setEngineBinary(m_engine);
    MainWindow w(&m_ws, &queue);
    w.checkpoints()->setEngineBinary(m_engine);
    QVERIFY(w.checkpoints()->selectCheckpoint(QFileInfo(m_ckpt).absoluteFilePath()) || w.checkpoints()->selectCheckpoint(m_ckpt));
    QAction* a = w.checkpoints()->action(QStringLiteral("playground"));
    QVERIFY(a && a->isEnabled());
    a->trigger();
    QCOMPARE(w.currentPage(), int(MainWindow::PlaygroundMode));
    ModelSlot* s = w.playground()->slot(0);
    QCOMPARE(QFileInfo(s->model()).canonicalFilePath(), QFileInfo(m_ckpt).canonicalFilePath());
    // The registry's checkpoint is the picker's choice.
    QVERIFY(s->modelPicker()->currentText().contains(QStringLiteral("step 12")));
    QString error;
    if (!waitReady(s, &error)) {
      // Not ready: the engine's own words are on the page.
      QVERIFY2(s->statusLabel()->text().contains(error.left(30)), qPrintable(s->statusLabel()->text()));
      if (engineLacksServe(error)) QSKIP(qPrintable(QStringLiteral("the engine has no `serve` yet: ") + error));
      QFAIL(qPrintable(error));
    }
  }

  // Live weights: a run that is training now checkpoints on request through its control channel,
  // and the Playground serves that checkpoint.
  void liveWeightsOfARunningRun() {
    if (m_ckpt.isEmpty()) QSKIP("no tiny model (see trainTinyModel)");
    const QString cfg = m_tmp.filePath(QStringLiteral("live.yaml"));
    {
      QFile f(cfg);
      QVERIFY(f.open(QIODevice::WriteOnly));
      f.write("extends: debug-tiny\nrun:\n  name: livechat\ntrain:\n  max_steps: 100000\n  eval_interval: 0\n  sample_interval: 0\n"
              "checkpoint:\n  save_every_steps: 0\n  save_interval: 0\n");
    }
    cluster::JobQueue queue(&m_ws);
    queue.setEngineBinary(m_engine);
    cluster::LaunchSpec spec;
    spec.name = QStringLiteral("livechat");
    spec.configPath = cfg;
    const QString id = queue.enqueue(spec);
    QVERIFY2(!id.isEmpty(), qPrintable(queue.lastError()));
    auto cleanup = qScopeGuard([&] { queue.kill(id); });
    QTRY_VERIFY_WITH_TIMEOUT(queue.runningIds().contains(id), 30000);
    cluster::RunSession* session = queue.session(id);
    QVERIFY(session);
    QSignalSpy metrics(session, &cluster::RunSession::metricsAppended);
    QVERIFY(metrics.wait(60000));  // it is training
    auto p = page();
    ModelSlot* s = p->slot(0);
    s->setJobQueue(&queue);
    const int at = s->modelPicker()->findText(QStringLiteral("Live weights: %1").arg(id), Qt::MatchStartsWith);
    QVERIFY2(at >= 0, "the running run is not offered as live weights");
    s->modelPicker()->setCurrentIndex(at);
    Q_EMIT s->modelPicker()->activated(at);
    QVERIFY2(s->statusLabel()->text().contains(QStringLiteral("waiting")), qPrintable(s->statusLabel()->text()));
    QString error;
    if (!waitReady(s, &error)) {
      if (engineLacksServe(error)) QSKIP(qPrintable(QStringLiteral("the engine has no `serve` yet: ") + error));
      QFAIL(qPrintable(error + QStringLiteral(" / ") + s->statusLabel()->text()));
    }
    // It serves a checkpoint the running run wrote on request, at a step > 0.
    const auto run = m_ws.runs().get(id);
    QVERIFY(run);
    QVERIFY2(QFileInfo(s->model()).absoluteFilePath().startsWith(QFileInfo(run->runDir).absoluteFilePath()), qPrintable(s->model()));
    QVERIFY2(QFileInfo(s->model()).fileName().startsWith(QStringLiteral("step-")), qPrintable(s->model()));
    QVERIFY(QFileInfo(s->model()).fileName().mid(5).toLongLong() > 0);
    QVERIFY(queue.runningIds().contains(id));  // asking for the weights did not stop training
    SamplingParams sp;
    sp.temperature = 0;
    sp.maxTokens = 8;
    p->setSamplingParams(sp);
    QSignalSpy done(p.get(), &PlaygroundPage::exchangeFinished);
    QVERIFY(p->send(QStringLiteral("The state of the union")));
    QVERIFY(done.wait(120000));
    QVERIFY2(s->stream()->error().isEmpty(), qPrintable(s->stream()->error()));
    s->unload();
  }

  void realServeStreamsGreedy() {
    if (m_ckpt.isEmpty()) QSKIP("no tiny model (see trainTinyModel)");
    auto p = page();
    ModelSlot* s = p->slot(0);
    QSignalSpy progress(s->server(), &ServeProcess::progress);
    p->openModel(m_ckpt);
    QVERIFY(s->server()->state() == ServeProcess::State::Loading || s->server()->state() == ServeProcess::State::Failed);
    QString error;
    if (!waitReady(s, &error)) {
      if (engineLacksServe(error)) QSKIP(qPrintable(QStringLiteral("the engine has no `serve` yet: ") + error));
      QFAIL(qPrintable(error));
    }
    QVERIFY(s->baseUrl().port() > 0);
    SamplingParams sp;
    sp.temperature = 0;
    sp.seed = 7;
    sp.maxTokens = 24;
    sp.repetitionPenalty = 1;
    sp.topK = 0;
    sp.topP = 1;
    sp.minP = 0;
    p->setSamplingParams(sp);
    QSignalSpy done(p.get(), &PlaygroundPage::exchangeFinished);
    QSignalSpy deltas(s->stream(), &CompletionStream::deltaReceived);
    QVERIFY(p->send(QStringLiteral("The state of the union")));
    QVERIFY(done.wait(120000));
    QVERIFY2(s->stream()->error().isEmpty(), qPrintable(s->stream()->error()));
    const QString streamed = s->lastReply();
    QVERIFY(!streamed.isEmpty());
    QVERIFY(deltas.size() >= 2);
    QCOMPARE(s->view()->replyText(), streamed);
    QVERIFY(!s->view()->replyTokens().isEmpty());
    QVERIFY2(s->statsLabel()->text().contains(QStringLiteral("tok/s")), qPrintable(s->statsLabel()->text()));
    QVERIFY(s->stream()->tokensPerSecond() > 0);
    // The same request without streaming gives the same text.
    QList<ChatMessage> msgs{{QStringLiteral("user"), QStringLiteral("The state of the union")}};
    int status = 0;
    QUrl url = s->baseUrl();
    url.setPath(QStringLiteral("/v1/chat/completions"));
    const QByteArray body = CompletionStream::postBlocking(url, CompletionStream::chatBody(s->modelId(), msgs, sp, false), &status);
    QCOMPARE(status, 200);
    QCOMPARE(decodeChunk(body).content, streamed);
    // History.
    Conversation c;
    QVERIFY(p->store().load(p->conversationId(), &c));
    QCOMPARE(c.models.value(0).messages.value(1).content, streamed);
    // Stop: the tiny model's whole reply (its context is 64 tokens) takes milliseconds, so Stop comes
    // right after Send: the request is aborted, the page is idle, and the server answers the next
    // request (the aborted one freed its slot). The stand-in server test stops mid-stream.
    p->newConversation();
    sp.maxTokens = 4000;
    p->setSamplingParams(sp);
    QVERIFY(p->send(QStringLiteral("Go")));
    QVERIFY(s->isBusy() && p->stopButton()->isEnabled());
    p->stop();
    QVERIFY(!s->isBusy());
    QVERIFY(!p->stopButton()->isEnabled());
    QCOMPARE(s->stream()->finishReason(), QStringLiteral("stopped"));
    QVERIFY2(s->stream()->error().isEmpty(), qPrintable(s->stream()->error()));
    QVERIFY(s->view()->toPlainText().contains(QStringLiteral("(stopped)")));
    sp.maxTokens = 8;
    p->setSamplingParams(sp);
    QVERIFY(p->regenerate());
    QVERIFY(done.wait(60000));
    QVERIFY2(s->stream()->error().isEmpty(), qPrintable(s->stream()->error()));
    QVERIFY(!s->lastReply().isEmpty());
    // An error from the server is shown, not swallowed.
    sp.temperature = -3;
    p->setSamplingParams(sp);  // the spin box clamps: ask the server directly instead
    QJsonObject bad = CompletionStream::chatBody(s->modelId(), msgs, sp, true);
    bad.insert(QStringLiteral("temperature"), -3);
    bad.insert(QStringLiteral("max_tokens"), -1);
    QUrl u2 = s->baseUrl();
    u2.setPath(QStringLiteral("/v1/chat/completions"));
    CompletionStream::postBlocking(u2, bad, &status);
    QVERIFY2(status >= 400 && status < 500, qPrintable(QString::number(status)));
    // Raw completion: the streamed continuation equals the non-streamed one (greedy).
    p->setMode(QStringLiteral("completion"));
    sp.temperature = 0;
    sp.maxTokens = 16;
    p->setSamplingParams(sp);
    QVERIFY(p->send(QStringLiteral("Fellow citizens")));
    QVERIFY(done.wait(60000));
    QVERIFY2(s->stream()->error().isEmpty(), qPrintable(s->stream()->error()));
    const QString continued = s->lastReply();
    QVERIFY(!continued.isEmpty());
    QUrl u3 = s->baseUrl();
    u3.setPath(QStringLiteral("/v1/completions"));
    const QByteArray raw = CompletionStream::postBlocking(u3, CompletionStream::completionBody(s->modelId(), QStringLiteral("Fellow citizens"), sp, false), &status);
    QCOMPARE(status, 200);
    QCOMPARE(decodeChunk(raw).content, continued);
    // Switching models stops the old child.
    const qint64 pid = s->server()->processId();
    QVERIFY(pid > 0);
    s->unload();
    QTRY_VERIFY_WITH_TIMEOUT(!QFileInfo::exists(QStringLiteral("/proc/%1/cmdline").arg(pid)) ||
                                 QFile(QStringLiteral("/proc/%1/stat").arg(pid)).open(QIODevice::ReadOnly) == false,
                             10000);
  }

  void realServeCompareTwo() {
    if (m_ckpt.isEmpty()) QSKIP("no tiny model (see trainTinyModel)");
    auto p = page();
    p->setCompareMode(true);
    p->slot(0)->openModel(m_ckpt);
    p->slot(1)->openModel(QFileInfo(m_ckpt).absolutePath() + QStringLiteral("/.."));  // the run directory
    QString error;
    if (!waitReady(p->slot(0), &error)) {
      if (engineLacksServe(error)) QSKIP(qPrintable(QStringLiteral("the engine has no `serve` yet: ") + error));
      QFAIL(qPrintable(error));
    }
    QVERIFY2(waitReady(p->slot(1), &error), qPrintable(error));
    SamplingParams sp;
    sp.temperature = 0;
    sp.maxTokens = 12;
    p->setSamplingParams(sp);
    QSignalSpy done(p.get(), &PlaygroundPage::exchangeFinished);
    QVERIFY(p->send(QStringLiteral("Hello")));
    QVERIFY(done.wait(120000));
    QVERIFY(!p->slot(0)->lastReply().isEmpty());
    QVERIFY(!p->slot(1)->lastReply().isEmpty());
    // The same weights (the run's latest checkpoint), greedy: the same reply.
    QCOMPARE(p->slot(1)->lastReply(), p->slot(0)->lastReply());
  }

  // docs/screenshots/playground.png: FATHOM_SCREENSHOT_DIR=docs/screenshots (under Xvfb for real fonts).
  void screenshot() {
    const QString dir = qEnvironmentVariable("FATHOM_SCREENSHOT_DIR");
    if (dir.isEmpty()) QSKIP("set FATHOM_SCREENSHOT_DIR to write playground.png");
    if (m_ckpt.isEmpty()) QSKIP("no tiny model (see trainTinyModel)");
    cluster::JobQueue queue(&m_ws);
    queue.setEngineBinary(m_engine);
    MainWindow w(&m_ws, &queue);
    w.resize(1480, 920);
    w.show();
    QVERIFY(QTest::qWaitForWindowExposed(&w));
    w.setCurrentPage(MainWindow::PlaygroundMode);
    PlaygroundPage* p = w.playground();
    p->setEngineBinary(m_engine);
    p->setCompareMode(true);
    p->slot(0)->openModel(m_ckpt);
    p->slot(1)->openModel(QFileInfo(m_ckpt).absolutePath() + QStringLiteral("/.."));
    QString error;
    QVERIFY2(waitReady(p->slot(0), &error), qPrintable(error));
    QVERIFY2(waitReady(p->slot(1), &error), qPrintable(error));
    p->setSystemPrompt(QStringLiteral("You are a helpful assistant."));
    SamplingParams sp;
    sp.maxTokens = 40;
    sp.seed = 42;
    p->setSamplingParams(sp);
    QSignalSpy done(p, &PlaygroundPage::exchangeFinished);
    QVERIFY(p->send(QStringLiteral("The state of the union is")));
    QVERIFY(done.wait(60000));
    // debug-tiny's context is 64 tokens: one exchange fits, a second would be refused (and is shown so).
    p->input()->setPlainText(QStringLiteral("What should Congress do next?"));
    QTest::qWait(300);
    QVERIFY(QDir().mkpath(dir));
    QVERIFY(w.grab().save(QDir(dir).filePath(QStringLiteral("playground.png"))));
  }
};

QTEST_MAIN(TestPlaygroundPage)
#include "test_playground_page.moc"
