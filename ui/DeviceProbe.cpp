// The probe runs the engine (not a library call) because only the engine links CUDA: the GUI
// never loads torch, so a broken driver cannot crash it.
#include "ui/DeviceProbe.h"

#include <QCoreApplication>
#include <QDir>
#include <QFileInfo>
#include <QJsonArray>
#include <QJsonDocument>
#include <QJsonObject>
#include <QProcess>
#include <QStandardPaths>

#include "cluster/launch/LocalLauncher.h"

namespace fathom::ui {

DeviceProbe::DeviceProbe(QObject* parent) : QObject(parent) {}

DeviceProbe::~DeviceProbe() {
  if (m_process) {
    m_process->disconnect(this);
    m_process->kill();
    m_process->waitForFinished(1000);
  }
}

QString DeviceProbe::engineBinary() {
  const QString found = cluster::LocalLauncher::findEngineBinary();
  return found.isEmpty() ? QStringLiteral("fathom-engine") : found;
}

QString DeviceProbe::program() const { return m_program.isEmpty() ? engineBinary() : m_program; }

bool DeviceProbe::parse(const QByteArray& json, QList<EngineDevice>* out, QString* error) {
  QJsonParseError pe;
  const QJsonDocument doc = QJsonDocument::fromJson(json.trimmed(), &pe);
  if (pe.error != QJsonParseError::NoError || !doc.isArray()) {
    if (error) *error = QStringLiteral("unexpected output (%1)").arg(pe.error != QJsonParseError::NoError ? pe.errorString() : QStringLiteral("not a JSON array"));
    return false;
  }
  out->clear();
  for (const QJsonValue& v : doc.array()) {
    const QJsonObject o = v.toObject();
    EngineDevice d;
    d.kind = o.value(QStringLiteral("kind")).toString();
    d.index = o.value(QStringLiteral("index")).toInt();
    d.name = o.value(QStringLiteral("name")).toString();
    d.memoryTotal = static_cast<qint64>(o.value(QStringLiteral("memory_total")).toDouble());
    d.threads = o.value(QStringLiteral("threads")).toInt();
    if (d.kind.isEmpty()) continue;
    out->push_back(d);
  }
  return true;
}

void DeviceProbe::refresh() {
  if (m_process) return;
  m_process = new QProcess(this);
  const QString program = this->program();
  connect(m_process, &QProcess::finished, this, [this, program](int code, QProcess::ExitStatus status) {
    QProcess* p = m_process;
    m_process = nullptr;
    p->deleteLater();
    QList<EngineDevice> devices;
    QString err;
    if (status != QProcess::NormalExit || code != 0) {
      m_error = tr("%1 devices --json exited with code %2: %3")
                    .arg(program).arg(code).arg(QString::fromUtf8(p->readAllStandardError()).trimmed().right(300));
    } else if (!parse(p->readAllStandardOutput(), &devices, &err)) {
      m_error = tr("%1 devices --json: %2").arg(program, err);
    } else {
      m_error.clear();
      m_devices = devices;
    }
    m_ready = true;
    emit devicesChanged();
  });
  connect(m_process, &QProcess::errorOccurred, this, [this, program](QProcess::ProcessError e) {
    if (e != QProcess::FailedToStart || !m_process) return;
    m_process->deleteLater();
    m_process = nullptr;
    m_error = tr("cannot start %1; build it (cmake --build build --target fathom-engine) or set FATHOM_ENGINE_BIN")
                  .arg(program);
    m_ready = true;
    emit devicesChanged();
  });
  m_process->start(program, {QStringLiteral("devices"), QStringLiteral("--json")});
}

}  // namespace fathom::ui
