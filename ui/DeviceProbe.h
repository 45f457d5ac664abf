// What this computer can run on, as the engine sees it: runs `fathom-engine devices --json`
// asynchronously (QProcess, never blocking the GUI) and keeps the answer for the status bar, the
// estimator and the Launch dialog.
#pragma once

#include <QList>
#include <QObject>
#include <QString>

class QProcess;

namespace fathom::ui {

struct EngineDevice {
  QString kind;  // "cpu" | "cuda"
  int index = 0;
  QString name;  // "CPU", "NVIDIA H200"
  qint64 memoryTotal = 0;
  int threads = 0;
  // The launcher's device id: "cpu" or "cuda:<index>".
  QString id() const { return kind == QLatin1String("cuda") ? QStringLiteral("cuda:%1").arg(index) : kind; }
};

class DeviceProbe : public QObject {
  Q_OBJECT
 public:
  explicit DeviceProbe(QObject* parent = nullptr);
  ~DeviceProbe() override;

  // Starts a probe unless one is running. The engine binary: $FATHOM_ENGINE_BIN, else next to
  // the workbench executable, else PATH (the same order as the launcher).
  void refresh();
  bool isReady() const { return m_ready; }
  bool isRunning() const { return m_process != nullptr; }
  const QList<EngineDevice>& devices() const { return m_devices; }
  // Why the last probe failed ("" when it did not).
  const QString& error() const { return m_error; }

  // The engine binary the launcher would use (LocalLauncher::findEngineBinary), or `program`
  // when one was set (the job queue's engine, so the status bar probes what runs).
  QString program() const;
  void setProgram(const QString& program) { m_program = program; }
  static QString engineBinary();
  // Parses the JSON array `fathom-engine devices --json` prints; false + error on bad input.
  static bool parse(const QByteArray& json, QList<EngineDevice>* out, QString* error);

 signals:
  void devicesChanged();

 private:
  QProcess* m_process = nullptr;
  QString m_program;
  QList<EngineDevice> m_devices;
  QString m_error;
  bool m_ready = false;
};

}  // namespace fathom::ui
