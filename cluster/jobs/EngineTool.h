// One run of a short `fathom-engine` tool command (inspect, convert, ...) in a QProcess, off the
// GUI thread: progress lines from stderr as they come, stdout kept whole for --json answers, a
// cancel that ends the process. The engine binary is found like the launcher finds it.
#pragma once

#include <QByteArray>
#include <QObject>
#include <QProcess>
#include <QString>
#include <QStringList>

namespace fathom::cluster {

class EngineTool : public QObject {
  Q_OBJECT

 public:
  explicit EngineTool(QObject* parent = nullptr);
  ~EngineTool() override;

  // "" = LocalLauncher::findEngineBinary() (FATHOM_ENGINE_BIN, next to the workbench, PATH).
  void setEngineBinary(const QString& path) { m_binary = path; }
  QString engineBinary() const;

  // Starts `fathom-engine <arguments>`. False (and finished() is not emitted) when another command
  // is still running or no binary was found; error() says which.
  bool start(const QStringList& arguments);
  bool isRunning() const;
  // Ends the command (SIGTERM, then SIGKILL after 3 s); finished() follows with ok=false.
  void cancel();
  bool wasCancelled() const { return m_cancelled; }

  QStringList arguments() const { return m_args; }
  QByteArray standardOutput() const { return m_stdout; }
  QString standardError() const { return QString::fromUtf8(m_stderr); }
  int exitCode() const { return m_exitCode; }
  // Why the command failed, in a sentence: the binary's own error text (its stderr tail) when it
  // ran, else what kept it from running. "" after success.
  QString error() const { return m_error; }
  // True when the binary answered that it does not know the command (an older engine).
  bool unknownCommand() const;

  // Runs the command to completion, blocking (tests and headless tools only; never the GUI).
  static bool runBlocking(const QString& binary, const QStringList& arguments, QByteArray* out, QString* err,
                          int timeoutMs = 600000);

 Q_SIGNALS:
  // One non-empty line of stderr (progress), as it arrives.
  void progress(const QString& line);
  // ok: exit code 0 and not cancelled.
  void finished(bool ok);

 private:
  void onFinished(int code, QProcess::ExitStatus status);
  void onError(QProcess::ProcessError error);

  QString m_binary;
  QProcess* m_proc = nullptr;
  QStringList m_args;
  QByteArray m_stdout, m_stderr, m_partial;
  int m_exitCode = -1;
  bool m_cancelled = false;
  bool m_done = false;
  QString m_error;
};

}  // namespace fathom::cluster
