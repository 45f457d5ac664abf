// SSH passwords in the OS keychain (Qt Keychain: Secret Service / KWallet on Linux, Keychain on
// macOS, Credential Store on Windows), and nowhere else: Qt Keychain's plain-text fallback is
// switched off, so without a keychain service nothing is stored and the password is asked each
// time. Entries: service "Fathom SSH", key "user@host:port".
//
// Blocking calls, usable from worker threads: the job runs on the application thread (whose event
// loop must be running, or the call times out and reports no service).
#pragma once

#include <QByteArray>
#include <QString>

#include "cluster/hosts/HostConfig.h"

namespace fathom::cluster::keychain {

enum class Status {
  ok,
  notFound,   // the keychain answered: no such entry
  noService,  // no keychain service (headless: no Secret Service on D-Bus), or built without Qt Keychain
  error,      // the keychain refused or failed (message says why)
};

struct Result {
  Status status = Status::error;
  QString message;  // for noService/error: what to tell the user
};

QString service();
QString keyFor(const HostConfig& host);  // "user@address:port"
// Built with Qt Keychain at all (a running service is only known after a call).
bool compiledIn();

Result readPassword(const HostConfig& host, QByteArray* password, int timeoutMs = 15000);
Result writePassword(const HostConfig& host, const QByteArray& password, int timeoutMs = 15000);
Result deletePassword(const HostConfig& host, int timeoutMs = 15000);

}  // namespace fathom::cluster::keychain
