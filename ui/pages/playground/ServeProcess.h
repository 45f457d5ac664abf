// One `fathom-engine serve MODEL --port 0` child: load progress from its stderr, ready when its
// one JSON line {"event":"listening",...} arrives on stdout, stopped with SIGTERM (SIGKILL after 3 s)
// when the page switches models or closes. Never blocks the GUI thread.
#pragma once

#include <QObject>
#include <QProcess>
#include <QString>
#include <QStringList>
#include <QUrl>

namespace fathom::ui {

class ServeProcess : public QObject {
  Q_OBJECT
 public:
  enum class State { Stopped, Loading, Ready, Failed };

  explicit ServeProcess(QObject* parent = nullptr);
  ~ServeProcess() override;  // kills a child still running

  // "" = the launcher's lookup (FATHOM_ENGINE_BIN, next to the workbench, PATH).
  void setEngineBinary(const QString& path) { m_binary = path; }
  // Extra arguments after MODEL (e.g. --device cpu).
  void setExtraArguments(const QStringList& args) { m_extra = args; }

  // Stops a running child first. False (with error()) when no engine binary was found.
  bool start(const QString& model);
  void stop();

  State state() const { return m_state; }
  bool isReady() const { return m_state == State::Ready; }
  QString model() const { return m_model; }
  QString modelId() const { return m_modelId; }  // what the server calls it ("model" of the line)
  QUrl baseUrl() const { return m_url; }          // http://host:port
  QString error() const { return m_error; }
  QString lastProgress() const { return m_lastProgress; }
  QStringList arguments() const { return m_args; }
  qint64 processId() const;

  // True when an error text means the engine does not have the `serve` command yet.
  static bool isUnknownCommand(const QString& text);

 Q_SIGNALS:
  void progress(const QString& line);
  void ready(const QUrl& baseUrl, const QString& modelId);
  // The child ended before or after it was ready, or could not start; `error` is the engine's words.
  void failed(const QString& error);
  void stopped();

 private:
  void onStdout();
  void onStderr();
  void onFinished(int code, QProcess::ExitStatus status);

  QString m_binary;
  QStringList m_extra, m_args;
  QProcess* m_proc = nullptr;
  State m_state = State::Stopped;
  QString m_model, m_modelId, m_error, m_lastProgress;
  QUrl m_url;
  QByteArray m_out, m_err, m_errPartial;
  bool m_stopping = false;
};

}  // namespace fathom::ui
