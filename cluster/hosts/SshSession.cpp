// libssh behind SshSession. A jump host is a second session whose direct-tcpip channel to the
// target is bridged to a local socketpair; the target session runs over the other end
// (SSH_OPTIONS_FD), so both hops verify their host keys and authenticate with our own rules.
#include "cluster/hosts/SshSession.h"

#include <QCryptographicHash>
#include <QDir>
#include <QElapsedTimer>
#include <QFile>
#include <QFileInfo>
#include <QThread>

#include <libssh/libssh.h>
#include <libssh/sftp.h>

#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstring>
#include <thread>

#include "cluster/hosts/Keychain.h"
#include "cluster/hosts/ShellQuote.h"

namespace fathom::cluster {

namespace {

QString sshError(void* s) { return QString::fromUtf8(ssh_get_error(s)); }

void wipe(QByteArray* b) {
  if (!b) return;
  volatile char* p = b->data();
  for (int i = 0; i < b->size(); ++i) p[i] = 0;
  b->clear();
}

QString defaultKnownHosts() { return QDir::home().filePath(QStringLiteral(".ssh/known_hosts")); }

}  // namespace

struct SshSession::Impl {
  ssh_session session = nullptr;
  ssh_session jump = nullptr;
  ssh_channel jumpChannel = nullptr;
  std::thread bridge;
  std::atomic<bool> bridgeStop{false};
  int bridgeFd = -1;  // our end of the socketpair (the bridge thread's)
  QString knownHosts;
  SshCallbacks callbacks;
  int timeoutMs = 10000;
  HostKeyInfo lastKey;
  bool lastKeyChanged = false;
  QString error;

  void closeAll() {
    if (session) {
      ssh_disconnect(session);
      ssh_free(session);
      session = nullptr;
    }
    bridgeStop = true;
    if (bridge.joinable()) bridge.join();
    bridgeStop = false;
    if (jumpChannel) {
      ssh_channel_close(jumpChannel);
      ssh_channel_free(jumpChannel);
      jumpChannel = nullptr;
    }
    if (jump) {
      ssh_disconnect(jump);
      ssh_free(jump);
      jump = nullptr;
    }
    if (bridgeFd >= 0) {
      ::close(bridgeFd);
      bridgeFd = -1;
    }
  }
};

SshSession::SshSession() : m_impl(std::make_unique<Impl>()) {}

SshSession::~SshSession() { disconnect(); }

void SshSession::setKnownHostsFile(const QString& path) {
  std::lock_guard<std::recursive_mutex> g(m_mutex);
  m_impl->knownHosts = path;
}

QString SshSession::knownHostsFile() const {
  std::lock_guard<std::recursive_mutex> g(m_mutex);
  return m_impl->knownHosts.isEmpty() ? defaultKnownHosts() : m_impl->knownHosts;
}

void SshSession::setCallbacks(SshCallbacks callbacks) {
  std::lock_guard<std::recursive_mutex> g(m_mutex);
  m_impl->callbacks = std::move(callbacks);
}

void SshSession::setConnectTimeoutMs(int ms) {
  std::lock_guard<std::recursive_mutex> g(m_mutex);
  m_impl->timeoutMs = ms > 0 ? ms : 10000;
}

void SshSession::setOperationTimeoutMs(int ms) {
  std::lock_guard<std::recursive_mutex> g(m_mutex);
  if (!m_impl->session) return;
  ms = std::max(100, ms);
  long secs = ms / 1000, usecs = (ms % 1000) * 1000L;
  ssh_options_set(m_impl->session, SSH_OPTIONS_TIMEOUT, &secs);
  ssh_options_set(m_impl->session, SSH_OPTIONS_TIMEOUT_USEC, &usecs);
}

bool SshSession::isConnected() const {
  std::lock_guard<std::recursive_mutex> g(m_mutex);
  return m_impl->session && ssh_is_connected(m_impl->session);
}

HostKeyInfo SshSession::lastHostKey() const {
  std::lock_guard<std::recursive_mutex> g(m_mutex);
  return m_impl->lastKey;
}

bool SshSession::lastHostKeyChanged() const {
  std::lock_guard<std::recursive_mutex> g(m_mutex);
  return m_impl->lastKeyChanged;
}

QString SshSession::lastError() const {
  std::lock_guard<std::recursive_mutex> g(m_mutex);
  return m_impl->error;
}

bool SshSession::fail(const QString& error) {
  m_impl->error = error;
  return false;
}

void SshSession::disconnect() {
  std::lock_guard<std::recursive_mutex> g(m_mutex);
  m_impl->closeAll();
}

bool SshSession::connect(const HostConfig& host) {
  std::lock_guard<std::recursive_mutex> g(m_mutex);
  m_impl->closeAll();
  m_impl->error.clear();
  m_impl->lastKeyChanged = false;
  m_impl->lastKey = HostKeyInfo{};
  m_host = host;
  if (!connectLocked(host)) {
    m_impl->closeAll();
    return false;
  }
  return true;
}

namespace {

// Common options of both hops. The user's ~/.ssh/config is not read: what the Hosts page shows is
// exactly what is used.
bool applyOptions(ssh_session s, const QString& host, int port, const QString& user, const QString& knownHosts,
                  int timeoutMs, QString* error) {
  const QByteArray h = host.toUtf8(), u = user.toUtf8(), k = knownHosts.toLocal8Bit();
  int p = port;
  long secs = std::max(1, (timeoutMs + 999) / 1000);
  int off = 0;
  if (ssh_options_set(s, SSH_OPTIONS_HOST, h.constData()) != SSH_OK ||
      ssh_options_set(s, SSH_OPTIONS_PORT, &p) != SSH_OK ||
      ssh_options_set(s, SSH_OPTIONS_USER, u.constData()) != SSH_OK ||
      ssh_options_set(s, SSH_OPTIONS_KNOWNHOSTS, k.constData()) != SSH_OK ||
      ssh_options_set(s, SSH_OPTIONS_TIMEOUT, &secs) != SSH_OK ||
      ssh_options_set(s, SSH_OPTIONS_PROCESS_CONFIG, &off) != SSH_OK) {
    *error = QStringLiteral("invalid SSH options for %1@%2:%3: %4").arg(user, host).arg(port).arg(sshError(s));
    return false;
  }
  return true;
}

}  // namespace

bool SshSession::connectLocked(const HostConfig& host) {
  Impl& d = *m_impl;
  const QString knownHosts = d.knownHosts.isEmpty() ? defaultKnownHosts() : d.knownHosts;
  const QString user = host.effectiveUser();
  QString err;

  if (!host.jumpHost.isEmpty()) {
    QString ju, jh;
    int jp = 22;
    if (!parseDestination(host.jumpHost, &ju, &jh, &jp))
      return fail(QStringLiteral("jump host '%1' of %2 is not [user@]host[:port]; fix it on the Hosts page")
                      .arg(host.jumpHost, host.displayName()));
    if (ju.isEmpty()) ju = user;
    d.jump = ssh_new();
    if (!applyOptions(d.jump, jh, jp, ju, knownHosts, d.timeoutMs, &err)) return fail(err);
    if (ssh_connect(d.jump) != SSH_OK)
      return fail(QStringLiteral("cannot connect to jump host %1@%2:%3: %4. Check the address and that sshd runs there.")
                      .arg(ju, jh)
                      .arg(jp)
                      .arg(sshError(d.jump)));
    if (!verifyHostKey(d.jump, jh, jp, true)) return false;
    HostConfig jhost = host;
    jhost.address = jh;
    jhost.port = jp;
    jhost.user = ju;
    if (!authenticate(d.jump, jhost, true)) return false;
    d.jumpChannel = ssh_channel_new(d.jump);
    if (!d.jumpChannel ||
        ssh_channel_open_forward(d.jumpChannel, host.address.toUtf8().constData(), host.port, "127.0.0.1", 0) != SSH_OK)
      return fail(QStringLiteral("jump host %1 cannot reach %2:%3: %4 (is TCP forwarding allowed there?)")
                      .arg(jh, host.address)
                      .arg(host.port)
                      .arg(sshError(d.jump)));
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0)
      return fail(QStringLiteral("cannot create a socket pair for the jump host: %1").arg(QString::fromLocal8Bit(strerror(errno))));
    d.bridgeFd = sv[0];
    fcntl(sv[0], F_SETFL, fcntl(sv[0], F_GETFL) | O_NONBLOCK);
    // The bridge owns the jump session from here on: nothing else touches it until closeAll() joins.
    d.bridge = std::thread([jump = d.jump, ch = d.jumpChannel, fd = sv[0], stop = &d.bridgeStop] {
      char buf[32768];
      QByteArray pendingToSocket;
      while (!stop->load()) {
        bool idle = true;
        // channel -> socket
        if (pendingToSocket.isEmpty()) {
          const int n = ssh_channel_read_nonblocking(ch, buf, sizeof buf, 0);
          if (n == SSH_ERROR) break;
          if (n > 0) pendingToSocket.append(buf, n);
          else if (ssh_channel_is_eof(ch)) break;
        }
        if (!pendingToSocket.isEmpty()) {
          const ssize_t w = ::send(fd, pendingToSocket.constData(), pendingToSocket.size(), MSG_NOSIGNAL);
          if (w > 0) {
            pendingToSocket.remove(0, static_cast<int>(w));
            idle = false;
          } else if (w < 0 && errno != EAGAIN && errno != EINTR) {
            break;
          }
        }
        // socket -> channel
        const ssize_t r = ::recv(fd, buf, sizeof buf, 0);
        if (r == 0) break;
        if (r > 0) {
          idle = false;
          if (ssh_channel_write(ch, buf, static_cast<uint32_t>(r)) == SSH_ERROR) break;
        } else if (errno != EAGAIN && errno != EINTR) {
          break;
        }
        if (idle) {
          pollfd p{fd, POLLIN, 0};
          ::poll(&p, 1, 0);
          ssh_channel_poll_timeout(ch, 5, 0);
        }
      }
      ::shutdown(fd, SHUT_RDWR);
      (void)jump;
    });
    d.session = ssh_new();
    if (!applyOptions(d.session, host.address, host.port, user, knownHosts, d.timeoutMs, &err)) return fail(err);
    socket_t fd = sv[1];
    if (ssh_options_set(d.session, SSH_OPTIONS_FD, &fd) != SSH_OK) {
      ::close(sv[1]);
      return fail(QStringLiteral("cannot attach the jump host's channel: %1").arg(sshError(d.session)));
    }
  } else {
    d.session = ssh_new();
    if (!applyOptions(d.session, host.address, host.port, user, knownHosts, d.timeoutMs, &err)) return fail(err);
  }

  if (ssh_connect(d.session) != SSH_OK)
    return fail(QStringLiteral("cannot connect to %1@%2:%3%4: %5. Check the address and port, that sshd runs there, "
                               "and that no firewall is in the way.")
                    .arg(user, host.address)
                    .arg(host.port)
                    .arg(host.jumpHost.isEmpty() ? QString() : QStringLiteral(" (through %1)").arg(host.jumpHost),
                         sshError(d.session)));
  if (!verifyHostKey(d.session, host.address, host.port, false)) return false;
  return authenticate(d.session, host, false);
}

bool SshSession::verifyHostKey(void* sv, const QString& hostName, int port, bool viaJump) {
  auto s = static_cast<ssh_session>(sv);
  Impl& d = *m_impl;
  HostKeyInfo info;
  info.host = port == 22 ? hostName : QStringLiteral("[%1]:%2").arg(hostName).arg(port);
  info.port = port;
  info.knownHostsFile = d.knownHosts.isEmpty() ? defaultKnownHosts() : d.knownHosts;
  info.viaJump = viaJump;
  ssh_key key = nullptr;
  if (ssh_get_server_publickey(s, &key) != SSH_OK || !key)
    return fail(QStringLiteral("%1 sent no host key: %2").arg(info.host, sshError(s)));
  unsigned char* hash = nullptr;
  size_t hlen = 0;
  if (ssh_get_publickey_hash(key, SSH_PUBLICKEY_HASH_SHA256, &hash, &hlen) == SSH_OK) {
    char* fp = ssh_get_fingerprint_hash(SSH_PUBLICKEY_HASH_SHA256, hash, hlen);
    info.fingerprint = QString::fromLatin1(fp);
    ssh_string_free_char(fp);
    ssh_clean_pubkey_hash(&hash);
  }
  info.keyType = QString::fromLatin1(ssh_key_type_to_char(ssh_key_type(key)));
  ssh_key_free(key);
  d.lastKey = info;

  const ssh_known_hosts_e state = ssh_session_is_known_server(s);
  switch (state) {
    case SSH_KNOWN_HOSTS_OK:
      return true;
    case SSH_KNOWN_HOSTS_CHANGED:
    case SSH_KNOWN_HOSTS_OTHER:
      d.lastKeyChanged = true;
      return fail(QStringLiteral(
                      "WARNING: the host key of %1 has CHANGED (now %2 %3); %4 holds a different key for it. Someone "
                      "may be intercepting the connection, or the host was reinstalled. Fathom refuses to connect. If "
                      "the change is expected, remove the old entry (ssh-keygen -R '%1' -f '%4') and connect again.")
                      .arg(info.host, info.keyType, info.fingerprint, info.knownHostsFile));
    case SSH_KNOWN_HOSTS_NOT_FOUND:
    case SSH_KNOWN_HOSTS_UNKNOWN: {
      const bool accepted = d.callbacks.confirmHostKey && d.callbacks.confirmHostKey(info);
      if (!accepted)
        return fail(QStringLiteral("the host key of %1 is not known (%2 %3) and was not accepted; accept it on the Hosts "
                                   "page after checking the fingerprint with the host's administrator")
                        .arg(info.host, info.keyType, info.fingerprint));
      QDir().mkpath(QFileInfo(info.knownHostsFile).absolutePath());
      if (ssh_session_update_known_hosts(s) != SSH_OK)
        return fail(QStringLiteral("the host key of %1 was accepted but could not be written to %2: %3")
                        .arg(info.host, info.knownHostsFile, sshError(s)));
      return true;
    }
    case SSH_KNOWN_HOSTS_ERROR:
    default:
      return fail(QStringLiteral("cannot check the host key of %1 against %2: %3")
                      .arg(info.host, info.knownHostsFile, sshError(s)));
  }
}

bool SshSession::authenticate(void* sv, const HostConfig& host, bool viaJump) {
  auto s = static_cast<ssh_session>(sv);
  Impl& d = *m_impl;
  const QString where = QStringLiteral("%1%2").arg(host.destination(), viaJump ? QStringLiteral(" (jump host)") : QString());
  int rc = ssh_userauth_none(s, nullptr);
  if (rc == SSH_AUTH_SUCCESS) return true;
  const int methods = ssh_userauth_list(s, nullptr);
  QStringList tried;
  const QString mode = host.auth.isEmpty() ? ssh_auth::automatic : host.auth;

  auto tryAgent = [&]() {
    if (qEnvironmentVariableIsEmpty("SSH_AUTH_SOCK")) {
      tried << QStringLiteral("ssh-agent (not running: SSH_AUTH_SOCK is not set)");
      return false;
    }
    tried << QStringLiteral("ssh-agent");
    return ssh_userauth_agent(s, nullptr) == SSH_AUTH_SUCCESS;
  };
  auto tryKeyFile = [&](const QString& path) {
    if (path.isEmpty()) return false;
    const QByteArray p = QFile::encodeName(path);
    if (!QFileInfo::exists(path)) {
      tried << QStringLiteral("key %1 (file not found)").arg(path);
      return false;
    }
    ssh_key key = nullptr;
    int r = ssh_pki_import_privkey_file(p.constData(), nullptr, nullptr, nullptr, &key);
    for (int attempt = 0; r != SSH_OK && attempt < 3; ++attempt) {
      // Encrypted (or unreadable): ask for the passphrase, never keep it.
      QByteArray secret;
      if (!d.callbacks.askSecret ||
          !d.callbacks.askSecret(QStringLiteral("passphrase"),
                                 QStringLiteral("Passphrase for %1 (to log in to %2)").arg(path, where), &secret)) {
        tried << QStringLiteral("key %1 (encrypted; no passphrase given)").arg(path);
        return false;
      }
      r = ssh_pki_import_privkey_file(p.constData(), secret.constData(), nullptr, nullptr, &key);
      wipe(&secret);
    }
    if (r != SSH_OK) {
      tried << QStringLiteral("key %1 (cannot be read: wrong passphrase or not a private key)").arg(path);
      return false;
    }
    tried << QStringLiteral("key %1").arg(path);
    const int a = ssh_userauth_publickey(s, nullptr, key);
    ssh_key_free(key);
    return a == SSH_AUTH_SUCCESS;
  };
  auto tryPassword = [&]() {
    if (!(methods & SSH_AUTH_METHOD_PASSWORD)) {
      tried << QStringLiteral("password (the server does not accept passwords)");
      return false;
    }
    // The OS keychain first (nowhere else keeps a password).
    QString note = QStringLiteral("the OS keychain is not used for this connection");
    if (d.callbacks.useKeychain) {
      QByteArray stored;
      const keychain::Result kr = keychain::readPassword(host, &stored);
      note = kr.message;
      if (kr.status == keychain::Status::ok) {
        const int a = ssh_userauth_password(s, nullptr, stored.constData());
        wipe(&stored);
        if (a == SSH_AUTH_SUCCESS) return true;
        tried << QStringLiteral("password from the OS keychain (refused; removed from the keychain)");
        keychain::deletePassword(host);
      } else if (kr.status == keychain::Status::notFound) {
        note.clear();
      }
    }
    QByteArray secret;
    bool remember = false;
    const QString prompt = QStringLiteral("Password for %1").arg(where);
    const bool given = d.callbacks.askPassword ? d.callbacks.askPassword(prompt, note, &secret, &remember)
                                               : (d.callbacks.askSecret && d.callbacks.askSecret(QStringLiteral("password"), prompt, &secret));
    if (!given) {
      wipe(&secret);
      tried << QStringLiteral("password (none given)");
      return false;
    }
    tried << QStringLiteral("password");
    const int a = ssh_userauth_password(s, nullptr, secret.constData());
    if (a == SSH_AUTH_SUCCESS && remember && note.isEmpty() && d.callbacks.useKeychain) {
      const keychain::Result w = keychain::writePassword(host, secret);
      if (w.status != keychain::Status::ok) qWarning("fathom: %s: the password was not remembered: %s", qPrintable(where), qPrintable(w.message));
    }
    wipe(&secret);
    return a == SSH_AUTH_SUCCESS;
  };

  bool ok = false;
  if (mode == ssh_auth::agent) {
    ok = tryAgent();
  } else if (mode == ssh_auth::key) {
    if (host.identityFile.isEmpty()) tried << QStringLiteral("key (no key file chosen)");
    ok = tryKeyFile(host.identityFile);
  } else if (mode == ssh_auth::password) {
    ok = tryPassword();
  } else {
    ok = (!qEnvironmentVariableIsEmpty("SSH_AUTH_SOCK") && tryAgent()) || tryKeyFile(host.identityFile);
    if (!ok) {
      tried << QStringLiteral("default keys in ~/.ssh");
      ok = ssh_userauth_publickey_auto(s, nullptr, nullptr) == SSH_AUTH_SUCCESS;
    }
  }
  if (ok) return true;
  QStringList offered;
  if (methods & SSH_AUTH_METHOD_PUBLICKEY) offered << QStringLiteral("publickey");
  if (methods & SSH_AUTH_METHOD_PASSWORD) offered << QStringLiteral("password");
  if (methods & SSH_AUTH_METHOD_INTERACTIVE) offered << QStringLiteral("keyboard-interactive");
  return fail(QStringLiteral("authentication to %1 failed (tried: %2; the server accepts: %3). Check the user name, "
                             "that the public key is in the remote ~/.ssh/authorized_keys, or choose another method.")
                  .arg(where, tried.isEmpty() ? QStringLiteral("nothing") : tried.join(QStringLiteral(", ")),
                       offered.isEmpty() ? QStringLiteral("unknown") : offered.join(QStringLiteral(", "))));
}

// ---- exec ---------------------------------------------------------------------------------------

std::unique_ptr<SshChannel> SshSession::openExec(const QString& command) {
  std::lock_guard<std::recursive_mutex> g(m_mutex);
  Impl& d = *m_impl;
  if (!d.session || !ssh_is_connected(d.session)) {
    fail(QStringLiteral("not connected to %1").arg(m_host.destination()));
    return nullptr;
  }
  ssh_channel ch = ssh_channel_new(d.session);
  if (!ch || ssh_channel_open_session(ch) != SSH_OK) {
    fail(QStringLiteral("%1: cannot open a channel: %2").arg(m_host.destination(), sshError(d.session)));
    if (ch) ssh_channel_free(ch);
    return nullptr;
  }
  if (ssh_channel_request_exec(ch, command.toUtf8().constData()) != SSH_OK) {
    fail(QStringLiteral("%1: cannot run a command: %2").arg(m_host.destination(), sshError(d.session)));
    ssh_channel_close(ch);
    ssh_channel_free(ch);
    return nullptr;
  }
  return std::unique_ptr<SshChannel>(new SshChannel(this, ch));
}

SshChannel::~SshChannel() { close(); }

void SshChannel::close() {
  if (!m_channel) return;
  std::lock_guard<std::recursive_mutex> g(m_session->m_mutex);
  auto ch = static_cast<ssh_channel>(m_channel);
  if (m_session->m_impl->session) {
    if (!ssh_channel_is_closed(ch)) {
      ssh_channel_send_eof(ch);
      ssh_channel_close(ch);
    }
    ssh_channel_free(ch);
  }
  m_channel = nullptr;
}

bool SshChannel::read(QByteArray* out, QByteArray* err, int waitMs) {
  if (!m_channel) return false;
  std::lock_guard<std::recursive_mutex> g(m_session->m_mutex);
  auto ch = static_cast<ssh_channel>(m_channel);
  if (!m_session->m_impl->session) {
    m_error = QStringLiteral("the connection was closed");
    return false;
  }
  char buf[32768];
  bool got = false;
  for (int pass = 0; pass < 2; ++pass) {
    for (int isErr = 0; isErr < 2; ++isErr) {
      for (;;) {
        const int n = ssh_channel_read_nonblocking(ch, buf, sizeof buf, isErr);
        if (n == SSH_ERROR) {
          m_error = QStringLiteral("connection to %1 lost: %2")
                        .arg(m_session->m_host.destination(), sshError(m_session->m_impl->session));
          return false;
        }
        if (n <= 0) break;
        got = true;
        (isErr ? err : out)->append(buf, n);
      }
    }
    if (got || waitMs <= 0 || ssh_channel_is_eof(ch)) break;
    const int r = ssh_channel_poll_timeout(ch, waitMs, 0);
    if (r == SSH_ERROR) {
      m_error = QStringLiteral("connection to %1 lost: %2")
                    .arg(m_session->m_host.destination(), sshError(m_session->m_impl->session));
      return false;
    }
  }
  if (!got && ssh_channel_is_eof(ch) && ssh_channel_poll(ch, 0) <= 0 && ssh_channel_poll(ch, 1) <= 0) m_eof = true;
  if (!ssh_is_connected(m_session->m_impl->session)) {
    m_error = QStringLiteral("connection to %1 lost").arg(m_session->m_host.destination());
    return false;
  }
  return true;
}

bool SshChannel::write(const QByteArray& data) {
  if (!m_channel) return false;
  std::lock_guard<std::recursive_mutex> g(m_session->m_mutex);
  return ssh_channel_write(static_cast<ssh_channel>(m_channel), data.constData(), static_cast<uint32_t>(data.size())) ==
         data.size();
}

void SshChannel::sendEof() {
  if (!m_channel) return;
  std::lock_guard<std::recursive_mutex> g(m_session->m_mutex);
  ssh_channel_send_eof(static_cast<ssh_channel>(m_channel));
}

bool SshChannel::atEof() const { return m_eof; }

int SshChannel::exitStatus() {
  if (!m_channel) return -1;
  std::lock_guard<std::recursive_mutex> g(m_session->m_mutex);
  return ssh_channel_get_exit_status(static_cast<ssh_channel>(m_channel));
}

SshExecResult SshSession::exec(const QString& command, int timeoutMs, const SshOutputFn& onOutput,
                               const std::atomic<bool>* cancel, const QByteArray& stdinData) {
  std::lock_guard<std::recursive_mutex> g(m_mutex);
  SshExecResult r;
  std::unique_ptr<SshChannel> ch = openExec(command);
  if (!ch) {
    r.error = m_impl->error;
    return r;
  }
  if (!stdinData.isEmpty()) ch->write(stdinData);
  ch->sendEof();
  QElapsedTimer t;
  t.start();
  for (;;) {
    QByteArray out, err;
    if (!ch->read(&out, &err, 20)) {
      r.error = ch->error();
      return r;
    }
    if (onOutput) {
      if ((!out.isEmpty() || !err.isEmpty()) && !onOutput(out, err)) {
        r.cancelled = true;
        break;
      }
    } else {
      r.out += out;
      r.err += err;
    }
    if (ch->atEof()) break;
    if (cancel && cancel->load()) {
      r.cancelled = true;
      break;
    }
    if (timeoutMs > 0 && t.elapsed() > timeoutMs) {
      r.timedOut = true;
      r.error = QStringLiteral("%1: the command did not finish within %2 s").arg(m_host.destination()).arg(timeoutMs / 1000.0);
      return r;
    }
  }
  if (r.cancelled) {
    ch->close();
    r.ok = true;
    return r;
  }
  // The exit status follows EOF closely; libssh waits for it (or for the channel to close). -1:
  // none came (the command was killed by a signal).
  r.exitCode = ch->exitStatus();
  ch->close();
  r.ok = true;
  return r;
}

// ---- SFTP ---------------------------------------------------------------------------------------

namespace {

struct Sftp {
  sftp_session s = nullptr;
  ~Sftp() {
    if (s) sftp_free(s);
  }
};

QByteArray sha256Prefix(const QString& path, qint64 n) {
  QFile f(path);
  if (!f.open(QIODevice::ReadOnly)) return {};
  QCryptographicHash h(QCryptographicHash::Sha256);
  qint64 left = n;
  while (left > 0) {
    const QByteArray b = f.read(std::min<qint64>(left, 1 << 20));
    if (b.isEmpty()) return {};
    h.addData(b);
    left -= b.size();
  }
  return h.result().toHex();
}

}  // namespace

SshUploadResult SshSession::upload(const QString& localPath, const QString& remotePath, int mode,
                                   const SshProgressFn& progress) {
  std::lock_guard<std::recursive_mutex> g(m_mutex);
  SshUploadResult r;
  QFile in(localPath);
  if (!in.open(QIODevice::ReadOnly)) {
    r.error = QStringLiteral("cannot read %1: %2").arg(localPath, in.errorString());
    return r;
  }
  r.bytes = in.size();
  if (!m_impl->session || !ssh_is_connected(m_impl->session)) {
    r.error = QStringLiteral("not connected to %1").arg(m_host.destination());
    return r;
  }
  const QString part = remotePath + QStringLiteral(".part");
  const QString parent = remotePath.contains(QLatin1Char('/')) ? remotePath.left(remotePath.lastIndexOf(QLatin1Char('/'))) : QString();
  // Size of an earlier partial upload and the sha256 of that many local bytes, compared remotely.
  const QString probe = QStringLiteral("%1if [ -f %2 ]; then wc -c < %2; else echo 0; fi")
                            .arg(parent.isEmpty() ? QString() : QStringLiteral("mkdir -p %1 && ").arg(shellQuote(parent)),
                                 shellQuote(part));
  SshExecResult pr = exec(probe, 30000);
  if (!pr.ok || pr.exitCode != 0) {
    r.error = QStringLiteral("%1: cannot prepare %2: %3%4")
                  .arg(m_host.destination(), remotePath, pr.error, QString::fromUtf8(pr.err).trimmed());
    return r;
  }
  qint64 offset = QString::fromUtf8(pr.out).trimmed().toLongLong();
  if (offset > 0 && offset <= r.bytes) {
    const SshExecResult hr = exec(QStringLiteral("head -c %1 %2 | sha256sum").arg(offset).arg(shellQuote(part)), 120000);
    const QByteArray remoteHash = hr.out.left(64);
    if (!hr.ok || hr.exitCode != 0 || remoteHash != sha256Prefix(localPath, offset)) offset = 0;
  } else {
    offset = 0;
  }

  Sftp sftp;
  sftp.s = sftp_new(m_impl->session);
  if (!sftp.s || sftp_init(sftp.s) != SSH_OK) {
    r.error = QStringLiteral("%1: cannot start SFTP (%2); is the sftp subsystem enabled in sshd_config?")
                  .arg(m_host.destination(), sshError(m_impl->session));
    return r;
  }
  const QByteArray partC = part.toUtf8();
  sftp_file f = sftp_open(sftp.s, partC.constData(), O_WRONLY | O_CREAT | (offset > 0 ? 0 : O_TRUNC), 0600);
  if (!f) {
    r.error = QStringLiteral("%1: cannot write %2 (SFTP error %3); check the directory's permissions and free space")
                  .arg(m_host.destination(), part)
                  .arg(sftp_get_error(sftp.s));
    return r;
  }
  if (offset > 0) {
    sftp_seek64(f, static_cast<uint64_t>(offset));
    in.seek(offset);
  }
  r.resumedFrom = offset;
  qint64 done = offset;
  if (progress && !progress(done, r.bytes)) r.cancelled = true;
  QByteArray buf;
  while (!r.cancelled && done < r.bytes) {
    buf = in.read(32768);  // libssh sends one SFTP packet per call; bigger writes get split anyway
    if (buf.isEmpty()) {
      r.error = QStringLiteral("reading %1 failed: %2").arg(localPath, in.errorString());
      sftp_close(f);
      return r;
    }
    qint64 off = 0;
    while (off < buf.size()) {
      const ssize_t w = sftp_write(f, buf.constData() + off, static_cast<size_t>(buf.size() - off));
      if (w <= 0) {
        r.error = QStringLiteral("%1: writing %2 failed after %3 bytes (SFTP error %4); run the transfer again to resume")
                      .arg(m_host.destination(), part)
                      .arg(done)
                      .arg(sftp_get_error(sftp.s));
        sftp_close(f);
        return r;
      }
      off += w;
      done += w;
    }
    if (progress && !progress(done, r.bytes)) r.cancelled = true;
  }
  sftp_close(f);
  if (r.cancelled) {
    r.error = QStringLiteral("cancelled after %1 of %2 bytes; the next upload resumes from there").arg(done).arg(r.bytes);
    return r;
  }
  sftp_chmod(sftp.s, partC.constData(), static_cast<mode_t>(mode));
  const SshExecResult mv = exec(QStringLiteral("mv -f %1 %2").arg(shellQuote(part), shellQuote(remotePath)), 30000);
  if (!mv.ok || mv.exitCode != 0) {
    r.error = QStringLiteral("%1: cannot move %2 into place: %3%4")
                  .arg(m_host.destination(), remotePath, mv.error, QString::fromUtf8(mv.err).trimmed());
    return r;
  }
  r.ok = true;
  return r;
}

bool SshSession::download(const QString& remotePath, QByteArray* data, QString* error, qint64 maxBytes) {
  const SshExecResult r = exec(QStringLiteral("head -c %1 %2").arg(maxBytes).arg(shellQuote(remotePath)), 120000);
  if (!r.ok || r.exitCode != 0) {
    if (error)
      *error = QStringLiteral("%1: cannot read %2: %3%4")
                   .arg(m_host.destination(), remotePath, r.error, QString::fromUtf8(r.err).trimmed());
    return false;
  }
  *data = r.out;
  return true;
}

QString SshSession::tail(const QString& remotePath, int lines) {
  const SshExecResult r =
      exec(QStringLiteral("tail -n %1 %2 2>/dev/null").arg(std::max(1, lines)).arg(shellQuote(remotePath)), 30000);
  if (!r.ok) return {};
  return QString::fromUtf8(r.out).trimmed();
}

}  // namespace fathom::cluster
