// One model of the Playground: a picker (registry checkpoints and adapters, a Hugging Face folder,
// live weights of a running run: the run checkpoints on request through its control channel and
// that checkpoint is served), the `fathom-engine serve` child it
// starts with its load progress, the conversation view and the speed of the last reply. The page
// holds one, or two side by side in compare mode; each keeps its own message list.
#pragma once

#include <QList>
#include <QUrl>
#include <QWidget>

#include "ui/pages/playground/CompletionStream.h"
#include "ui/pages/playground/ConversationStore.h"

class QComboBox;
class QLabel;
class QNetworkAccessManager;
class QProgressBar;
class QToolButton;

namespace fathom::cluster {
class JobQueue;
class RunSession;
class Workspace;
struct EventItem;
}

namespace fathom::ui {

class ServeProcess;
class TokenView;

class ModelSlot : public QWidget {
  Q_OBJECT
 public:
  ModelSlot(int index, cluster::Workspace* workspace, QNetworkAccessManager* nam, QWidget* parent = nullptr);
  ~ModelSlot() override;

  void setEngineBinary(const QString& path);
  // Running runs of this queue are offered as "live weights".
  void setJobQueue(cluster::JobQueue* queue);
  void reloadModels();
  // Asks the running run for a checkpoint of its current weights (control channel) and serves it
  // when the engine reports it saved; false with error() when the run has no live session.
  bool openLiveWeights(const QString& runId);
  // Serves `dir` (stops the server of the previous model). Adds it to the picker when missing.
  void openModel(const QString& dir);
  // Uses a server that already runs (a remote one, or a test's), instead of a child.
  void connectToServer(const QUrl& baseUrl, const QString& modelId);
  void unload();

  bool isReady() const;
  bool isBusy() const;  // a request is streaming
  QString model() const { return m_model; }
  QString modelId() const { return m_modelId; }
  QUrl baseUrl() const { return m_url; }
  QString error() const { return m_error; }

  // The conversation of this slot (without the system prompt, which the page owns).
  QList<StoredMessage>& messages() { return m_messages; }
  void setMessages(const QList<StoredMessage>& messages, const QString& mode);
  void clearConversation();

  // Chat: appends the user message and streams the answer. Completion: streams the continuation.
  bool send(const QString& mode, const QString& system, const QString& text, const SamplingParams& p);
  // Drops the last answer and asks again with the same messages.
  bool regenerate(const QString& mode, const QString& system, const SamplingParams& p);
  void stop();
  QString lastReply() const;

  QComboBox* modelPicker() const { return m_picker; }
  TokenView* view() const { return m_view; }
  QLabel* statusLabel() const { return m_status; }
  QLabel* statsLabel() const { return m_stats; }
  QProgressBar* progressBar() const { return m_progress; }
  ServeProcess* server() const { return m_server; }
  CompletionStream* stream() const { return m_stream; }

 Q_SIGNALS:
  void readyChanged(bool ready);
  void replyFinished();
  void statusMessage(const QString& text);

 private:
  void startRequest(const QString& mode, const QString& system, const SamplingParams& p);
  void rebuildView(const QString& mode);
  void onPicked(int index);
  void onStreamFinished();
  void updateStats();
  void setStatus(const QString& text, bool error = false);

  void onRunEvents(const QString& runId, const QVector<cluster::EventItem>& events);

  int m_index;
  cluster::Workspace* m_ws;
  cluster::JobQueue* m_queue = nullptr;
  QString m_liveRun;       // run whose checkpoint we wait for ("" = none)
  qint64 m_liveAfterSeq = 0;  // checkpoint_saved events with a larger seq answer the request
  QMetaObject::Connection m_liveConn;
  ServeProcess* m_server;
  CompletionStream* m_stream;
  QComboBox* m_picker;
  QToolButton* m_unload;
  QLabel* m_status;
  QProgressBar* m_progress;
  TokenView* m_view;
  QLabel* m_stats;
  QString m_model, m_modelId, m_error, m_mode = QStringLiteral("chat");
  QUrl m_url;
  QList<StoredMessage> m_messages;
};

}  // namespace fathom::ui
