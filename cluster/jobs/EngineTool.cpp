// EngineTool: a QProcess around one `fathom-engine` tool command; see EngineTool.h.
#include "cluster/jobs/EngineTool.h"

#include <QTimer>

#include "cluster/launch/LocalLauncher.h"

namespace fathom::cluster {

EngineTool::EngineTool(QObject* parent) : QObject(parent) {}

EngineTool::~EngineTool() {
  if (m_proc && m_proc->state() != QProcess::NotRunning) {
    m_proc->disconnect(this);
    m_proc->kill();
    m_proc->waitForFinished(2000);
  }
}

QString EngineTool::engineBinary() const { return LocalLauncher::findEngineBinary(m_binary); }

bool EngineTool::isRunning() const { return m_proc && m_proc->state() != QProcess::NotRunning; }

bool EngineTool::start(const QStringList& arguments) {
  if (isRunning()) {
    m_error = QStringLiteral("fathom-engine %1 is still running").arg(m_args.value(0));
    return false;
  }
  QString why;
  const QString binary = LocalLauncher::findEngineBinary(m_binary, &why);
  if (binary.isEmpty()) {
    m_error = why.isEmpty() ? QStringLiteral("fathom-engine was not found; set FATHOM_ENGINE_BIN") : why;
    return false;
  }
  if (m_proc) m_proc->deleteLater();
  m_proc = new QProcess(this);
  m_args = arguments;
  m_stdout.clear();
  m_stderr.clear();
  m_partial.clear();
  m_exitCode = -1;
  m_cancelled = false;
  m_done = false;
  m_error.clear();
  QProcessEnvironment env = QProcessEnvironment::systemEnvironment();
  if (!env.contains(QStringLiteral("OMP_WAIT_POLICY"))) env.insert(QStringLiteral("OMP_WAIT_POLICY"), QStringLiteral("PASSIVE"));
  m_proc->setProcessEnvironment(env);
  connect(m_proc, &QProcess::readyReadStandardOutput, this, [this] { m_stdout += m_proc->readAllStandardOutput(); });
  connect(m_proc, &QProcess::readyReadStandardError, this, [this] {
    const QByteArray chunk = m_proc->readAllStandardError();
    m_stderr += chunk;
    m_partial += chunk;
    // Progress lines may end in \r (a terminal progress bar) or \n.
    for (;;) {
      const qsizetype nl = m_partial.indexOf('\n'), cr = m_partial.indexOf('\r');
      const qsizetype end = nl < 0 ? cr : (cr < 0 ? nl : std::min(nl, cr));
      if (end < 0) break;
      const QString line = QString::fromUtf8(m_partial.left(end)).trimmed();
      m_partial.remove(0, end + 1);
      if (!line.isEmpty()) Q_EMIT progress(line);
    }
  });
  connect(m_proc, &QProcess::finished, this, &EngineTool::onFinished);
  connect(m_proc, &QProcess::errorOccurred, this, &EngineTool::onError);
  m_proc->start(binary, arguments);
  return true;
}

void EngineTool::cancel() {
  if (!isRunning()) return;
  m_cancelled = true;
  m_proc->terminate();
  QProcess* p = m_proc;
  QTimer::singleShot(3000, p, [p] {
    if (p->state() != QProcess::NotRunning) p->kill();
  });
}

bool EngineTool::unknownCommand() const {
  const QString e = QString::fromUtf8(m_stderr).toLower();
  return m_exitCode != 0 && (e.contains(QLatin1String("unknown command")) || e.contains(QLatin1String("unknown subcommand")));
}

void EngineTool::onFinished(int code, QProcess::ExitStatus status) {
  if (m_done) return;
  m_done = true;
  m_stdout += m_proc->readAllStandardOutput();
  m_stderr += m_proc->readAllStandardError();
  const QString last = QString::fromUtf8(m_partial).trimmed();
  if (!last.isEmpty()) Q_EMIT progress(last);
  m_partial.clear();
  m_exitCode = status == QProcess::NormalExit ? code : -1;
  const bool ok = !m_cancelled && status == QProcess::NormalExit && code == 0;
  if (!ok) {
    // The engine's own words first: its last stderr lines say what went wrong and what to do.
    QStringList lines = QString::fromUtf8(m_stderr).split(QLatin1Char('\n'), Qt::SkipEmptyParts);
    if (lines.size() > 12) lines = lines.mid(lines.size() - 12);
    QString tail = lines.join(QLatin1Char('\n')).trimmed();
    // An unknown command is answered with the usage text after it; the one line that matters first.
    for (const QString& l : QString::fromUtf8(m_stderr).split(QLatin1Char('\n')))
      if (l.contains(QLatin1String("unknown command"), Qt::CaseInsensitive)) tail = l.trimmed();
    if (m_cancelled) m_error = QStringLiteral("cancelled");
    else if (status != QProcess::NormalExit) m_error = QStringLiteral("fathom-engine %1 crashed%2").arg(m_args.value(0), tail.isEmpty() ? QString() : QStringLiteral(": ") + tail);
    else m_error = tail.isEmpty() ? QStringLiteral("fathom-engine %1 exited with code %2").arg(m_args.value(0)).arg(code) : tail;
  }
  Q_EMIT finished(ok);
}

void EngineTool::onError(QProcess::ProcessError error) {
  if (error != QProcess::FailedToStart || m_done) return;
  m_done = true;
  m_error = QStringLiteral("cannot run %1: %2").arg(m_proc->program(), m_proc->errorString());
  Q_EMIT finished(false);
}

bool EngineTool::runBlocking(const QString& binary, const QStringList& arguments, QByteArray* out, QString* err, int timeoutMs) {
  QProcess p;
  p.start(LocalLauncher::findEngineBinary(binary), arguments);
  if (!p.waitForStarted(10000) || !p.waitForFinished(timeoutMs)) {
    if (err) *err = p.errorString();
    p.kill();
    p.waitForFinished(2000);
    return false;
  }
  if (out) *out = p.readAllStandardOutput();
  if (err) *err = QString::fromUtf8(p.readAllStandardError());
  return p.exitStatus() == QProcess::NormalExit && p.exitCode() == 0;
}

}  // namespace fathom::cluster
