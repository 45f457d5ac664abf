// SshSession against real OpenSSH servers on loopback: key, agent and encrypted-key logins, host
// key policy (known, hashed, unknown -> callback, changed -> refused), exec, quoting, SFTP upload
// with resume after a cut, streaming, and a jump host.
#include <QCryptographicHash>
#include <QStandardPaths>
#include <QTest>

#include "cluster/hosts/HostProbe.h"
#include "cluster/hosts/ShellQuote.h"
#include "cluster/hosts/SshSession.h"
#include "test_ssh_fixture.h"

using namespace fathom::cluster;
using ssh_test::ClientKey;
using ssh_test::TestSshd;

class TestSshSession : public QObject {
  Q_OBJECT

  std::unique_ptr<ClientKey> m_key;
  std::unique_ptr<TestSshd> m_sshd;
  QTemporaryDir m_tmp;

  HostConfig host() const {
    HostConfig h;
    h.id = QStringLiteral("loop");
    h.address = m_sshd->address();
    h.port = m_sshd->port();
    h.user = QStringLiteral("root");
    h.auth = ssh_auth::key;
    h.identityFile = m_key->privateKey;
    return h;
  }
  QString knownHosts(const QString& name, const QStringList& lines) {
    const QString path = m_tmp.filePath(name);
    QFile f(path);
    f.open(QIODevice::WriteOnly | QIODevice::Truncate);
    for (const QString& l : lines) f.write((l + QLatin1Char('\n')).toUtf8());
    return path;
  }

 private Q_SLOTS:
  void initTestCase() {
    if (const QString why = ssh_test::canRunSshd(); !why.isEmpty()) QSKIP(qPrintable(why));
    m_key = std::make_unique<ClientKey>();
    m_sshd = std::make_unique<TestSshd>(QStringLiteral("127.0.0.1"), m_key->publicKey);
    QString err;
    QVERIFY2(m_sshd->start(&err), qPrintable(err));
  }

  // GLOO_SOCKET_IFNAME: the interface carrying the host's own address (its name resolved there
  // first), else the route to the peer's, never loopback; veth names lose their "@ifN".
  void socketInterfaceFromIpOutput() {
    const QByteArray out =
        "1: lo    inet 127.0.0.1/8 scope host lo\\       valid_lft forever preferred_lft forever\n"
        "2: eth0@if12    inet 10.0.0.11/24 brd 10.0.0.255 scope global eth0\\       valid_lft forever\n"
        "3: ib0    inet 192.168.7.11/24 brd 192.168.7.255 scope global ib0\n"
        "@@route\n"
        "10.0.0.10 dev eth0 src 10.0.0.11 uid 0 \\    cache\n";
    QCOMPARE(parseSocketInterface(out, QStringLiteral("10.0.0.11")), QStringLiteral("eth0"));
    QCOMPARE(parseSocketInterface(out, QStringLiteral("192.168.7.11")), QStringLiteral("ib0"));
    QCOMPARE(parseSocketInterface(out, QStringLiteral("gpu1")), QStringLiteral("eth0"));  // by the route
    QCOMPARE(parseSocketInterface("@@own 192.168.7.11\n" + out, QStringLiteral("gpu1")), QStringLiteral("ib0"));
    QCOMPARE(parseSocketInterface("@@route\nlocal 10.0.0.11 dev lo table local src 10.0.0.11\n", QStringLiteral("x")), QString());
  }

  void shellQuoteIsInert() {
    QCOMPARE(shellQuote(QStringLiteral("plain/path-1.yaml")), QStringLiteral("plain/path-1.yaml"));
    QCOMPARE(shellQuote(QString()), QStringLiteral("''"));
    QCOMPARE(shellQuote(QStringLiteral("it's")), QStringLiteral("'it'\\''s'"));
    QCOMPARE(shellAssign(QStringLiteral("A=$(x)")), QStringLiteral("A='$(x)'"));
    QCOMPARE(shellAssign(QStringLiteral("A;rm=x")), QString());  // not a name: dropped
  }

  void connectWithKeyAndExec() {
    SshSession s;
    s.setKnownHostsFile(knownHosts(QStringLiteral("kh1"), {m_sshd->knownHostsLine()}));
    QVERIFY2(s.connect(host()), qPrintable(s.lastError()));
    const SshExecResult r = s.exec(QStringLiteral("echo hi; echo err >&2; exit 3"));
    QVERIFY2(r.ok, qPrintable(r.error));
    QCOMPARE(r.exitCode, 3);
    QCOMPARE(r.out, QByteArray("hi\n"));
    QCOMPARE(r.err, QByteArray("err\n"));
    QCOMPARE(s.lastHostKey().fingerprint, m_sshd->fingerprint());
  }

  void hashedKnownHostsEntry() {
    const QString kh = knownHosts(QStringLiteral("kh-hashed"), {m_sshd->knownHostsLine()});
    int rc = 0;
    ssh_test::run(QStringLiteral("ssh-keygen"), {QStringLiteral("-H"), QStringLiteral("-f"), kh}, &rc);
    QCOMPARE(rc, 0);
    QFile f(kh);
    QVERIFY(f.open(QIODevice::ReadOnly));
    QVERIFY(f.readAll().startsWith("|1|"));  // really hashed
    SshSession s;
    s.setKnownHostsFile(kh);
    bool asked = false;
    s.setCallbacks({[&](const HostKeyInfo&) { return asked = true; }, {}});
    QVERIFY2(s.connect(host()), qPrintable(s.lastError()));
    QVERIFY(!asked);
  }

  void unknownKeyAsksAndRemembers() {
    const QString kh = m_tmp.filePath(QStringLiteral("sub/known_hosts"));  // directory does not exist yet
    HostKeyInfo seen;
    int asked = 0;
    {
      SshSession s;
      s.setKnownHostsFile(kh);
      s.setCallbacks({[&](const HostKeyInfo& k) {
                        seen = k;
                        ++asked;
                        return false;
                      },
                      {}});
      QVERIFY(!s.connect(host()));
      QVERIFY(s.lastError().contains(QStringLiteral("not known")));
      QCOMPARE(asked, 1);
      QCOMPARE(seen.fingerprint, m_sshd->fingerprint());
      QCOMPARE(seen.keyType, QStringLiteral("ssh-ed25519"));
      QVERIFY(!QFile::exists(kh));
    }
    {
      SshSession s;
      s.setKnownHostsFile(kh);
      s.setCallbacks({[&](const HostKeyInfo&) { return ++asked > 0; }, {}});
      QVERIFY2(s.connect(host()), qPrintable(s.lastError()));
      QCOMPARE(asked, 2);
      QVERIFY(QFile::exists(kh));
    }
    SshSession again;  // no callback: the key is known now
    again.setKnownHostsFile(kh);
    QVERIFY2(again.connect(host()), qPrintable(again.lastError()));
  }

  void changedKeyIsRefused() {
    ClientKey key;
    TestSshd other(QStringLiteral("127.0.0.1"), m_key->publicKey);
    QString err;
    QVERIFY2(other.start(&err), qPrintable(err));
    const QString kh = knownHosts(QStringLiteral("kh-changed"), {other.knownHostsLine()});
    HostConfig h = host();
    h.port = other.port();
    {
      SshSession s;
      s.setKnownHostsFile(kh);
      QVERIFY2(s.connect(h), qPrintable(s.lastError()));
    }
    other.stop();
    other.regenerateHostKey();
    QVERIFY2(other.start(&err), qPrintable(err));
    SshSession s;
    s.setKnownHostsFile(kh);
    bool asked = false;
    s.setCallbacks({[&](const HostKeyInfo&) { return asked = true; }, {}});  // must not be consulted
    QVERIFY(!s.connect(h));
    QVERIFY(!asked);
    QVERIFY(s.lastHostKeyChanged());
    QVERIFY2(s.lastError().contains(QStringLiteral("CHANGED")), qPrintable(s.lastError()));
    QVERIFY(s.lastError().contains(kh));
    QCOMPARE(s.lastHostKey().fingerprint, other.fingerprint());
  }

  void encryptedKeyAsksPassphrase() {
    ClientKey enc(QStringLiteral("s3cret pass"));
    TestSshd srv(QStringLiteral("127.0.0.1"), enc.publicKey);
    QString err;
    QVERIFY2(srv.start(&err), qPrintable(err));
    HostConfig h = host();
    h.port = srv.port();
    h.identityFile = enc.privateKey;
    const QString kh = knownHosts(QStringLiteral("kh-enc"), {srv.knownHostsLine()});
    {
      SshSession s;  // no way to ask: fails with a clear message
      s.setKnownHostsFile(kh);
      QVERIFY(!s.connect(h));
      QVERIFY2(s.lastError().contains(QStringLiteral("encrypted")), qPrintable(s.lastError()));
    }
    SshSession s;
    s.setKnownHostsFile(kh);
    QStringList kinds;
    s.setCallbacks({{}, [&](const QString& kind, const QString&, QByteArray* secret) {
                      kinds << kind;
                      *secret = kinds.size() == 1 ? QByteArray("wrong") : QByteArray("s3cret pass");
                      return true;
                    }});
    QVERIFY2(s.connect(h), qPrintable(s.lastError()));
    QCOMPARE(kinds, (QStringList{QStringLiteral("passphrase"), QStringLiteral("passphrase")}));
  }

  void agentLogin() {
    if (QStandardPaths::findExecutable(QStringLiteral("ssh-agent")).isEmpty()) QSKIP("ssh-agent is not installed");
    const QString sock = m_tmp.filePath(QStringLiteral("agent.sock"));
    const QString out = ssh_test::run(QStringLiteral("ssh-agent"), {QStringLiteral("-s"), QStringLiteral("-a"), sock});
    const QString pid = out.section(QStringLiteral("SSH_AGENT_PID="), 1).section(QLatin1Char(';'), 0, 0);
    QVERIFY2(!pid.isEmpty(), qPrintable(out));
    const QByteArray oldSock = qgetenv("SSH_AUTH_SOCK");
    qputenv("SSH_AUTH_SOCK", sock.toUtf8());
    int rc = 0;
    ssh_test::run(QStringLiteral("ssh-add"), {m_key->privateKey}, &rc);
    SshSession s;
    s.setKnownHostsFile(knownHosts(QStringLiteral("kh-agent"), {m_sshd->knownHostsLine()}));
    HostConfig h = host();
    h.auth = ssh_auth::agent;
    h.identityFile.clear();
    const bool ok = s.connect(h);
    const QString err = s.lastError();
    ::kill(pid.toInt(), SIGTERM);
    if (oldSock.isEmpty()) qunsetenv("SSH_AUTH_SOCK");
    else qputenv("SSH_AUTH_SOCK", oldSock);
    QCOMPARE(rc, 0);
    QVERIFY2(ok, qPrintable(err));
  }

  void quotedValuesDoNotInject() {
    SshSession s;
    s.setKnownHostsFile(knownHosts(QStringLiteral("kh-q"), {m_sshd->knownHostsLine()}));
    QVERIFY2(s.connect(host()), qPrintable(s.lastError()));
    const QString marker = m_tmp.filePath(QStringLiteral("pwned"));
    const QStringList values = {QStringLiteral("$(touch %1)").arg(marker), QStringLiteral("`touch %1`").arg(marker),
                                QStringLiteral("a'b\"c; touch %1").arg(marker), QStringLiteral("line1\nline2 && touch %1").arg(marker),
                                QStringLiteral("  spaces  and\ttabs "), QStringLiteral("it's $HOME | * ?")};
    for (const QString& v : values) {
      const SshExecResult r = s.exec(QStringLiteral("printf %s %1").arg(shellQuote(v)));
      QVERIFY2(r.ok && r.exitCode == 0, qPrintable(r.error + QString::fromUtf8(r.err)));
      QCOMPARE(QString::fromUtf8(r.out), v);
    }
    QVERIFY(!QFile::exists(marker));
  }

  void uploadResumesAfterACut() {
    SshSession s;
    s.setKnownHostsFile(knownHosts(QStringLiteral("kh-up"), {m_sshd->knownHostsLine()}));
    QVERIFY2(s.connect(host()), qPrintable(s.lastError()));
    const QString local = m_tmp.filePath(QStringLiteral("payload.bin"));
    {
      QFile f(local);
      QVERIFY(f.open(QIODevice::WriteOnly));
      QByteArray b(3 << 20, Qt::Uninitialized);
      for (int i = 0; i < b.size(); ++i) b[i] = static_cast<char>((static_cast<uint32_t>(i) * 7919u) >> 3);
      f.write(b);
    }
    const QString remote = m_tmp.filePath(QStringLiteral("remote dir/it's here/payload.bin"));
    // The cut: cancel after ~1 MiB.
    SshUploadResult r = s.upload(local, remote, 0755, [](qint64 done, qint64) { return done < (1 << 20); });
    QVERIFY(!r.ok);
    QVERIFY(r.cancelled);
    QVERIFY(!QFile::exists(remote));
    const qint64 partial = QFileInfo(remote + QStringLiteral(".part")).size();
    QVERIFY(partial >= (1 << 20));
    QList<qint64> seen;
    r = s.upload(local, remote, 0755, [&](qint64 done, qint64) {
      seen << done;
      return true;
    });
    QVERIFY2(r.ok, qPrintable(r.error));
    QCOMPARE(r.resumedFrom, partial);
    QCOMPARE(seen.first(), partial);
    QCOMPARE(seen.last(), r.bytes);
    QFile a(local), b(remote);
    QVERIFY(a.open(QIODevice::ReadOnly) && b.open(QIODevice::ReadOnly));
    QCOMPARE(QCryptographicHash::hash(b.readAll(), QCryptographicHash::Sha256),
             QCryptographicHash::hash(a.readAll(), QCryptographicHash::Sha256));
    QVERIFY(QFileInfo(remote).isExecutable());

    // A .part that is not a prefix of the file is started over, never continued.
    QFile junk(remote + QStringLiteral(".part"));
    QVERIFY(junk.open(QIODevice::WriteOnly));
    junk.write(QByteArray(4096, 'x'));
    junk.close();
    r = s.upload(local, remote, 0644);
    QVERIFY2(r.ok, qPrintable(r.error));
    QCOMPARE(r.resumedFrom, 0);
    QCOMPARE(QFileInfo(remote).size(), QFileInfo(local).size());
  }

  void streamingAndTail() {
    SshSession s;
    s.setKnownHostsFile(knownHosts(QStringLiteral("kh-st"), {m_sshd->knownHostsLine()}));
    QVERIFY2(s.connect(host()), qPrintable(s.lastError()));
    QByteArray got;
    QElapsedTimer t;
    t.start();
    const SshExecResult r = s.exec(QStringLiteral("while :; do echo tick; sleep 0.05; done"), 10000,
                                   [&](const QByteArray& out, const QByteArray&) {
                                     got += out;
                                     return got.count('\n') < 3;
                                   });
    QVERIFY(r.cancelled);
    QVERIFY(got.startsWith("tick\ntick\n"));
    QVERIFY(t.elapsed() < 5000);
    const QString file = m_tmp.filePath(QStringLiteral("log with space.txt"));
    QFile f(file);
    QVERIFY(f.open(QIODevice::WriteOnly));
    for (int i = 0; i < 50; ++i) f.write(QByteArray::number(i) + '\n');
    f.close();
    QCOMPARE(s.tail(file, 2), QStringLiteral("48\n49"));
    QCOMPARE(s.tail(m_tmp.filePath(QStringLiteral("missing")), 2), QString());
    // Timeouts are reported, not hung on.
    const SshExecResult slow = s.exec(QStringLiteral("sleep 5"), 300);
    QVERIFY(slow.timedOut);
  }

  void throughJumpHost() {
    TestSshd target(QStringLiteral("127.0.0.1"), m_key->publicKey);
    QString err;
    QVERIFY2(target.start(&err), qPrintable(err));
    SshSession s;
    s.setKnownHostsFile(knownHosts(QStringLiteral("kh-jump"), {m_sshd->knownHostsLine(), target.knownHostsLine()}));
    HostConfig h = host();
    h.port = target.port();
    h.jumpHost = QStringLiteral("root@127.0.0.1:%1").arg(m_sshd->port());
    QVERIFY2(s.connect(h), qPrintable(s.lastError()));
    QCOMPARE(s.lastHostKey().fingerprint, target.fingerprint());  // the target's key was checked last
    const SshExecResult r = s.exec(QStringLiteral("echo via-jump"));
    QVERIFY2(r.ok, qPrintable(r.error));
    QCOMPARE(r.out, QByteArray("via-jump\n"));
    // Bulk data through the bridge.
    const SshExecResult big = s.exec(QStringLiteral("head -c 2000000 /dev/zero"));
    QVERIFY2(big.ok, qPrintable(big.error));
    QCOMPARE(big.out.size(), 2000000);
  }
};

QTEST_GUILESS_MAIN(TestSshSession)
#include "test_ssh_session.moc"
