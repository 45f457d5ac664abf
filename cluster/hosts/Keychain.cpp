// Qt Keychain jobs, started on the application thread; callers elsewhere wait for the answer.
#include "cluster/hosts/Keychain.h"

#include <QCoreApplication>
#include <QEventLoop>
#include <QPointer>
#include <QSemaphore>
#include <QThread>
#include <QTimer>

#include <functional>
#include <memory>

#ifdef FATHOM_HAVE_KEYCHAIN
#include <qt6keychain/keychain.h>
#endif

namespace fathom::cluster::keychain {

QString service() { return QStringLiteral("Fathom SSH"); }

QString keyFor(const HostConfig& host) { return QStringLiteral("%1@%2:%3").arg(host.effectiveUser(), host.address).arg(host.port); }

bool compiledIn() {
#ifdef FATHOM_HAVE_KEYCHAIN
  return true;
#else
  return false;
#endif
}

#ifdef FATHOM_HAVE_KEYCHAIN
namespace {

Result classify(const QKeychain::Job* job) {
  Result r;
  switch (job->error()) {
    case QKeychain::NoError:
      r.status = Status::ok;
      break;
    case QKeychain::EntryNotFound:
      r.status = Status::notFound;
      break;
    case QKeychain::NoBackendAvailable:
    case QKeychain::NotImplemented:
      r.status = Status::noService;
      r.message = QStringLiteral("no OS keychain service is running (%1)").arg(job->errorString());
      break;
    default:
      // A Secret Service that is not on the bus shows up as a D-Bus error rather than NoBackendAvailable.
      // ("Could not connect: No such file or directory": no session bus at all.)
      if (job->errorString().contains(QLatin1String("DBus"), Qt::CaseInsensitive) ||
          job->errorString().contains(QLatin1String("D-Bus"), Qt::CaseInsensitive) ||
          job->errorString().contains(QLatin1String("Could not connect"), Qt::CaseInsensitive) ||
          job->errorString().contains(QLatin1String("secrets"), Qt::CaseInsensitive)) {
        r.status = Status::noService;
        r.message = QStringLiteral("no OS keychain service is running (%1)").arg(job->errorString());
      } else {
        r.status = Status::error;
        r.message = QStringLiteral("the OS keychain refused: %1").arg(job->errorString());
      }
  }
  return r;
}

struct Pending {
  QSemaphore done;
  Result result;
  QByteArray data;
  QPointer<QEventLoop> loop;  // the caller's, when it runs on the application thread
};

// Qt Keychain's jobs and its job queue live on the application thread (its executor is a
// singleton; jobs from short-lived worker threads crash it), so every job starts there; a caller
// on another thread waits for the answer (up to timeoutMs).
Result run(std::function<QKeychain::Job*()> make, int timeoutMs, QByteArray* data = nullptr) {
  QCoreApplication* app = QCoreApplication::instance();
  if (!app) return {Status::noService, QStringLiteral("the OS keychain needs a running application")};
  auto p = std::make_shared<Pending>();
  auto start = [p, make] {
    QKeychain::Job* job = make();
    job->setAutoDelete(true);
    job->setInsecureFallback(false);  // never a plain-text file
    QObject::connect(job, &QKeychain::Job::finished, job, [p](QKeychain::Job* j) {
      p->result = classify(j);
      if (auto* r = qobject_cast<QKeychain::ReadPasswordJob*>(j); r && p->result.status == Status::ok) p->data = r->binaryData();
      p->done.release();
      if (p->loop) p->loop->quit();
    });
    job->start();
  };
  bool answered = false;
  if (QThread::currentThread() == app->thread()) {
    QEventLoop loop;
    p->loop = &loop;
    QTimer::singleShot(timeoutMs, &loop, &QEventLoop::quit);
    start();
    if (p->done.available() == 0) loop.exec();
    answered = p->done.tryAcquire();
  } else {
    QMetaObject::invokeMethod(app, start, Qt::QueuedConnection);
    answered = p->done.tryAcquire(1, timeoutMs);
  }
  if (!answered) return {Status::noService, QStringLiteral("the OS keychain did not answer within %1 s").arg(timeoutMs / 1000)};
  if (data) *data = p->data;
  return p->result;
}

}  // namespace
#endif

Result readPassword(const HostConfig& host, QByteArray* password, int timeoutMs) {
#ifdef FATHOM_HAVE_KEYCHAIN
  const QString key = keyFor(host);
  return run(
      [key] {
        auto* job = new QKeychain::ReadPasswordJob(service());
        job->setKey(key);
        return job;
      },
      timeoutMs, password);
#else
  Q_UNUSED(host);
  Q_UNUSED(password);
  Q_UNUSED(timeoutMs);
  return {Status::noService, QStringLiteral("this build has no OS keychain support (Qt Keychain)")};
#endif
}

Result writePassword(const HostConfig& host, const QByteArray& password, int timeoutMs) {
#ifdef FATHOM_HAVE_KEYCHAIN
  const QString key = keyFor(host);
  return run(
      [key, password] {
        auto* job = new QKeychain::WritePasswordJob(service());
        job->setKey(key);
        job->setBinaryData(password);
        return job;
      },
      timeoutMs);
#else
  Q_UNUSED(host);
  Q_UNUSED(password);
  Q_UNUSED(timeoutMs);
  return {Status::noService, QStringLiteral("this build has no OS keychain support (Qt Keychain)")};
#endif
}

Result deletePassword(const HostConfig& host, int timeoutMs) {
#ifdef FATHOM_HAVE_KEYCHAIN
  const QString key = keyFor(host);
  return run(
      [key] {
        auto* job = new QKeychain::DeletePasswordJob(service());
        job->setKey(key);
        return job;
      },
      timeoutMs);
#else
  Q_UNUSED(host);
  Q_UNUSED(timeoutMs);
  return {Status::noService, QStringLiteral("this build has no OS keychain support (Qt Keychain)")};
#endif
}

}  // namespace fathom::cluster::keychain
