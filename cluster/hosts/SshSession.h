// One SSH connection (libssh): connect with a timeout, optionally through a jump host, verify the
// host key against known_hosts (hashed entries too), authenticate (agent, key file, password), run
// commands, stream their output, upload over SFTP with resume.
//
// Host keys: a known key connects; an unknown one is shown (SHA256 fingerprint) to
// Callbacks::confirmHostKey and written to known_hosts only when accepted; a changed key always
// refuses, with a warning naming the known_hosts file and line to remove if the change is expected.
// Secrets (passphrases, passwords) come from Callbacks::askSecret each time and are wiped after
// use; this class never stores them.
//
// Thread safety: every public method locks the session, so one SshSession may be shared by threads
// (each call runs to its end before the next starts). Calls block: use them off the GUI thread.
// Callbacks run on the calling thread.
#pragma once

#include <QByteArray>
#include <QString>

#include <atomic>
#include <functional>
#include <memory>
#include <mutex>

#include "cluster/hosts/HostConfig.h"

namespace fathom::cluster {

struct HostKeyInfo {
  QString host;          // as written in known_hosts: "host" or "[host]:port"
  int port = 22;
  QString keyType;       // "ssh-ed25519", ...
  QString fingerprint;   // "SHA256:..."
  QString knownHostsFile;
  bool viaJump = false;  // the key of the jump host
};

struct SshCallbacks {
  // Unknown host key: true accepts it (and it is added to known_hosts). Null: refuse.
  std::function<bool(const HostKeyInfo&)> confirmHostKey;
  // A passphrase (`kind` "passphrase") or a password (`kind` "password"); `prompt` says for what.
  // False (or null) = the user declined. The secret is wiped after use.
  std::function<bool(const QString& kind, const QString& prompt, QByteArray* secret)> askSecret;
  // Passwords (ssh_auth::password). A password the OS keychain holds for the host is tried first
  // (and removed from it when the server refuses it); otherwise this asks. `keychainNote` is ""
  // when the keychain could remember the password (offer it), else why it cannot ("no OS keychain
  // service is running ..."); *remember = true stores it there after a successful login. Null:
  // askSecret("password", ...) and nothing is remembered.
  std::function<bool(const QString& prompt, const QString& keychainNote, QByteArray* secret, bool* remember)> askPassword;
  bool useKeychain = true;  // false: neither read nor write the OS keychain
};

struct SshExecResult {
  bool ok = false;       // the command ran and its exit status arrived (whatever its value)
  int exitCode = -1;
  QByteArray out, err;
  QString error;         // transport problem: what and where
  bool timedOut = false, cancelled = false;
};

// Streaming output: return false to stop (the remote command gets EOF on stdin and its channel closes).
using SshOutputFn = std::function<bool(const QByteArray& out, const QByteArray& err)>;
// Transfer progress: bytes done of total; return false to cancel.
using SshProgressFn = std::function<bool(qint64 done, qint64 total)>;

struct SshUploadResult {
  bool ok = false;
  QString error;
  qint64 bytes = 0;        // size of the file
  qint64 resumedFrom = 0;  // bytes kept from an earlier, interrupted transfer
  bool cancelled = false;
};

class SshChannel;

class SshSession {
 public:
  SshSession();
  ~SshSession();
  SshSession(const SshSession&) = delete;
  SshSession& operator=(const SshSession&) = delete;

  // known_hosts to check and update ("" = ~/.ssh/known_hosts).
  void setKnownHostsFile(const QString& path);
  QString knownHostsFile() const;
  void setCallbacks(SshCallbacks callbacks);
  void setConnectTimeoutMs(int ms);
  // How long one blocking step of a connected session (opening a channel, a write) may wait for
  // the server; the connect timeout until set. Short values make a dead link show up quickly.
  void setOperationTimeoutMs(int ms);

  // Connects and authenticates as host.effectiveUser() to host.address:host.port, through
  // host.jumpHost when set. False with lastError() saying what failed, on which host, and what to do.
  bool connect(const HostConfig& host);
  void disconnect();
  bool isConnected() const;
  const HostConfig& host() const { return m_host; }
  // The key the server showed during the last connect() (also when it was refused).
  HostKeyInfo lastHostKey() const;
  bool lastHostKeyChanged() const;
  QString lastError() const;

  // Runs `command` through the remote login shell (quote every value with shellQuote()). Waits up
  // to timeoutMs (<= 0: no limit) for it to end. With `onOutput` the output is streamed there
  // instead of collected. `stdinData` is written first, then EOF.
  SshExecResult exec(const QString& command, int timeoutMs = 60000, const SshOutputFn& onOutput = {},
                     const std::atomic<bool>* cancel = nullptr, const QByteArray& stdinData = {});

  // Opens a channel running `command` and returns at once; read it with SshChannel::read().
  // nullptr with lastError() on failure. The channel must not outlive the session.
  std::unique_ptr<SshChannel> openExec(const QString& command);

  // Uploads `localPath` to `remotePath` (parent directories created) through `<remotePath>.part`,
  // renamed at the end. When a .part exists whose bytes are a prefix of the local file (sha256 of
  // that prefix compared on both sides), the transfer continues from its end. `mode` e.g. 0755.
  SshUploadResult upload(const QString& localPath, const QString& remotePath, int mode = 0644,
                         const SshProgressFn& progress = {});
  // The whole remote file (up to maxBytes); false with `error` when it cannot be read.
  bool download(const QString& remotePath, QByteArray* data, QString* error, qint64 maxBytes = 64 << 20);
  // The last `lines` lines of a remote file ("" when it does not exist).
  QString tail(const QString& remotePath, int lines = 20);

 private:
  friend class SshChannel;
  struct Impl;
  bool connectLocked(const HostConfig& host);
  bool verifyHostKey(void* session, const QString& host, int port, bool viaJump);
  bool authenticate(void* session, const HostConfig& host, bool viaJump);
  bool fail(const QString& error);

  mutable std::recursive_mutex m_mutex;
  std::unique_ptr<Impl> m_impl;
  HostConfig m_host;
};

// An exec channel in progress (see SshSession::openExec). Not thread-safe on its own; it locks the
// session for each call.
class SshChannel {
 public:
  ~SshChannel();
  // Appends what is available now (waits up to waitMs for something); false on a transport error.
  bool read(QByteArray* out, QByteArray* err, int waitMs = 0);
  bool write(const QByteArray& data);
  void sendEof();
  // The remote side closed stdout (the command ended or closed it) and nothing is left to read.
  bool atEof() const;
  // Exit status once the command ended, -1 before (or when none came).
  int exitStatus();
  void close();
  QString error() const { return m_error; }

 private:
  friend class SshSession;
  SshChannel(SshSession* session, void* channel) : m_session(session), m_channel(channel) {}
  SshSession* m_session;
  void* m_channel;
  QString m_error;
  bool m_eof = false;
};

}  // namespace fathom::cluster
