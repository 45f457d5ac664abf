// ModelSlot: one served model of the Playground; see ModelSlot.h.
#include "ui/pages/playground/ModelSlot.h"

#include <QAbstractItemView>
#include <QComboBox>
#include <QDir>
#include <QFileDialog>
#include <QFileInfo>
#include <QHBoxLayout>
#include <QHash>
#include <QJsonDocument>
#include <QJsonObject>
#include <QTimer>
#include <QLabel>
#include <QProgressBar>
#include <QRegularExpression>
#include <QStandardItemModel>
#include <QToolButton>
#include <QVBoxLayout>

#include "cluster/jobs/JobQueue.h"
#include "cluster/jobs/RunSession.h"
#include "cluster/workspace/Workspace.h"
#include "ui/Format.h"
#include "ui/Theme.h"
#include "ui/pages/playground/ServeProcess.h"
#include "ui/pages/playground/TokenView.h"

namespace fathom::ui {

namespace {
const QString kHfItem = QStringLiteral("\x01hf");
const QString kLiveItem = QStringLiteral("\x01live");
}  // namespace

ModelSlot::ModelSlot(int index, cluster::Workspace* workspace, QNetworkAccessManager* nam, QWidget* parent)
    : QWidget(parent), m_index(index), m_ws(workspace) {
  setObjectName(QStringLiteral("modelSlot%1").arg(index));
  m_server = new ServeProcess(this);
  m_stream = new CompletionStream(nam, this);

  auto* col = new QVBoxLayout(this);
  col->setContentsMargins(0, 0, 0, 0);
  auto* top = new QHBoxLayout;
  m_picker = new QComboBox(this);
  m_picker->setObjectName(QStringLiteral("modelPicker"));
  m_picker->setSizeAdjustPolicy(QComboBox::AdjustToMinimumContentsLengthWithIcon);
  m_picker->setMinimumContentsLength(16);
  m_picker->setToolTip(tr("The model to serve: a checkpoint or LoRA adapter of the registry, or a Hugging Face folder"));
  m_unload = new QToolButton(this);
  m_unload->setObjectName(QStringLiteral("unloadButton"));
  m_unload->setText(tr("Unload"));
  m_unload->setToolTip(tr("Stop this model's fathom-engine serve process"));
  m_unload->setEnabled(false);
  top->addWidget(m_picker, 1);
  top->addWidget(m_unload);
  col->addLayout(top);
  auto* statusRow = new QHBoxLayout;
  m_status = new QLabel(tr("No model loaded"), this);
  m_status->setObjectName(QStringLiteral("serveStatus"));
  m_status->setTextInteractionFlags(Qt::TextSelectableByMouse);
  m_status->setWordWrap(true);
  m_progress = new QProgressBar(this);
  m_progress->setRange(0, 0);
  m_progress->setMaximumWidth(140);
  m_progress->setMaximumHeight(12);
  m_progress->setTextVisible(false);
  m_progress->hide();
  statusRow->addWidget(m_status, 1);
  statusRow->addWidget(m_progress);
  col->addLayout(statusRow);
  m_view = new TokenView(this);
  col->addWidget(m_view, 1);
  m_stats = new QLabel(this);
  m_stats->setObjectName(QStringLiteral("replyStats"));
  m_stats->setTextInteractionFlags(Qt::TextSelectableByMouse);
  col->addWidget(m_stats);

  reloadModels();
  connect(m_picker, &QComboBox::activated, this, &ModelSlot::onPicked);
  connect(m_unload, &QToolButton::clicked, this, &ModelSlot::unload);
  connect(m_server, &ServeProcess::progress, this, [this](const QString& line) {
    if (m_server->state() != ServeProcess::State::Loading) return;  // later stderr lines are logs, not progress
    static const QRegularExpression pct(QStringLiteral("(\\d{1,3}(?:\\.\\d+)?)\\s*%"));
    const QRegularExpressionMatch m = pct.match(line);
    if (m.hasMatch()) {
      m_progress->setRange(0, 100);
      m_progress->setValue(int(m.captured(1).toDouble()));
    }
    setStatus(tr("Loading: %1").arg(line));
  });
  connect(m_server, &ServeProcess::ready, this, [this](const QUrl& url, const QString& id) {
    m_url = url;
    m_modelId = id;
    m_progress->hide();
    setStatus(tr("Ready: %1 at %2").arg(id.isEmpty() ? QFileInfo(m_model).fileName() : id, url.toString()));
    Q_EMIT readyChanged(true);
  });
  connect(m_server, &ServeProcess::failed, this, [this](const QString& error) {
    const bool was = m_url.isValid();
    m_url.clear();
    m_error = error;
    m_progress->hide();
    m_unload->setEnabled(false);
    setStatus(tr("fathom-engine serve: %1").arg(error), true);
    if (m_stream->isRunning()) m_stream->abort();
    if (was) Q_EMIT readyChanged(false);
    Q_EMIT statusMessage(tr("Model %1: %2").arg(m_index + 1).arg(error));
  });
  connect(m_stream, &CompletionStream::deltaReceived, this, [this](const QString& text, const QList<StreamToken>& tokens) {
    m_view->appendDelta(text, tokens);
    updateStats();
  });
  connect(m_stream, &CompletionStream::finished, this, &ModelSlot::onStreamFinished);
}

ModelSlot::~ModelSlot() = default;

void ModelSlot::setEngineBinary(const QString& path) { m_server->setEngineBinary(path); }

void ModelSlot::setJobQueue(cluster::JobQueue* queue) {
  m_queue = queue;
  if (queue) connect(queue, &cluster::JobQueue::jobsChanged, this, [this] {
      if (!m_picker->view()->isVisible()) reloadModels();
    });
  reloadModels();
}

bool ModelSlot::openLiveWeights(const QString& runId) {
  cluster::RunSession* session = m_queue && m_queue->runningIds().contains(runId) ? m_queue->session(runId) : nullptr;
  QString err;
  if (!session) err = tr("%1 is not running: its live weights cannot be asked for").arg(runId);
  // Events of this run seen so far: only a checkpoint saved after the request answers it.
  qint64 lastSeq = 0;
  if (session && m_ws)
    for (const cluster::EventItem& e : m_ws->events().list(runId, QStringLiteral("checkpoint_saved"))) lastSeq = std::max(lastSeq, e.seq);
  if (session && !session->requestCheckpoint(&err) && err.isEmpty()) err = tr("the run did not accept the checkpoint request");
  if (!err.isEmpty()) {
    m_error = err;
    setStatus(err, true);
    reloadModels();
    return false;
  }
  if (m_stream->isRunning()) m_stream->abort();
  m_server->stop();
  const bool was = m_url.isValid();
  m_url.clear();
  if (was) Q_EMIT readyChanged(false);
  m_liveRun = runId;
  m_liveAfterSeq = lastSeq;
  disconnect(m_liveConn);
  m_liveConn = connect(session, &cluster::RunSession::eventsAppended, this, &ModelSlot::onRunEvents);
  m_progress->setRange(0, 0);
  m_progress->show();
  setStatus(tr("Asked %1 for a checkpoint of its live weights; waiting for the engine to save it…").arg(runId));
  // A run that never answers (stuck, or ending) must not leave the slot waiting forever.
  QTimer::singleShot(180000, this, [this, runId] {
    if (m_liveRun != runId) return;
    m_liveRun.clear();
    disconnect(m_liveConn);
    m_progress->hide();
    m_error = tr("%1 did not save a checkpoint within 3 minutes").arg(runId);
    setStatus(m_error, true);
  });
  return true;
}

void ModelSlot::onRunEvents(const QString& runId, const QVector<cluster::EventItem>& events) {
  if (runId != m_liveRun) return;
  for (const cluster::EventItem& e : events) {
    if (e.name != QLatin1String("checkpoint_saved") || e.seq <= m_liveAfterSeq || e.rank != 0) continue;
    const QJsonObject d = QJsonDocument::fromJson(e.json.toUtf8()).object();
    QString path = d.value(QStringLiteral("path")).toString();
    if (path.isEmpty()) continue;
    if (QFileInfo(path).isRelative()) {
      const auto run = m_ws ? m_ws->runs().get(runId) : std::nullopt;
      if (run) path = QDir(run->runDir).filePath(path);
    }
    m_liveRun.clear();
    disconnect(m_liveConn);
    openModel(path);
    setStatus(tr("Live weights of %1 at step %2: starting fathom-engine serve…").arg(runId).arg(e.step));
    return;
  }
}

void ModelSlot::reloadModels() {
  const QString current = m_picker->currentData().toString();
  m_picker->blockSignals(true);
  m_picker->clear();
  m_picker->addItem(tr("Choose a model…"), QString());
  if (m_ws && m_ws->isOpen()) {
    QHash<QString, QString> names;
    for (const cluster::CheckpointRecord& c : m_ws->checkpoints().listAll()) {
      if (!c.isWhole()) continue;
      if (!names.contains(c.runId)) {
        const auto run = m_ws->runs().get(c.runId);
        names.insert(c.runId, run && !run->name.isEmpty() && run->name != c.runId ? QStringLiteral("%1 (%2)").arg(c.runId, run->name) : c.runId);
      }
      const QString label = c.lora ? tr("%1 · step %2 · LoRA adapter r%3").arg(names.value(c.runId)).arg(c.step).arg(c.loraR)
                                   : tr("%1 · step %2").arg(names.value(c.runId)).arg(c.step);
      m_picker->addItem(label, QFileInfo(c.path).absoluteFilePath());
      m_picker->setItemData(m_picker->count() - 1, QDir::toNativeSeparators(c.path), Qt::ToolTipRole);
    }
  }
  if (!m_model.isEmpty() && m_picker->findData(m_model) < 0) {
    m_picker->addItem(tr("Folder: %1").arg(QFileInfo(m_model).fileName()), m_model);
    m_picker->setItemData(m_picker->count() - 1, QDir::toNativeSeparators(m_model), Qt::ToolTipRole);
  }
  m_picker->addItem(tr("Hugging Face folder…"), kHfItem);
  const QStringList running = m_queue ? m_queue->runningIds() : QStringList();
  for (const QString& id : running) {
    m_picker->addItem(tr("Live weights: %1 (training now)").arg(id), QString(kLiveItem + id));
    m_picker->setItemData(m_picker->count() - 1,
                          tr("Asks the run for a checkpoint of its current weights (through its control channel) and serves it"),
                          Qt::ToolTipRole);
  }
  if (running.isEmpty()) {
    m_picker->addItem(tr("Live weights of a running run (none is running)"), kLiveItem);
    if (auto* model = qobject_cast<QStandardItemModel*>(m_picker->model())) {
      QStandardItem* live = model->item(m_picker->count() - 1);
      live->setEnabled(false);
      live->setToolTip(tr("Start a training run: while it runs, its current weights can be served here"));
    }
  }
  const int at = m_picker->findData(m_model.isEmpty() ? current : m_model);
  m_picker->setCurrentIndex(at < 0 ? 0 : at);
  m_picker->blockSignals(false);
}

void ModelSlot::onPicked(int index) {
  const QString data = m_picker->itemData(index).toString();
  if (data == kLiveItem) return;
  if (data.startsWith(kLiveItem)) {
    openLiveWeights(data.mid(kLiveItem.size()));
    return;
  }
  if (data == kHfItem) {
    const QString dir = QFileDialog::getExistingDirectory(this, tr("Hugging Face model folder"), QDir::homePath());
    if (dir.isEmpty()) {
      reloadModels();  // back to what was selected
      return;
    }
    openModel(dir);
    return;
  }
  if (data.isEmpty()) {
    unload();
    return;
  }
  if (data != m_model || !m_server->isReady()) openModel(data);
}

void ModelSlot::openModel(const QString& dir) {
  const QString abs = QFileInfo(dir).absoluteFilePath();
  if (m_stream->isRunning()) m_stream->abort();
  const bool was = m_url.isValid();
  m_url.clear();
  m_modelId.clear();
  m_error.clear();
  m_model = abs;
  reloadModels();
  if (was) Q_EMIT readyChanged(false);
  m_progress->setRange(0, 0);
  m_progress->show();
  m_unload->setEnabled(true);
  setStatus(tr("Starting fathom-engine serve %1…").arg(QDir::toNativeSeparators(abs)));
  if (!m_server->start(abs)) {
    m_error = m_server->error();
    m_progress->hide();
    m_unload->setEnabled(false);
    setStatus(m_error, true);
  }
}

void ModelSlot::connectToServer(const QUrl& baseUrl, const QString& modelId) {
  m_server->stop();
  m_url = baseUrl;
  m_modelId = modelId;
  m_model = modelId;
  m_error.clear();
  m_progress->hide();
  m_unload->setEnabled(false);
  setStatus(tr("Ready: %1 at %2").arg(modelId, baseUrl.toString()));
  Q_EMIT readyChanged(true);
}

void ModelSlot::unload() {
  if (m_stream->isRunning()) m_stream->abort();
  const bool was = m_url.isValid();
  m_server->stop();
  m_url.clear();
  m_model.clear();
  m_modelId.clear();
  m_progress->hide();
  m_unload->setEnabled(false);
  reloadModels();
  setStatus(tr("No model loaded"));
  if (was) Q_EMIT readyChanged(false);
}

bool ModelSlot::isReady() const { return m_url.isValid(); }

bool ModelSlot::isBusy() const { return m_stream->isRunning(); }

void ModelSlot::setStatus(const QString& text, bool error) {
  m_status->setText(text);
  m_status->setToolTip(text);
  QPalette pal = m_status->palette();
  pal.setColor(QPalette::WindowText, error ? Theme::instance()->statusColor(QStringLiteral("failed")) : palette().color(QPalette::WindowText));
  m_status->setPalette(pal);
}

void ModelSlot::setMessages(const QList<StoredMessage>& messages, const QString& mode) {
  if (m_stream->isRunning()) m_stream->abort();
  m_messages = messages;
  m_mode = mode;
  rebuildView(mode);
  m_stats->clear();
}

void ModelSlot::clearConversation() { setMessages({}, m_mode); }

void ModelSlot::rebuildView(const QString& mode) {
  m_view->clear();
  for (const StoredMessage& m : m_messages) {
    if (mode == QLatin1String("completion")) m_view->appendMessage(m.role == QLatin1String("user") ? QStringLiteral("prompt") : QStringLiteral("completion"), m.content);
    else m_view->appendMessage(m.role, m.content);
  }
}

bool ModelSlot::send(const QString& mode, const QString& system, const QString& text, const SamplingParams& p) {
  if (!isReady() || isBusy()) return false;
  m_mode = mode;
  if (mode == QLatin1String("completion")) {
    m_messages.clear();  // raw completion: one prompt and its continuation at a time
    m_view->clear();
  }
  m_messages << StoredMessage{QStringLiteral("user"), text};
  m_view->appendMessage(mode == QLatin1String("completion") ? QStringLiteral("prompt") : QStringLiteral("user"), text);
  startRequest(mode, system, p);
  return true;
}

bool ModelSlot::regenerate(const QString& mode, const QString& system, const SamplingParams& p) {
  if (!isReady() || isBusy()) return false;
  while (!m_messages.isEmpty() && m_messages.constLast().role == QLatin1String("assistant")) m_messages.removeLast();
  if (m_messages.isEmpty()) return false;
  m_mode = mode;
  rebuildView(mode);
  startRequest(mode, system, p);
  return true;
}

void ModelSlot::startRequest(const QString& mode, const QString& system, const SamplingParams& p) {
  m_view->beginReply(mode == QLatin1String("completion") ? QStringLiteral("completion") : QStringLiteral("assistant"));
  m_stats->setText(tr("Waiting for the first token…"));
  const QString model = m_modelId.isEmpty() ? m_model : m_modelId;
  if (mode == QLatin1String("completion")) {
    m_stream->start(m_url, QStringLiteral("/v1/completions"), CompletionStream::completionBody(model, m_messages.constLast().content, p, true));
  } else {
    QList<ChatMessage> msgs;
    if (!system.trimmed().isEmpty()) msgs << ChatMessage{QStringLiteral("system"), system};
    for (const StoredMessage& m : m_messages) msgs << ChatMessage{m.role, m.content};
    m_stream->start(m_url, QStringLiteral("/v1/chat/completions"), CompletionStream::chatBody(model, msgs, p, true));
  }
}

void ModelSlot::stop() {
  if (m_stream->isRunning()) m_stream->abort();
}

QString ModelSlot::lastReply() const {
  for (auto it = m_messages.crbegin(); it != m_messages.crend(); ++it)
    if (it->role == QLatin1String("assistant")) return it->content;
  return {};
}

void ModelSlot::updateStats() {
  const CompletionStream* s = m_stream;
  QStringList parts;
  const double tps = s->tokensPerSecond();
  parts << (tps > 0 ? formatTokensPerSecond(tps) : tr("— tok/s"));
  if (s->timeToFirstTokenMs() >= 0) parts << tr("first token %1 ms").arg(s->timeToFirstTokenMs(), 0, 'f', 0);
  parts << tr("%n tokens", nullptr, s->completionTokens());
  if (!s->isRunning() && !s->finishReason().isEmpty()) parts << tr("finish: %1").arg(s->finishReason());
  m_stats->setText(parts.join(QStringLiteral(" · ")));
}

void ModelSlot::onStreamFinished() {
  const CompletionStream* s = m_stream;
  updateStats();
  if (!s->error().isEmpty()) {
    m_view->appendNote(s->error(), true);
    m_stats->setText(tr("Failed: %1").arg(s->error()));
    Q_EMIT statusMessage(tr("Model %1: %2").arg(m_index + 1).arg(s->error()));
  } else if (s->wasAborted()) {
    m_view->appendNote(tr("(stopped)"));
  }
  if (!s->text().isEmpty() || s->error().isEmpty()) {
    StoredMessage m{QStringLiteral("assistant"), s->text()};
    m.tokens = s->completionTokens();
    m.ttftMs = s->timeToFirstTokenMs();
    m.tokensPerSecond = s->tokensPerSecond();
    m.finishReason = s->finishReason();
    m_messages << m;
  }
  Q_EMIT replyFinished();
}

}  // namespace fathom::ui
