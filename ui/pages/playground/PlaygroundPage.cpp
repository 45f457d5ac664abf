// Playground page: layout, send/stop/regenerate/copy across the model slots, parameters, history.
#include "ui/pages/playground/PlaygroundPage.h"

#include <QAction>
#include <QApplication>
#include <QCheckBox>
#include <QClipboard>
#include <QComboBox>
#include <QDir>
#include <QDoubleSpinBox>
#include <QFormLayout>
#include <QGroupBox>
#include <QHBoxLayout>
#include <QKeySequence>
#include <QLabel>
#include <QListWidget>
#include <QNetworkAccessManager>
#include <QNetworkProxy>
#include <QPlainTextEdit>
#include <QPushButton>
#include <QScrollArea>
#include <QSettings>
#include <QShortcut>
#include <QSpinBox>
#include <QSplitter>
#include <QVBoxLayout>

#include <climits>

#include "cluster/workspace/Workspace.h"
#include "ui/pages/playground/ModelSlot.h"
#include "ui/pages/playground/ServeProcess.h"
#include "ui/pages/playground/TokenView.h"

namespace fathom::ui {

PlaygroundPage::PlaygroundPage(cluster::Workspace* workspace, QWidget* parent) : QWidget(parent), m_ws(workspace) {
  setObjectName(QStringLiteral("playgroundPage"));
  m_nam = new QNetworkAccessManager(this);
  m_nam->setProxy(QNetworkProxy::NoProxy);  // the servers are on loopback; an http_proxy must not catch them
  if (m_ws && m_ws->isOpen()) m_store.setDir(QDir(m_ws->dir()).filePath(QStringLiteral("playground")));

  auto* outer = new QVBoxLayout(this);
  outer->setContentsMargins(8, 8, 8, 8);
  m_split = new QSplitter(Qt::Horizontal, this);
  m_split->setObjectName(QStringLiteral("playgroundSplit"));
  outer->addWidget(m_split);

  // Left: saved conversations.
  auto* left = new QWidget(m_split);
  auto* leftCol = new QVBoxLayout(left);
  leftCol->setContentsMargins(0, 0, 0, 0);
  m_new = new QPushButton(tr("New conversation"), left);
  m_history = new QListWidget(left);
  m_history->setObjectName(QStringLiteral("historyList"));
  m_history->setMinimumWidth(150);
  m_history->setTextElideMode(Qt::ElideRight);
  m_history->setToolTip(m_store.isValid() ? tr("Conversations saved in %1").arg(QDir::toNativeSeparators(m_store.dir()))
                                          : tr("No workspace: conversations are not saved"));
  leftCol->addWidget(m_new);
  leftCol->addWidget(m_history, 1);
  m_split->addWidget(left);

  // Middle: the model slots and the input.
  auto* mid = new QWidget(m_split);
  auto* midCol = new QVBoxLayout(mid);
  midCol->setContentsMargins(0, 0, 0, 0);
  auto* bar = new QHBoxLayout;
  m_modeBox = new QComboBox(mid);
  m_modeBox->setObjectName(QStringLiteral("modeBox"));
  m_modeBox->addItem(tr("Chat"), QStringLiteral("chat"));
  m_modeBox->addItem(tr("Raw completion"), QStringLiteral("completion"));
  m_modeBox->setToolTip(tr("Chat: messages through the model's chat template (/v1/chat/completions). Raw completion: "
                           "the text continues as it is (/v1/completions)."));
  m_compare = new QCheckBox(tr("Compare two models"), mid);
  m_compare->setObjectName(QStringLiteral("compareBox"));
  m_compare->setToolTip(tr("A second model beside the first; both answer the same prompt"));
  bar->addWidget(new QLabel(tr("Mode"), mid));
  bar->addWidget(m_modeBox);
  bar->addSpacing(12);
  bar->addWidget(m_compare);
  bar->addStretch(1);
  midCol->addLayout(bar);
  m_slotSplit = new QSplitter(Qt::Horizontal, mid);
  for (int i = 0; i < 2; ++i) {
    auto* s = new ModelSlot(i, m_ws, m_nam, m_slotSplit);
    m_slots << s;
    m_slotSplit->addWidget(s);
    connect(s, &ModelSlot::replyFinished, this, &PlaygroundPage::onReplyFinished);
    connect(s, &ModelSlot::readyChanged, this, &PlaygroundPage::updateButtons);
    connect(s, &ModelSlot::statusMessage, this, &PlaygroundPage::statusMessage);
  }
  m_slots[1]->hide();
  midCol->addWidget(m_slotSplit, 1);
  m_input = new QPlainTextEdit(mid);
  m_input->setObjectName(QStringLiteral("promptInput"));
  m_input->setPlaceholderText(tr("Type a message (Ctrl+Enter sends)"));
  m_input->setMaximumHeight(110);
  midCol->addWidget(m_input);
  auto* buttons = new QHBoxLayout;
  m_send = new QPushButton(tr("Send"), mid);
  m_send->setObjectName(QStringLiteral("sendButton"));
  m_send->setDefault(true);
  m_stop = new QPushButton(tr("Stop"), mid);
  m_stop->setObjectName(QStringLiteral("stopButton"));
  m_regenerate = new QPushButton(tr("Regenerate"), mid);
  m_regenerate->setObjectName(QStringLiteral("regenerateButton"));
  m_copy = new QPushButton(tr("Copy"), mid);
  m_copy->setObjectName(QStringLiteral("copyButton"));
  m_copy->setToolTip(tr("Copy the last reply (of the first model) to the clipboard"));
  buttons->addWidget(m_copy);
  buttons->addWidget(m_regenerate);
  buttons->addStretch(1);
  buttons->addWidget(m_stop);
  buttons->addWidget(m_send);
  midCol->addLayout(buttons);
  m_split->addWidget(mid);

  // Right: parameters.
  auto* scroll = new QScrollArea(m_split);
  scroll->setWidgetResizable(true);
  scroll->setFrameShape(QFrame::NoFrame);
  scroll->setWidget(buildParameters());
  scroll->setMinimumWidth(scroll->widget()->minimumSizeHint().width() + 24);
  m_split->addWidget(scroll);
  m_split->setStretchFactor(0, 0);
  m_split->setStretchFactor(1, 1);
  m_split->setStretchFactor(2, 0);
  m_split->setSizes({220, 900, 300});

  connect(m_send, &QPushButton::clicked, this, qOverload<>(&PlaygroundPage::send));
  connect(m_stop, &QPushButton::clicked, this, &PlaygroundPage::stop);
  connect(m_regenerate, &QPushButton::clicked, this, &PlaygroundPage::regenerate);
  connect(m_copy, &QPushButton::clicked, this, &PlaygroundPage::copyLastReply);
  connect(m_new, &QPushButton::clicked, this, &PlaygroundPage::newConversation);
  connect(m_compare, &QCheckBox::toggled, this, [this](bool on) {
    m_slots[1]->setVisible(on);
    if (!on) m_slots[1]->unload();
    updateButtons();
  });
  connect(m_modeBox, &QComboBox::currentIndexChanged, this, [this] {
    // A conversation is one mode: switching starts a new one.
    if (!m_conversation.models.isEmpty() || !m_slots[0]->messages().isEmpty()) newConversation();
    m_input->setPlaceholderText(mode() == QLatin1String("chat") ? tr("Type a message (Ctrl+Enter sends)")
                                                                 : tr("Text for the model to continue (Ctrl+Enter sends)"));
  });
  connect(m_history, &QListWidget::itemActivated, this, [this](QListWidgetItem* item) {
    loadConversation(item->data(Qt::UserRole).toString());
  });
  auto* del = new QAction(tr("Delete conversation"), m_history);
  del->setShortcut(QKeySequence::Delete);
  del->setShortcutContext(Qt::WidgetShortcut);
  connect(del, &QAction::triggered, this, [this] {
    QListWidgetItem* item = m_history->currentItem();
    if (!item) return;
    const QString id = item->data(Qt::UserRole).toString();
    m_store.remove(id);
    if (id == m_conversation.id) newConversation();
    reloadHistory();
  });
  m_history->addAction(del);
  m_history->setContextMenuPolicy(Qt::ActionsContextMenu);
  auto* sendKey = new QShortcut(QKeySequence(Qt::CTRL | Qt::Key_Return), m_input);
  sendKey->setContext(Qt::WidgetShortcut);
  connect(sendKey, &QShortcut::activated, this, qOverload<>(&PlaygroundPage::send));
  newConversation();
  reloadHistory();
  if (m_ws) {
    connect(m_ws, &cluster::Workspace::checkpointsChanged, this, [this] {
      for (ModelSlot* s : m_slots) s->reloadModels();
    });
    connect(m_ws, &cluster::Workspace::reloaded, this, [this] {
      for (ModelSlot* s : m_slots) s->reloadModels();
    });
  }
  updateButtons();
}

PlaygroundPage::~PlaygroundPage() = default;  // each slot's ServeProcess ends its child

QWidget* PlaygroundPage::buildParameters() {
  auto* panel = new QWidget;
  panel->setObjectName(QStringLiteral("parameters"));
  auto* col = new QVBoxLayout(panel);
  col->setContentsMargins(4, 0, 4, 0);
  auto* sysBox = new QGroupBox(tr("System prompt"), panel);
  auto* sysCol = new QVBoxLayout(sysBox);
  m_system = new QPlainTextEdit(sysBox);
  m_system->setObjectName(QStringLiteral("systemPrompt"));
  m_system->setPlaceholderText(tr("You are a helpful assistant."));
  m_system->setMaximumHeight(90);
  sysCol->addWidget(m_system);
  col->addWidget(sysBox);

  auto* samp = new QGroupBox(tr("Sampling"), panel);
  auto* form = new QFormLayout(samp);
  auto dspin = [samp](double lo, double hi, double step, int decimals, const QString& tip) {
    auto* s = new QDoubleSpinBox(samp);
    s->setRange(lo, hi);
    s->setSingleStep(step);
    s->setDecimals(decimals);
    s->setToolTip(tip);
    return s;
  };
  m_maxTokens = new QSpinBox(samp);
  m_maxTokens->setRange(1, 32768);
  m_maxTokens->setToolTip(tr("Tokens to generate at most"));
  m_temperature = dspin(0, 5, 0.05, 2, tr("0 = greedy (always the most likely token)"));
  m_topP = dspin(0, 1, 0.01, 2, tr("Nucleus: keep the smallest set of tokens with this much probability (1 = off)"));
  m_topK = new QSpinBox(samp);
  m_topK->setRange(0, 100000);
  m_topK->setSpecialValueText(tr("off"));
  m_topK->setToolTip(tr("Keep the k most likely tokens (0 = off)"));
  m_minP = dspin(0, 1, 0.01, 3, tr("Keep tokens with p ≥ min_p · p_max (0 = off)"));
  m_repetition = dspin(0.5, 3, 0.05, 2, tr("CTRL repetition penalty (1 = off)"));
  m_presence = dspin(-2, 2, 0.1, 2, tr("OpenAI presence penalty"));
  m_frequency = dspin(-2, 2, 0.1, 2, tr("OpenAI frequency penalty"));
  m_seed = new QSpinBox(samp);
  m_seed->setRange(-1, INT_MAX);
  m_seed->setSpecialValueText(tr("random"));
  m_seed->setToolTip(tr("Seed of the sampler; the same seed and prompt give the same reply"));
  m_stops = new QPlainTextEdit(samp);
  m_stops->setMaximumHeight(52);
  m_stops->setPlaceholderText(tr("one stop string a line"));
  m_topLogprobs = new QSpinBox(samp);
  m_topLogprobs->setRange(-1, 20);
  m_topLogprobs->setSpecialValueText(tr("off"));
  m_topLogprobs->setToolTip(tr("Alternatives per token shown on hover (logprobs); off = no token view data"));
  m_colouring = new QComboBox(samp);
  m_colouring->addItem(tr("By probability"));
  m_colouring->addItem(tr("Alternating"));
  m_colouring->setToolTip(tr("Token colours: red (unlikely) to green (likely), or alternating shades"));
  form->addRow(tr("Max tokens"), m_maxTokens);
  form->addRow(tr("Temperature"), m_temperature);
  form->addRow(tr("Top-p"), m_topP);
  form->addRow(tr("Top-k"), m_topK);
  form->addRow(tr("Min-p"), m_minP);
  form->addRow(tr("Repetition penalty"), m_repetition);
  form->addRow(tr("Presence penalty"), m_presence);
  form->addRow(tr("Frequency penalty"), m_frequency);
  form->addRow(tr("Seed"), m_seed);
  form->addRow(tr("Stop"), m_stops);
  form->addRow(tr("Top logprobs"), m_topLogprobs);
  form->addRow(tr("Token colours"), m_colouring);
  col->addWidget(samp);
  auto* reset = new QPushButton(tr("Defaults"), panel);
  reset->setToolTip(tr("Back to the default sampling parameters"));
  connect(reset, &QPushButton::clicked, this, [this] { setSamplingParams(SamplingParams{}); });
  col->addWidget(reset, 0, Qt::AlignRight);
  col->addStretch(1);
  connect(m_colouring, &QComboBox::currentIndexChanged, this, [this](int i) {
    for (ModelSlot* s : m_slots) s->view()->setColouring(i == 0 ? TokenView::Colouring::ByProbability : TokenView::Colouring::Alternating);
  });
  setSamplingParams(SamplingParams{});
  return panel;
}

void PlaygroundPage::setJobQueue(cluster::JobQueue* queue) {
  for (ModelSlot* s : m_slots) s->setJobQueue(queue);
}

void PlaygroundPage::setEngineBinary(const QString& path) {
  for (ModelSlot* s : m_slots) s->setEngineBinary(path);
}

bool PlaygroundPage::compareMode() const { return m_compare->isChecked(); }
void PlaygroundPage::setCompareMode(bool on) { m_compare->setChecked(on); }
QString PlaygroundPage::mode() const { return m_modeBox->currentData().toString(); }
void PlaygroundPage::setMode(const QString& mode) { m_modeBox->setCurrentIndex(std::max(0, m_modeBox->findData(mode))); }
QString PlaygroundPage::systemPrompt() const { return m_system->toPlainText(); }
void PlaygroundPage::setSystemPrompt(const QString& text) { m_system->setPlainText(text); }

SamplingParams PlaygroundPage::samplingParams() const {
  SamplingParams p;
  p.maxTokens = m_maxTokens->value();
  p.temperature = m_temperature->value();
  p.topP = m_topP->value();
  p.topK = m_topK->value();
  p.minP = m_minP->value();
  p.repetitionPenalty = m_repetition->value();
  p.presencePenalty = m_presence->value();
  p.frequencyPenalty = m_frequency->value();
  p.seed = m_seed->value();
  for (const QString& s : m_stops->toPlainText().split(QLatin1Char('\n')))
    if (!s.isEmpty()) p.stop << QString(s).replace(QLatin1String("\\n"), QLatin1String("\n"));
  p.topLogprobs = m_topLogprobs->value();
  return p;
}

void PlaygroundPage::setSamplingParams(const SamplingParams& p) {
  m_maxTokens->setValue(p.maxTokens);
  m_temperature->setValue(p.temperature);
  m_topP->setValue(p.topP);
  m_topK->setValue(p.topK);
  m_minP->setValue(p.minP);
  m_repetition->setValue(p.repetitionPenalty);
  m_presence->setValue(p.presencePenalty);
  m_frequency->setValue(p.frequencyPenalty);
  m_seed->setValue(int(std::clamp<qint64>(p.seed, -1, INT_MAX)));
  QStringList stops;
  for (QString s : p.stop) stops << s.replace(QLatin1Char('\n'), QLatin1String("\\n"));
  m_stops->setPlainText(stops.join(QLatin1Char('\n')));
  m_topLogprobs->setValue(p.topLogprobs);
}

QList<ModelSlot*> PlaygroundPage::activeSlots() const {
  QList<ModelSlot*> out{m_slots[0]};
  if (compareMode()) out << m_slots[1];
  return out;
}

bool PlaygroundPage::isBusy() const {
  for (ModelSlot* s : m_slots)
    if (s->isBusy()) return true;
  return false;
}

void PlaygroundPage::openModel(const QString& dir) {
  m_slots[0]->openModel(dir);
  Q_EMIT statusMessage(tr("Loading %1 in the Playground…").arg(QDir::toNativeSeparators(dir)));
}

bool PlaygroundPage::send() {
  const QString text = m_input->toPlainText();
  if (!send(text)) return false;
  m_input->clear();
  return true;
}

bool PlaygroundPage::send(const QString& text) {
  if (text.trimmed().isEmpty() || isBusy()) return false;
  const SamplingParams p = samplingParams();
  m_pending = 0;
  QStringList notReady;
  for (ModelSlot* s : activeSlots()) {
    if (s->send(mode(), systemPrompt(), text, p)) ++m_pending;
    else notReady << tr("model %1").arg(m_slots.indexOf(s) + 1);
  }
  if (!notReady.isEmpty()) Q_EMIT statusMessage(tr("Not sent to %1: no model is ready there").arg(notReady.join(QStringLiteral(", "))));
  if (m_conversation.title.isEmpty()) m_conversation.title = text.simplified().left(60);
  updateButtons();
  return m_pending > 0;
}

bool PlaygroundPage::regenerate() {
  if (isBusy()) return false;
  const SamplingParams p = samplingParams();
  m_pending = 0;
  for (ModelSlot* s : activeSlots())
    if (s->regenerate(mode(), systemPrompt(), p)) ++m_pending;
  updateButtons();
  return m_pending > 0;
}

void PlaygroundPage::stop() {
  for (ModelSlot* s : m_slots) s->stop();
}

void PlaygroundPage::copyLastReply() const {
  for (ModelSlot* s : activeSlots()) {
    const QString r = s->lastReply();
    if (!r.isEmpty()) {
      QApplication::clipboard()->setText(r);
      return;
    }
  }
}

void PlaygroundPage::onReplyFinished() {
  if (m_pending > 0) --m_pending;
  updateButtons();
  if (m_pending > 0) return;
  saveConversation();
  Q_EMIT exchangeFinished();
}

void PlaygroundPage::saveConversation() {
  m_conversation.mode = mode();
  m_conversation.system = systemPrompt();
  m_conversation.params = samplingParams().toJson();
  m_conversation.models.clear();
  for (ModelSlot* s : activeSlots()) m_conversation.models << StoredSlot{s->model(), s->modelId(), s->messages()};
  if (!m_store.isValid()) return;
  if (!m_store.save(m_conversation)) {
    Q_EMIT statusMessage(m_store.error());
    return;
  }
  reloadHistory();
}

void PlaygroundPage::newConversation() {
  stop();
  m_conversation = Conversation{};
  m_conversation.mode = mode();
  for (ModelSlot* s : m_slots) s->setMessages({}, mode());
  m_history->clearSelection();
  updateButtons();
}

bool PlaygroundPage::loadConversation(const QString& id) {
  Conversation c;
  if (!m_store.load(id, &c)) {
    Q_EMIT statusMessage(m_store.error());
    return false;
  }
  stop();
  m_modeBox->blockSignals(true);
  setMode(c.mode);
  m_modeBox->blockSignals(false);
  m_conversation = c;
  setSystemPrompt(c.system);
  if (!c.params.isEmpty()) {
    SamplingParams p = SamplingParams::fromJson(c.params);
    p.topLogprobs = m_topLogprobs->value();
    setSamplingParams(p);
  }
  m_compare->setChecked(c.models.size() > 1);
  for (int i = 0; i < m_slots.size(); ++i) {
    m_slots[i]->setMessages(i < c.models.size() ? c.models[i].messages : QList<StoredMessage>{}, c.mode);
    // The model it talked to is offered again, not started: loading is the user's choice.
    if (i < c.models.size() && !m_slots[i]->isReady() && !c.models[i].model.isEmpty() && QFileInfo::exists(c.models[i].model)) {
      const int at = m_slots[i]->modelPicker()->findData(c.models[i].model);
      if (at >= 0) m_slots[i]->modelPicker()->setCurrentIndex(at);
    }
  }
  updateButtons();
  return true;
}

void PlaygroundPage::reloadHistory() {
  m_history->clear();
  for (const Conversation& c : m_store.list()) {
    auto* item = new QListWidgetItem(c.title.isEmpty() ? tr("(untitled)") : c.title, m_history);
    item->setData(Qt::UserRole, c.id);
    QStringList models;
    for (const StoredSlot& s : c.models) models << QFileInfo(s.model).fileName();
    item->setToolTip(tr("%1 · %2 · %3").arg(c.updated.toString(QStringLiteral("yyyy-MM-dd HH:mm")), c.mode, models.join(QStringLiteral(" vs "))));
    if (c.id == m_conversation.id) item->setSelected(true);
  }
}

void PlaygroundPage::updateButtons() {
  bool anyReady = false, anyReply = false;
  for (ModelSlot* s : activeSlots()) {
    anyReady = anyReady || s->isReady();
    anyReply = anyReply || !s->lastReply().isEmpty() || !s->messages().isEmpty();
  }
  const bool busy = isBusy();
  m_send->setEnabled(anyReady && !busy);
  m_stop->setEnabled(busy);
  m_regenerate->setEnabled(anyReady && !busy && anyReply);
  m_copy->setEnabled(anyReply);
}

void PlaygroundPage::saveState(QSettings& settings) const {
  settings.setValue(QStringLiteral("playground/split"), m_split->saveState());
  settings.setValue(QStringLiteral("playground/slotSplit"), m_slotSplit->saveState());
  settings.setValue(QStringLiteral("playground/params"), samplingParams().toJson().toVariantMap());
  settings.setValue(QStringLiteral("playground/topLogprobs"), m_topLogprobs->value());
  settings.setValue(QStringLiteral("playground/system"), systemPrompt());
}

void PlaygroundPage::restoreState(const QSettings& settings) {
  m_split->restoreState(settings.value(QStringLiteral("playground/split")).toByteArray());
  m_slotSplit->restoreState(settings.value(QStringLiteral("playground/slotSplit")).toByteArray());
  const QVariantMap params = settings.value(QStringLiteral("playground/params")).toMap();
  if (!params.isEmpty()) {
    SamplingParams p = SamplingParams::fromJson(QJsonObject::fromVariantMap(params));
    p.topLogprobs = settings.value(QStringLiteral("playground/topLogprobs"), p.topLogprobs).toInt();
    setSamplingParams(p);
  }
  setSystemPrompt(settings.value(QStringLiteral("playground/system")).toString());
}

}  // namespace fathom::ui
