// ServeProcess: a `fathom-engine serve` child; see ServeProcess.h.
#include "ui/pages/playground/ServeProcess.h"

#include <QJsonDocument>
#include <QJsonObject>
#include <QTimer>

#include "cluster/launch/LocalLauncher.h"

namespace fathom::ui {

ServeProcess::ServeProcess(QObject* parent) : QObject(parent) {}

ServeProcess::~ServeProcess() {
  if (m_proc && m_proc->state() != QProcess::NotRunning) {
    m_proc->disconnect(this);
    m_proc->terminate();
    if (!m_proc->waitForFinished(3000)) {
      m_proc->kill();
      m_proc->waitForFinished(2000);
    }
  }
}

qint64 ServeProcess::processId() const { return m_proc ? m_proc->processId() : 0; }

bool ServeProcess::isUnknownCommand(const QString& text) {
  const QString t = text.toLower();
  return t.contains(QLatin1String("unknown command")) || t.contains(QLatin1String("unknown subcommand"));
}

bool ServeProcess::start(const QString& model) {
  stop();
  QString why;
  const QString binary = cluster::LocalLauncher::findEngineBinary(m_binary, &why);
  m_model = model;
  m_modelId.clear();
  m_url.clear();
  m_out.clear();
  m_err.clear();
  m_errPartial.clear();
  m_lastProgress.clear();
  if (binary.isEmpty()) {
    m_error = why.isEmpty() ? tr("fathom-engine was not found; set FATHOM_ENGINE_BIN") : why;
    m_state = State::Failed;
    return false;
  }
  m_error.clear();
  m_stopping = false;
  m_state = State::Loading;
  m_proc = new QProcess(this);
  QProcessEnvironment env = QProcessEnvironment::systemEnvironment();
  if (!env.contains(QStringLiteral("OMP_WAIT_POLICY"))) env.insert(QStringLiteral("OMP_WAIT_POLICY"), QStringLiteral("PASSIVE"));
  m_proc->setProcessEnvironment(env);
  m_args = QStringList{QStringLiteral("serve"), model, QStringLiteral("--host"), QStringLiteral("127.0.0.1"), QStringLiteral("--port"),
                       QStringLiteral("0")} +
           m_extra;
  QProcess* p = m_proc;
  connect(p, &QProcess::readyReadStandardOutput, this, [this, p] { if (p == m_proc) onStdout(); });
  connect(p, &QProcess::readyReadStandardError, this, [this, p] { if (p == m_proc) onStderr(); });
  connect(p, &QProcess::finished, this, [this, p](int code, QProcess::ExitStatus st) {
    if (p == m_proc) onFinished(code, st);
    p->deleteLater();
  });
  connect(p, &QProcess::errorOccurred, this, [this, p](QProcess::ProcessError e) {
    if (p != m_proc || e != QProcess::FailedToStart) return;
    m_state = State::Failed;
    m_error = tr("cannot run %1: %2").arg(p->program(), p->errorString());
    m_proc = nullptr;
    p->deleteLater();
    Q_EMIT failed(m_error);
  });
  m_proc->start(binary, m_args);
  return true;
}

void ServeProcess::stop() {
  if (!m_proc) {
    if (m_state != State::Failed) m_state = State::Stopped;
    return;
  }
  QProcess* p = m_proc;
  m_proc = nullptr;  // its signals no longer reach this object's state
  m_state = State::Stopped;
  m_url.clear();
  if (p->state() != QProcess::NotRunning) {
    p->terminate();
    QTimer::singleShot(3000, p, [p] {
      if (p->state() != QProcess::NotRunning) p->kill();
    });
  } else {
    p->deleteLater();
  }
  Q_EMIT stopped();
}

void ServeProcess::onStdout() {
  m_out += m_proc->readAllStandardOutput();
  for (;;) {
    const qsizetype nl = m_out.indexOf('\n');
    if (nl < 0) break;
    const QByteArray line = m_out.left(nl).trimmed();
    m_out.remove(0, nl + 1);
    const QJsonObject o = QJsonDocument::fromJson(line).object();
    if (o.value(QStringLiteral("event")).toString() != QLatin1String("listening") || m_state != State::Loading) continue;
    const QString host = o.value(QStringLiteral("host")).toString(QStringLiteral("127.0.0.1"));
    const int port = o.value(QStringLiteral("port")).toInt();
    m_url = QUrl(QStringLiteral("http://%1:%2").arg(host == QLatin1String("0.0.0.0") ? QStringLiteral("127.0.0.1") : host).arg(port));
    m_modelId = o.value(QStringLiteral("model")).toString();
    m_state = State::Ready;
    Q_EMIT ready(m_url, m_modelId);
  }
}

void ServeProcess::onStderr() {
  const QByteArray chunk = m_proc->readAllStandardError();
  m_err += chunk;
  if (m_err.size() > 256 * 1024) m_err = m_err.right(128 * 1024);
  m_errPartial += chunk;
  for (;;) {  // progress lines end in \n or \r (a terminal progress bar)
    const qsizetype nl = m_errPartial.indexOf('\n'), cr = m_errPartial.indexOf('\r');
    const qsizetype end = nl < 0 ? cr : (cr < 0 ? nl : std::min(nl, cr));
    if (end < 0) break;
    const QString line = QString::fromUtf8(m_errPartial.left(end)).trimmed();
    m_errPartial.remove(0, end + 1);
    if (line.isEmpty()) continue;
    m_lastProgress = line;
    Q_EMIT progress(line);
  }
}

void ServeProcess::onFinished(int code, QProcess::ExitStatus status) {
  m_err += m_proc->readAllStandardError();
  m_proc = nullptr;
  const bool wasReady = m_state == State::Ready;
  m_state = State::Failed;
  m_url.clear();
  // The engine's own words: the "unknown command" line alone, else its last stderr lines.
  const QString text = QString::fromUtf8(m_err);
  QStringList lines = text.split(QLatin1Char('\n'), Qt::SkipEmptyParts);
  QString tail;
  for (const QString& l : lines)
    if (isUnknownCommand(l)) tail = l.trimmed();
  if (tail.isEmpty()) {
    if (lines.size() > 8) lines = lines.mid(lines.size() - 8);
    tail = lines.join(QLatin1Char('\n')).trimmed();
  }
  if (status != QProcess::NormalExit)
    m_error = tr("fathom-engine serve crashed%1").arg(tail.isEmpty() ? QString() : QStringLiteral(": ") + tail);
  else if (!tail.isEmpty())
    m_error = tail;
  else
    m_error = wasReady ? tr("fathom-engine serve exited (code %1)").arg(code)
                       : tr("fathom-engine serve exited with code %1 before it was ready").arg(code);
  Q_EMIT failed(m_error);
}

}  // namespace fathom::ui
