// Real OpenSSH servers for the SSH tests: each TestSshd runs `/usr/sbin/sshd -D` with its own
// config, host key and authorized_keys in a temporary directory, on its own port, either on
// loopback or inside a network namespace (SshNetwork: a bridge in the root namespace and one veth
// per "host", so every host has its own address and the hosts reach each other). The sshd children
// get PR_SET_PDEATHSIG, so they die with the test even when it crashes; destructors also remove the
// namespaces and the bridge. Needs root (sshd, ip netns); canRunSshd() says why not.
#pragma once

#include <QCoreApplication>
#include <QDir>
#include <QFile>
#include <QProcess>
#include <QRandomGenerator>
#include <QTcpServer>
#include <QTcpSocket>
#include <QTemporaryDir>
#include <QThread>

#include <signal.h>
#include <sys/prctl.h>
#include <unistd.h>

#include <memory>

namespace ssh_test {

inline QString run(const QString& program, const QStringList& args, int* rc = nullptr, int timeoutMs = 30000) {
  QProcess p;
  p.setProcessChannelMode(QProcess::MergedChannels);
  p.start(program, args);
  if (!p.waitForFinished(timeoutMs)) {
    p.kill();
    p.waitForFinished(1000);
  }
  if (rc) *rc = p.exitStatus() == QProcess::NormalExit ? p.exitCode() : -1;
  return QString::fromUtf8(p.readAll());
}

// "" when sshd can run here; else why not (for QSKIP).
inline QString canRunSshd() {
  if (geteuid() != 0) return QStringLiteral("the SSH tests start sshd and network namespaces and need root");
  if (!QFile::exists(QStringLiteral("/usr/sbin/sshd"))) return QStringLiteral("/usr/sbin/sshd is not installed (openssh-server)");
  if (QStandardPaths::findExecutable(QStringLiteral("ssh-keygen")).isEmpty())
    return QStringLiteral("ssh-keygen is not installed (openssh-client)");
  return {};
}

inline QString canUseNetns() {
  if (const QString why = canRunSshd(); !why.isEmpty()) return why;
  int rc = 0;
  const QString name = QStringLiteral("fathom-probe-%1").arg(getpid());
  const QString out = run(QStringLiteral("ip"), {QStringLiteral("netns"), QStringLiteral("add"), name}, &rc);
  if (rc != 0) return QStringLiteral("cannot create a network namespace (ip netns add: %1)").arg(out.trimmed());
  run(QStringLiteral("ip"), {QStringLiteral("netns"), QStringLiteral("del"), name});
  return {};
}

inline int freeLoopbackPort() {
  QTcpServer s;
  s.listen(QHostAddress::LocalHost, 0);
  return s.serverPort();
}

// A client identity shared by the servers of one test.
struct ClientKey {
  QTemporaryDir dir;
  QString privateKey, publicKey;
  explicit ClientKey(const QString& passphrase = QString()) {
    privateKey = dir.filePath(QStringLiteral("id_ed25519"));
    publicKey = privateKey + QStringLiteral(".pub");
    run(QStringLiteral("ssh-keygen"), {QStringLiteral("-q"), QStringLiteral("-t"), QStringLiteral("ed25519"), QStringLiteral("-N"),
                                       passphrase, QStringLiteral("-f"), privateKey, QStringLiteral("-C"), QStringLiteral("fathom-test")});
  }
};

class TestSshd {
 public:
  // `netns` "" = the root namespace (listen on `address`, usually 127.0.0.1).
  TestSshd(const QString& address, const QString& authorizedKey, const QString& netns = QString(), int port = 0)
      : m_address(address), m_netns(netns) {
    m_port = port > 0 ? port : (netns.isEmpty() ? freeLoopbackPort() : 2222);
    QDir().mkpath(QStringLiteral("/run/sshd"));  // privilege separation directory
    m_hostKey = m_dir.filePath(QStringLiteral("host_ed25519"));
    regenerateHostKey();
    QFile::copy(authorizedKey, m_dir.filePath(QStringLiteral("authorized_keys")));
    writeConfig(false);
  }

  void writeConfig(bool passwords) {
    QFile cfg(m_dir.filePath(QStringLiteral("sshd_config")));
    cfg.open(QIODevice::WriteOnly | QIODevice::Truncate);
    cfg.write(QStringLiteral("Port %1\nListenAddress %2\nHostKey %3\nPidFile %4\nAuthorizedKeysFile %5\n"
                             "PermitRootLogin yes\nPasswordAuthentication %6\nKbdInteractiveAuthentication no\n"
                             "UsePAM no\nStrictModes no\nSubsystem sftp internal-sftp\nAllowTcpForwarding yes\n"
                             "LogLevel ERROR\nMaxStartups 50\nMaxSessions 50\nMaxAuthTries 10\n")
                  .arg(m_port)
                  .arg(m_address, m_hostKey, m_dir.filePath(QStringLiteral("sshd.pid")),
                       m_dir.filePath(QStringLiteral("authorized_keys")), passwords ? QStringLiteral("yes") : QStringLiteral("no"))
                  .toUtf8());
    cfg.close();
  }

  // Password logins as root with `password`, without touching the system: sshd runs in a mount
  // namespace of its own where /etc/shadow is a copy whose root entry has that password's hash.
  // Call before start(). False (with `error`) when the pieces are missing (openssl, unshare).
  bool enablePasswordLogin(const QString& password, QString* error) {
    int rc = 0;
    const QString hash = run(QStringLiteral("openssl"), {QStringLiteral("passwd"), QStringLiteral("-6"), password}, &rc).trimmed();
    if (rc != 0 || !hash.startsWith(QLatin1String("$6$"))) {
      *error = QStringLiteral("openssl passwd -6 failed: %1").arg(hash);
      return false;
    }
    if (QStandardPaths::findExecutable(QStringLiteral("unshare")).isEmpty()) {
      *error = QStringLiteral("unshare (util-linux) is not installed");
      return false;
    }
    QFile sys(QStringLiteral("/etc/shadow"));
    if (!sys.open(QIODevice::ReadOnly)) {
      *error = QStringLiteral("cannot read /etc/shadow");
      return false;
    }
    QStringList lines;
    for (const QString& line : QString::fromUtf8(sys.readAll()).split(QLatin1Char('\n'), Qt::SkipEmptyParts)) {
      QStringList f = line.split(QLatin1Char(':'));
      if (f.value(0) == QLatin1String("root") && f.size() > 2) f[1] = hash;
      lines << f.join(QLatin1Char(':'));
    }
    m_shadow = m_dir.filePath(QStringLiteral("shadow"));
    QFile out(m_shadow);
    if (!out.open(QIODevice::WriteOnly)) return false;
    out.write(lines.join(QLatin1Char('\n')).toUtf8() + '\n');
    out.close();
    QFile::setPermissions(m_shadow, QFileDevice::ReadOwner | QFileDevice::WriteOwner);
    writeConfig(true);
    return true;
  }
  ~TestSshd() { stop(); }

  void regenerateHostKey() {
    QFile::remove(m_hostKey);
    QFile::remove(m_hostKey + QStringLiteral(".pub"));
    run(QStringLiteral("ssh-keygen"), {QStringLiteral("-q"), QStringLiteral("-t"), QStringLiteral("ed25519"), QStringLiteral("-N"),
                                       QString(), QStringLiteral("-f"), m_hostKey});
  }

  bool start(QString* error) {
    m_proc = std::make_unique<QProcess>();
    m_proc->setProcessChannelMode(QProcess::MergedChannels);
    m_proc->setChildProcessModifier([] { prctl(PR_SET_PDEATHSIG, SIGKILL); });
    QStringList args{QStringLiteral("/usr/sbin/sshd"), QStringLiteral("-D"), QStringLiteral("-e"), QStringLiteral("-f"),
                     m_dir.filePath(QStringLiteral("sshd_config"))};
    if (!m_shadow.isEmpty()) {
      // A private mount namespace: the bind mount of the test's shadow file is seen by this sshd only.
      m_proc->start(QStringLiteral("unshare"), QStringList{QStringLiteral("-m"), QStringLiteral("--propagation"), QStringLiteral("private"),
                                                           QStringLiteral("sh"), QStringLiteral("-c"),
                                                           QStringLiteral("mount --bind \"$0\" /etc/shadow && exec \"$@\""), m_shadow} +
                                                   args);
    } else if (m_netns.isEmpty()) {
      m_proc->start(args.takeFirst(), args);
    } else {
      m_proc->start(QStringLiteral("ip"), QStringList{QStringLiteral("netns"), QStringLiteral("exec"), m_netns} + args);
    }
    if (!m_proc->waitForStarted(5000)) {
      *error = QStringLiteral("sshd did not start: %1").arg(m_proc->errorString());
      return false;
    }
    for (int i = 0; i < 200; ++i) {
      QTcpSocket s;
      s.connectToHost(m_address, static_cast<quint16>(m_port));
      if (s.waitForConnected(100)) return true;
      if (m_proc->state() == QProcess::NotRunning) break;
      QThread::msleep(25);
    }
    *error = QStringLiteral("sshd on %1:%2 does not accept connections: %3")
                 .arg(m_address)
                 .arg(m_port)
                 .arg(QString::fromUtf8(m_proc->readAll()));
    return false;
  }

  void stop() {
    if (!m_proc) return;
    m_proc->kill();
    m_proc->waitForFinished(3000);
    m_proc.reset();
  }

  QString address() const { return m_address; }
  int port() const { return m_port; }
  QString hostKeyPub() const { return m_hostKey + QStringLiteral(".pub"); }
  // "SHA256:..." of the host key, as ssh-keygen -l shows it.
  QString fingerprint() const {
    const QString out = run(QStringLiteral("ssh-keygen"), {QStringLiteral("-l"), QStringLiteral("-E"), QStringLiteral("sha256"),
                                                           QStringLiteral("-f"), hostKeyPub()});
    return out.section(QLatin1Char(' '), 1, 1);
  }
  // A known_hosts line for this server ("[addr]:port keytype key").
  QString knownHostsLine() const {
    QFile f(hostKeyPub());
    f.open(QIODevice::ReadOnly);
    const QStringList parts = QString::fromUtf8(f.readAll()).trimmed().split(QLatin1Char(' '));
    return QStringLiteral("[%1]:%2 %3 %4").arg(m_address).arg(m_port).arg(parts.value(0), parts.value(1));
  }

 private:
  QTemporaryDir m_dir;
  QString m_address, m_netns, m_hostKey, m_shadow;
  int m_port = 0;
  std::unique_ptr<QProcess> m_proc;
};

// N network namespaces on one bridge: host i has address 10.<a>.<b>.(10+i) inside namespace
// names()[i]; the root namespace (the workbench) is 10.<a>.<b>.1.
class SshNetwork {
 public:
  explicit SshNetwork(int hosts) {
    const int tag = static_cast<int>(getpid() % 10000);
    m_bridge = QStringLiteral("fbr%1").arg(tag);
    const int a = 200 + static_cast<int>(QRandomGenerator::global()->bounded(50));
    const int b = static_cast<int>(QRandomGenerator::global()->bounded(250));
    m_prefix = QStringLiteral("10.%1.%2.").arg(a).arg(b);
    auto ip = [this](const QStringList& args) {
      int rc = 0;
      const QString out = run(QStringLiteral("ip"), args, &rc);
      if (rc != 0 && m_error.isEmpty()) m_error = QStringLiteral("ip %1: %2").arg(args.join(QLatin1Char(' ')), out.trimmed());
    };
    ip({QStringLiteral("link"), QStringLiteral("add"), m_bridge, QStringLiteral("type"), QStringLiteral("bridge")});
    ip({QStringLiteral("addr"), QStringLiteral("add"), m_prefix + QStringLiteral("1/24"), QStringLiteral("dev"), m_bridge});
    ip({QStringLiteral("link"), QStringLiteral("set"), m_bridge, QStringLiteral("up")});
    for (int i = 0; i < hosts; ++i) {
      const QString ns = QStringLiteral("fathom-ssh-%1-%2").arg(getpid()).arg(i);
      const QString outer = QStringLiteral("fv%1h%2").arg(tag).arg(i), inner = QStringLiteral("fp%1h%2").arg(tag).arg(i);
      m_links << outer;
      const QString addr = m_prefix + QString::number(10 + i);
      ip({QStringLiteral("netns"), QStringLiteral("add"), ns});
      m_names << ns;
      m_addresses << addr;
      ip({QStringLiteral("link"), QStringLiteral("add"), outer, QStringLiteral("type"), QStringLiteral("veth"), QStringLiteral("peer"),
          QStringLiteral("name"), inner});
      ip({QStringLiteral("link"), QStringLiteral("set"), inner, QStringLiteral("netns"), ns});
      ip({QStringLiteral("link"), QStringLiteral("set"), outer, QStringLiteral("master"), m_bridge, QStringLiteral("up")});
      ip({QStringLiteral("-n"), ns, QStringLiteral("addr"), QStringLiteral("add"), addr + QStringLiteral("/24"), QStringLiteral("dev"), inner});
      ip({QStringLiteral("-n"), ns, QStringLiteral("link"), QStringLiteral("set"), inner, QStringLiteral("up")});
      ip({QStringLiteral("-n"), ns, QStringLiteral("link"), QStringLiteral("set"), QStringLiteral("lo"), QStringLiteral("up")});
    }
  }
  ~SshNetwork() {
    for (const QString& ns : m_names) {
      // Processes a test left in the namespace (engines started over SSH) go with it.
      run(QStringLiteral("sh"), {QStringLiteral("-c"), QStringLiteral("ip netns pids %1 | xargs -r kill -9").arg(ns)});
      run(QStringLiteral("ip"), {QStringLiteral("netns"), QStringLiteral("del"), ns});
    }
    run(QStringLiteral("ip"), {QStringLiteral("link"), QStringLiteral("del"), m_bridge});
  }
  QString error() const { return m_error; }
  const QStringList& names() const { return m_names; }
  const QStringList& addresses() const { return m_addresses; }
  // Host i's cable: the veth end on the bridge (root namespace). Down = host i is cut off.
  bool setLinkUp(int i, bool up) {
    int rc = 0;
    run(QStringLiteral("ip"), {QStringLiteral("link"), QStringLiteral("set"), m_links.at(i), up ? QStringLiteral("up") : QStringLiteral("down")}, &rc);
    return rc == 0;
  }
  // Kills the processes in host i's namespace whose command line contains `needle`.
  void killMatching(int i, const QByteArray& needle) {
    const QString out = run(QStringLiteral("ip"), {QStringLiteral("netns"), QStringLiteral("pids"), m_names.at(i)});
    for (const QString& pid : out.split(QLatin1Char('\n'), Qt::SkipEmptyParts)) {
      QFile f(QStringLiteral("/proc/%1/cmdline").arg(pid));
      if (f.open(QIODevice::ReadOnly) && f.readAll().contains(needle)) ::kill(pid.toInt(), SIGKILL);
    }
  }

 private:
  QString m_bridge, m_prefix, m_error;
  QStringList m_names, m_addresses, m_links;
};

// The OS keychain for tests, never the user's own: with dbus-daemon and gnome-keyring-daemon
// installed, a private session bus and a Secret Service on it (keyring files in a temporary
// directory, unlocked with a throw-away password); without them, or with
// FATHOM_TEST_NO_KEYCHAIN=1, a session bus address where nothing listens, so the keychain honestly
// reports "no service". Call before anything touches D-Bus (it sets DBUS_SESSION_BUS_ADDRESS).
class PrivateKeychain {
 public:
  PrivateKeychain() {
    const bool wanted = qEnvironmentVariableIsEmpty("FATHOM_TEST_NO_KEYCHAIN");
    const QString dbus = QStandardPaths::findExecutable(QStringLiteral("dbus-daemon"));
    const QString gk = QStandardPaths::findExecutable(QStringLiteral("gnome-keyring-daemon"));
    qputenv("DBUS_SESSION_BUS_ADDRESS", "unix:path=" + m_dir.filePath(QStringLiteral("no-bus")).toUtf8());
    if (!wanted || dbus.isEmpty() || gk.isEmpty()) {
      m_why = !wanted ? QStringLiteral("FATHOM_TEST_NO_KEYCHAIN is set") : QStringLiteral("dbus-daemon or gnome-keyring-daemon is not installed");
      return;
    }
    m_bus = std::make_unique<QProcess>();
    m_bus->setChildProcessModifier([] { prctl(PR_SET_PDEATHSIG, SIGKILL); });
    m_bus->start(dbus, {QStringLiteral("--session"), QStringLiteral("--nofork"), QStringLiteral("--print-address=1")});
    if (!m_bus->waitForStarted(5000) || !m_bus->waitForReadyRead(5000)) {
      m_why = QStringLiteral("dbus-daemon did not start");
      return;
    }
    const QByteArray address = m_bus->readLine().trimmed();
    QProcessEnvironment env = QProcessEnvironment::systemEnvironment();
    env.insert(QStringLiteral("DBUS_SESSION_BUS_ADDRESS"), QString::fromUtf8(address));
    env.insert(QStringLiteral("HOME"), m_dir.path());
    env.insert(QStringLiteral("XDG_DATA_HOME"), m_dir.filePath(QStringLiteral("data")));
    env.insert(QStringLiteral("XDG_RUNTIME_DIR"), m_dir.path());
    m_keyring = std::make_unique<QProcess>();
    m_keyring->setProcessEnvironment(env);
    m_keyring->setChildProcessModifier([] { prctl(PR_SET_PDEATHSIG, SIGKILL); });
    m_keyring->start(gk, {QStringLiteral("--foreground"), QStringLiteral("--components=secrets"), QStringLiteral("--unlock")});
    if (!m_keyring->waitForStarted(5000)) {
      m_why = QStringLiteral("gnome-keyring-daemon did not start");
      return;
    }
    m_keyring->write("fathom-test-keyring");
    m_keyring->closeWriteChannel();
    // Ready once it printed its control socket.
    for (int i = 0; i < 100 && !m_keyring->readAllStandardOutput().contains("GNOME_KEYRING_CONTROL") ; ++i) m_keyring->waitForReadyRead(100);
    qputenv("DBUS_SESSION_BUS_ADDRESS", address);
  }
  ~PrivateKeychain() {
    for (auto* p : {m_keyring.get(), m_bus.get()}) {
      if (!p) continue;
      p->kill();
      p->waitForFinished(3000);
    }
  }
  // Why no keychain service was started ("" when one was).
  QString whyNone() const { return m_why; }

 private:
  QTemporaryDir m_dir;
  std::unique_ptr<QProcess> m_bus, m_keyring;
  QString m_why;
};

}  // namespace ssh_test
