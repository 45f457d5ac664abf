// The Playground (issue 7): talk to a model served by a `fathom-engine serve` child. Reads like LM
// Studio's chat — saved conversations on the left, the conversation (token-coloured, hover for
// logprobs) in the middle, sampling parameters on the right with sane defaults, tokens/s and time
// to first token under each reply. Chat or raw-completion mode; Stop, Regenerate, Copy; compare
// puts a second model beside the first and sends both the same prompt. History is one JSON file
// per conversation under <workspace>/playground/.
#pragma once

#include <QWidget>

#include "ui/pages/playground/CompletionStream.h"
#include "ui/pages/playground/ConversationStore.h"

class QCheckBox;
class QComboBox;
class QDoubleSpinBox;
class QListWidget;
class QNetworkAccessManager;
class QPlainTextEdit;
class QPushButton;
class QSettings;
class QSpinBox;
class QSplitter;

namespace fathom::cluster {
class JobQueue;
class Workspace;
}

namespace fathom::ui {

class ModelSlot;

class PlaygroundPage : public QWidget {
  Q_OBJECT
 public:
  explicit PlaygroundPage(cluster::Workspace* workspace, QWidget* parent = nullptr);
  ~PlaygroundPage() override;  // stops the serve children

  void setEngineBinary(const QString& path);
  // Running runs of this queue are offered as live weights.
  void setJobQueue(cluster::JobQueue* queue);

  ModelSlot* slot(int i) const { return m_slots.value(i); }
  bool compareMode() const;
  void setCompareMode(bool on);
  QString mode() const;  // "chat" | "completion"
  void setMode(const QString& mode);

  SamplingParams samplingParams() const;
  void setSamplingParams(const SamplingParams& p);
  QString systemPrompt() const;
  void setSystemPrompt(const QString& text);

  // Sends the input box's text to the ready model(s). False when nothing could be sent.
  bool send();
  bool send(const QString& text);
  void stop();
  bool regenerate();
  void copyLastReply() const;
  bool isBusy() const;

  void newConversation();
  bool loadConversation(const QString& id);
  QString conversationId() const { return m_conversation.id; }
  ConversationStore& store() { return m_store; }

  QPlainTextEdit* input() const { return m_input; }
  QPushButton* sendButton() const { return m_send; }
  QPushButton* stopButton() const { return m_stop; }
  QPushButton* regenerateButton() const { return m_regenerate; }
  QPushButton* copyButton() const { return m_copy; }
  QListWidget* historyList() const { return m_history; }

  void saveState(QSettings& settings) const;
  void restoreState(const QSettings& settings);

 public Q_SLOTS:
  // Serves a checkpoint, run, adapter or Hugging Face directory in the first model slot.
  void openModel(const QString& dir);

 Q_SIGNALS:
  // Every slot that was asked has answered (or stopped, or failed); the history file is written.
  void exchangeFinished();
  void statusMessage(const QString& text);

 private:
  QWidget* buildParameters();
  void onReplyFinished();
  void saveConversation();
  void reloadHistory();
  void updateButtons();
  QList<ModelSlot*> activeSlots() const;

  cluster::Workspace* m_ws;
  QNetworkAccessManager* m_nam;
  ConversationStore m_store;
  Conversation m_conversation;
  QList<ModelSlot*> m_slots;
  int m_pending = 0;

  QSplitter* m_split = nullptr;
  QSplitter* m_slotSplit = nullptr;
  QListWidget* m_history = nullptr;
  QComboBox* m_modeBox = nullptr;
  QCheckBox* m_compare = nullptr;
  QPlainTextEdit* m_input = nullptr;
  QPushButton *m_send = nullptr, *m_stop = nullptr, *m_regenerate = nullptr, *m_copy = nullptr, *m_new = nullptr;
  QPlainTextEdit* m_system = nullptr;
  QSpinBox *m_maxTokens = nullptr, *m_topK = nullptr, *m_seed = nullptr, *m_topLogprobs = nullptr;
  QDoubleSpinBox *m_temperature = nullptr, *m_topP = nullptr, *m_minP = nullptr, *m_presence = nullptr, *m_frequency = nullptr,
                 *m_repetition = nullptr;
  QPlainTextEdit* m_stops = nullptr;
  QComboBox* m_colouring = nullptr;
};

}  // namespace fathom::ui
