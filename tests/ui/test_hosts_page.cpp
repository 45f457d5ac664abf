// The Hosts page and a cluster launch from the Launch dialog, against a real sshd on loopback:
// add a host through the dialog's fields, the unknown-key prompt shows the server's fingerprint,
// probe fills the table and the registry, a changed key is refused with a warning, and the Launch
// dialog's Cluster target runs the stand-in engine on that host through the job queue.
#include <QtTest>

#include <QComboBox>
#include <QLineEdit>
#include <QListWidget>
#include <QPlainTextEdit>
#include <QSpinBox>
#include <QLabel>
#include <QMessageBox>
#include <QTableWidget>

#include "cluster/jobs/JobQueue.h"
#include "cluster/workspace/HostRepository.h"
#include "cluster/workspace/Workspace.h"
#include "../cluster/test_ssh_fixture.h"
#include "ui/pages/hosts/ClusterTargetWidget.h"
#include "ui/pages/hosts/HostDialog.h"
#include "ui/pages/hosts/HostsPage.h"
#include "ui/pages/launch/LaunchDialog.h"

using namespace fathom;
using namespace fathom::cluster;
using namespace fathom::ui;

class TestHostsPage : public QObject {
  Q_OBJECT
  QTemporaryDir m_tmp;
  std::unique_ptr<ssh_test::ClientKey> m_key;
  std::unique_ptr<ssh_test::TestSshd> m_sshd;

 private Q_SLOTS:
  void initTestCase() {
    qputenv("XDG_CONFIG_HOME", m_tmp.filePath(QStringLiteral("config")).toUtf8());
    if (const QString why = ssh_test::canRunSshd(); !why.isEmpty()) QSKIP(qPrintable(why));
    m_key = std::make_unique<ssh_test::ClientKey>();
    m_sshd = std::make_unique<ssh_test::TestSshd>(QStringLiteral("127.0.0.1"), m_key->publicKey);
    QString err;
    QVERIFY2(m_sshd->start(&err), qPrintable(err));
  }

  void addProbeAndLaunch() {
    Workspace ws;
    QString err;
    QVERIFY2(ws.open(m_tmp.filePath(QStringLiteral("ws")), &err), qPrintable(err));
    JobQueue queue(&ws);
    queue.setEngineBinary(QStringLiteral(FAKE_ENGINE_PATH));
    HostsPage page(&ws, &queue);
    const QString kh = m_tmp.filePath(QStringLiteral("known_hosts"));
    page.setKnownHostsFile(kh);
    QList<HostKeyInfo> asked;
    page.setHostKeyPrompt([&](const HostKeyInfo& k) {
      asked << k;
      return true;
    });
    page.resize(1100, 600);
    page.show();

    // The Add dialog, filled in as a user would.
    HostDialog d(HostConfig{}, false, &page);
    d.idEdit()->setText(QStringLiteral("loop"));
    d.destinationEdit()->setText(QStringLiteral("root@127.0.0.1:%1").arg(m_sshd->port()));
    d.authCombo()->setCurrentIndex(d.authCombo()->findData(ssh_auth::key));
    QVERIFY(!d.problem().isEmpty());  // key file missing
    d.keyEdit()->setText(m_key->privateKey);
    d.workDirEdit()->setText(m_tmp.filePath(QStringLiteral("remote work")));
    d.enginePathEdit()->setText(QStringLiteral(FAKE_ENGINE_PATH));
    d.groupsEdit()->setText(QStringLiteral("lab"));
    QVERIFY2(d.problem().isEmpty(), qPrintable(d.problem()));
    bool ok = false;
    const HostConfig h = d.host(&ok);
    QVERIFY(ok);
    QCOMPARE(h.port, m_sshd->port());
    QCOMPARE(h.user, QStringLiteral("root"));
    QVERIFY(page.saveHost(h));
    QCOMPARE(page.hostTable()->rowCount(), 1);

    QSignalSpy probed(&page, &HostsPage::probeFinished);
    page.probe({QStringLiteral("loop")});
    QTRY_VERIFY_WITH_TIMEOUT(probed.size() == 1, 20000);
    QVERIFY2(probed.first().at(1).toBool(), qPrintable(probed.first().at(2).toString()));
    QCOMPARE(asked.size(), 1);
    QCOMPARE(asked.first().fingerprint, m_sshd->fingerprint());
    QVERIFY(QFile(kh).size() > 0);  // accepted key written
    QTRY_VERIFY(!page.isBusy());
    const auto stored = HostRepository(ws).get(QStringLiteral("loop"));
    QVERIFY(stored && stored->probe.ok && stored->probe.cpus > 0);
    QVERIFY(stored->probe.engineVersion.contains(QStringLiteral("fake")));
    QVERIFY(page.hostTable()->item(0, 4)->text().contains(QString::number(stored->probe.cpus)));
    QCOMPARE(page.groupFilter()->findData(QStringLiteral("lab")) > 0, true);
    if (const QByteArray dir = qgetenv("FATHOM_SCREENSHOT_DIR"); !dir.isEmpty())
      page.grab().save(QDir(QString::fromUtf8(dir)).filePath(QStringLiteral("hosts.png")));

    // Cluster launch through the Launch dialog: one host, one CPU process.
    const QString config = m_tmp.filePath(QStringLiteral("fake.yaml"));
    QFile f(config);
    QVERIFY(f.open(QIODevice::WriteOnly));
    f.write("extends: debug-tiny\n");
    f.close();
    LaunchDialog launch(config, &queue, nullptr);
    launch.targetCombo()->setCurrentIndex(1);
    launch.clusterTarget()->setKnownHostsFile(kh);
    launch.clusterTarget()->reload();
    launch.clusterTarget()->groupCombo()->setCurrentIndex(launch.clusterTarget()->groupCombo()->findData(QStringLiteral("lab")));
    QCOMPARE(launch.clusterTarget()->hostList()->item(0)->checkState(), Qt::Checked);
    launch.overridesEdit()->setPlainText(QStringLiteral("train.max_steps=5"));  // checked by the loader; the stand-in runs on
    QSignalSpy finished(&queue, &JobQueue::runFinished);
    QVERIFY2(launch.launch(), qPrintable(launch.problemLabel()->text()));
    QVERIFY(launch.preview()->toPlainText().contains(QStringLiteral("loop: cd")));
    // Records come back over SSH into the run's session; then Stop reaches the remote rank.
    QTRY_VERIFY_WITH_TIMEOUT(queue.session(launch.launchedRunId()) && queue.session(launch.launchedRunId())->lastStep() >= 3, 20000);
    QVERIFY(queue.stop(launch.launchedRunId()));
    QTRY_VERIFY_WITH_TIMEOUT(finished.size() == 1, 30000);
    const RunRecord run = *ws.runs().get(launch.launchedRunId());
    QVERIFY2(run.status == QStringLiteral("stopped"), qPrintable(run.status + QStringLiteral(": ") + run.error));
    QCOMPARE(run.host, QStringLiteral("cluster"));
    QVERIFY(run.lastStep >= 3);
  }

  void changedKeyIsRefusedWithAWarning() {
    Workspace ws;
    QString err;
    QVERIFY2(ws.open(m_tmp.filePath(QStringLiteral("ws2")), &err), qPrintable(err));
    HostsPage page(&ws, nullptr);
    const QString kh = m_tmp.filePath(QStringLiteral("kh-changed"));
    QFile f(kh);
    QVERIFY(f.open(QIODevice::WriteOnly));
    // A different key on record for this host:port.
    ssh_test::ClientKey other;
    QFile pub(other.publicKey);
    QVERIFY(pub.open(QIODevice::ReadOnly));
    const QStringList parts = QString::fromUtf8(pub.readAll()).split(QLatin1Char(' '));
    f.write(QStringLiteral("[127.0.0.1]:%1 %2 %3\n").arg(m_sshd->port()).arg(parts[0], parts[1]).toUtf8());
    f.close();
    page.setKnownHostsFile(kh);
    bool asked = false;
    page.setHostKeyPrompt([&](const HostKeyInfo&) { return asked = true; });
    HostConfig h;
    h.id = QStringLiteral("loop");
    h.address = QStringLiteral("127.0.0.1");
    h.port = m_sshd->port();
    h.user = QStringLiteral("root");
    h.auth = ssh_auth::key;
    h.identityFile = m_key->privateKey;
    QVERIFY(page.saveHost(h));
    QSignalSpy probed(&page, &HostsPage::probeFinished);
    // The warning box is modal: close it when it shows.
    QTimer closer;
    connect(&closer, &QTimer::timeout, [] {
      for (QWidget* w : QApplication::topLevelWidgets())
        if (auto* box = qobject_cast<QMessageBox*>(w); box && box->isVisible()) box->accept();
    });
    closer.start(50);
    page.probe({QStringLiteral("loop")});
    QTRY_VERIFY_WITH_TIMEOUT(probed.size() == 1, 20000);
    QVERIFY(!probed.first().at(1).toBool());
    QVERIFY(probed.first().at(2).toString().contains(QStringLiteral("CHANGED")));
    QVERIFY(!asked);
    QVERIFY(page.logView()->toPlainText().contains(QStringLiteral("CHANGED")));
  }
};

QTEST_MAIN(TestHostsPage)
#include "test_hosts_page.moc"
