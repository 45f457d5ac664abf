// The Hosts page and a cluster launch from the Launch dialog, against a real sshd on loopback:
// add a host through the dialog's fields, the unknown-key prompt shows the server's fingerprint,
// probe fills the table and the registry, a changed key is refused with a warning, and the Launch
// dialog's Cluster target runs the stand-in engine on that host through the job queue. Password
// login (sshd with its own /etc/shadow in a private mount namespace): the password is remembered
// in the OS keychain when asked (a private Secret Service, see PrivateKeychain) and is never found
// in the workspace or the settings; without a keychain service the page says so and asks again.
#include <QtTest>

#include <QComboBox>
#include <QDirIterator>
#include <QProcess>
#include <QSettings>
#include <QLineEdit>
#include <QListWidget>
#include <QPlainTextEdit>
#include <QSpinBox>
#include <QLabel>
#include <QMessageBox>
#include <QTableWidget>
#include <QTreeWidget>

#include "cluster/hosts/Keychain.h"
#include "cluster/jobs/JobQueue.h"
#include "cluster/launch/SshLauncher.h"
#include "cluster/workspace/HostRepository.h"
#include "cluster/workspace/Workspace.h"
#include "../cluster/test_ssh_fixture.h"
#include "ui/pages/hosts/ClusterTargetWidget.h"
#include "ui/pages/hosts/HostDialog.h"
#include "ui/pages/hosts/HostsPage.h"
#include "ui/pages/launch/LaunchDialog.h"
#include "ui/pages/monitor/RankHeatMap.h"
#include "ui/pages/monitor/RunDashboard.h"
#include "ui/charts/ChartPanel.h"
#include "cluster/jobs/RunSession.h"

using namespace fathom;
using namespace fathom::cluster;
using namespace fathom::ui;

class TestHostsPage : public QObject {
  Q_OBJECT
  QTemporaryDir m_tmp;
  std::unique_ptr<ssh_test::ClientKey> m_key;
  std::unique_ptr<ssh_test::TestSshd> m_sshd;
  std::unique_ptr<ssh_test::PrivateKeychain> m_keychain;

  // Files under `dir` whose bytes contain `needle`.
  static QStringList filesContaining(const QString& dir, const QByteArray& needle) {
    QStringList hits;
    QDirIterator it(dir, QDir::Files | QDir::Hidden | QDir::System, QDirIterator::Subdirectories);
    while (it.hasNext()) {
      QFile f(it.next());
      if (f.open(QIODevice::ReadOnly) && f.readAll().contains(needle)) hits << f.fileName();
    }
    return hits;
  }

 private Q_SLOTS:
  void initTestCase() {
    qputenv("XDG_CONFIG_HOME", m_tmp.filePath(QStringLiteral("config")).toUtf8());
    m_keychain = std::make_unique<ssh_test::PrivateKeychain>();  // before anything uses D-Bus
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

  void passwordRememberedOnlyInTheKeychain() {
    const QByteArray password = "Fathom-pw-" + QByteArray::number(QRandomGenerator::global()->generate(), 16);
    ssh_test::TestSshd sshd(QStringLiteral("127.0.0.1"), m_key->publicKey);
    QString err;
    if (!sshd.enablePasswordLogin(QString::fromUtf8(password), &err)) QSKIP(qPrintable(err));
    QVERIFY2(sshd.start(&err), qPrintable(err));
    Workspace ws;
    QVERIFY2(ws.open(m_tmp.filePath(QStringLiteral("ws-pw")), &err), qPrintable(err));
    HostsPage page(&ws, nullptr);
    page.setKnownHostsFile(m_tmp.filePath(QStringLiteral("kh-pw")));
    page.setHostKeyPrompt([](const HostKeyInfo&) { return true; });
    QStringList notes;
    page.setPasswordPrompt([&](const QString&, const QString& note, QByteArray* secret, bool* remember) {
      notes << note;
      *secret = password;
      *remember = true;  // the user ticks "remember" (only possible when there is a keychain)
      return true;
    });
    HostConfig h;
    h.id = QStringLiteral("pw");
    h.address = QStringLiteral("127.0.0.1");
    h.port = sshd.port();
    h.user = QStringLiteral("root");
    h.auth = ssh_auth::password;
    h.workDir = m_tmp.filePath(QStringLiteral("pw work"));
    keychain::deletePassword(h, 5000);  // nothing left from an earlier run
    QVERIFY(page.saveHost(h));
    QSignalSpy probed(&page, &HostsPage::probeFinished);
    page.probe({h.id});
    QTRY_VERIFY_WITH_TIMEOUT(probed.size() == 1, 30000);
    QVERIFY2(probed.last().at(1).toBool(), qPrintable(probed.last().at(2).toString()));
    QCOMPARE(notes.size(), 1);
    QTRY_VERIFY(!page.isBusy());

    // Whatever happened to it, the password is in no file of the workspace, the settings, or
    // anywhere else under the test's directories (the keyring's own file is encrypted).
    QSettings().sync();
    for (const QString& dir : {m_tmp.path(), QStandardPaths::writableLocation(QStandardPaths::AppConfigLocation)})
      QVERIFY2(filesContaining(dir, password).isEmpty(), qPrintable(filesContaining(dir, password).join(QLatin1Char(' '))));

    const QString note = notes.first();
    if (!note.isEmpty()) {
      // No keychain service: the page said so, and the next login asks again.
      QVERIFY2(page.logView()->toPlainText().contains(QStringLiteral("cannot be remembered")), qPrintable(page.logView()->toPlainText()));
      page.probe({h.id});
      QTRY_VERIFY_WITH_TIMEOUT(probed.size() == 2, 30000);
      QVERIFY(probed.last().at(1).toBool());
      QCOMPARE(notes.size(), 2);
      // Skipped only when the keychain says there is no service, not when it failed otherwise.
      QByteArray none;
      const keychain::Result kr = keychain::readPassword(h, &none);
      QVERIFY2(kr.status == keychain::Status::noService, qPrintable(kr.message));
      QSKIP(qPrintable(QStringLiteral("keychain round trip: the OS keychain reports no service (%1; %2)").arg(note, m_keychain->whyNone())));
    }
    // Remembered: the next login takes it from the keychain without asking.
    QByteArray stored;
    QCOMPARE(keychain::readPassword(h, &stored).status, keychain::Status::ok);
    QCOMPARE(stored, password);
    page.probe({h.id});
    QTRY_VERIFY_WITH_TIMEOUT(probed.size() == 2, 30000);
    QVERIFY2(probed.last().at(1).toBool(), qPrintable(probed.last().at(2).toString()));
    QCOMPARE(notes.size(), 1);
    // A stored password the server refuses is dropped and asked for (and remembered anew).
    QCOMPARE(keychain::writePassword(h, "wrong").status, keychain::Status::ok);
    page.probe({h.id});
    QTRY_VERIFY_WITH_TIMEOUT(probed.size() == 3, 30000);
    QVERIFY2(probed.last().at(1).toBool(), qPrintable(probed.last().at(2).toString()));
    QCOMPARE(notes.size(), 2);
    QCOMPARE(keychain::readPassword(h, &stored).status, keychain::Status::ok);
    QCOMPARE(stored, password);
    // Removing the host forgets its password.
    QVERIFY(page.removeHost(h.id));
    QCOMPARE(keychain::readPassword(h, &stored).status, keychain::Status::notFound);
    for (const QString& dir : {m_tmp.path(), QStandardPaths::writableLocation(QStandardPaths::AppConfigLocation)})
      QVERIFY(filesContaining(dir, password).isEmpty());
  }

  // Preflight from the page: the real engine's bench comm across two hosts (two sshd on loopback).
  void preflightShowsTheBandwidthTable() {
    QString engine;
    for (const QString& c : {qEnvironmentVariable("FATHOM_ENGINE_BIN"), QStringLiteral(FATHOM_SOURCE_DIR "/build/bin/fathom-engine")}) {
      if (c.isEmpty() || !QFileInfo(c).isExecutable()) continue;
      QProcess p;
      p.start(c, {QStringLiteral("bench"), QStringLiteral("comm"), QStringLiteral("--help")});
      if (p.waitForFinished(20000) && p.exitCode() == 0) {
        engine = c;
        break;
      }
    }
    if (engine.isEmpty()) QSKIP("no fathom-engine with `bench comm` ($FATHOM_ENGINE_BIN); build the fathom-engine target");
    ssh_test::TestSshd second(QStringLiteral("127.0.0.1"), m_key->publicKey);
    QString err;
    QVERIFY2(second.start(&err), qPrintable(err));
    Workspace ws;
    QVERIFY2(ws.open(m_tmp.filePath(QStringLiteral("ws-pre")), &err), qPrintable(err));
    HostsPage page(&ws, nullptr);
    page.setKnownHostsFile(m_tmp.filePath(QStringLiteral("kh-pre")));
    page.setHostKeyPrompt([](const HostKeyInfo&) { return true; });
    page.setPreflightSizes(QStringLiteral("4K..64K"));
    int i = 0;
    for (int port : {m_sshd->port(), second.port()}) {
      HostConfig h;
      h.id = QStringLiteral("pre%1").arg(i++);
      h.address = QStringLiteral("127.0.0.1");
      h.port = port;
      h.user = QStringLiteral("root");
      h.auth = ssh_auth::key;
      h.identityFile = m_key->privateKey;
      h.enginePath = engine;
      QVERIFY(page.saveHost(h));
    }
    QSignalSpy done(&page, &HostsPage::preflightFinished);
    page.preflight({QStringLiteral("pre0")});  // one host: nothing to measure
    QCOMPARE(done.size(), 1);
    QVERIFY(!done.last().at(0).toBool());
    page.preflight({QStringLiteral("pre0"), QStringLiteral("pre1")});
    QTRY_VERIFY_WITH_TIMEOUT(done.size() == 2, 120000);
    QVERIFY2(done.last().at(0).toBool(), qPrintable(done.last().at(1).toString()));
    const QString table = page.preflightReport()->toPlainText();
    QVERIFY2(table.contains(QStringLiteral("all_reduce")) && table.contains(QStringLiteral("busbw")), qPrintable(table));
    QVERIFY(table.contains(QStringLiteral("2 ranks on 2 hosts")));
    QTRY_VERIFY(!page.isBusy());
    if (const QByteArray shots = qgetenv("FATHOM_SCREENSHOT_DIR"); !shots.isEmpty()) {
      page.resize(1100, 600);
      page.show();
      QVERIFY(QTest::qWaitForWindowExposed(&page));
      page.grab().save(QDir(QString::fromUtf8(shots)).filePath(QStringLiteral("hosts-preflight.png")));
    }
  }

  // The Launch dialog's per-host GPU choice (from the probe): one process per ticked GPU, the same
  // number on every host, each host's own GPU ids in its ranks' command lines.
  void clusterTargetChoosesGpusPerHost() {
    Workspace ws;
    QString err;
    QVERIFY2(ws.open(m_tmp.filePath(QStringLiteral("ws-gpu")), &err), qPrintable(err));
    HostRepository repo(ws);
    for (int i = 0; i < 2; ++i) {
      HostConfig h;
      h.id = QStringLiteral("gpu%1").arg(i);
      h.address = QStringLiteral("10.0.0.%1").arg(10 + i);
      h.user = QStringLiteral("root");
      h.groups = {QStringLiteral("gpus")};
      h.probe.ok = true;
      h.probe.probedAt = QDateTime::currentDateTime();
      for (int g = 0; g < 4; ++g) h.probe.gpus << GpuInfo{g, QStringLiteral("NVIDIA H200"), 143771, QStringLiteral("570.1")};
      QVERIFY2(repo.upsert(h), qPrintable(repo.lastError()));
    }
    ClusterTargetWidget w(&ws);
    w.groupCombo()->setCurrentIndex(w.groupCombo()->findData(QStringLiteral("gpus")));
    QCOMPARE(w.gpuTree()->topLevelItemCount(), 2);
    QCOMPARE(w.gpuTree()->topLevelItem(0)->childCount(), 4);
    QVERIFY(w.problem().isEmpty());
    QCOMPARE(w.processesPerHost()->value(), 4);
    QVERIFY(!w.processesPerHost()->isEnabled());
    // gpu0: GPUs 1 and 3; gpu1: GPUs 0 and 2.
    for (int g : {0, 2}) w.gpuTree()->topLevelItem(0)->child(g)->setCheckState(0, Qt::Unchecked);
    QVERIFY(!w.problem().isEmpty());  // 2 and 4
    QVERIFY2(w.problem().contains(QStringLiteral("same number")), qPrintable(w.problem()));
    for (int g : {1, 3}) w.gpuTree()->topLevelItem(1)->child(g)->setCheckState(0, Qt::Unchecked);
    QVERIFY2(w.problem().isEmpty(), qPrintable(w.problem()));
    QCOMPARE(w.processesPerHost()->value(), 2);
    const ClusterSpec c = w.cluster({QStringLiteral("cpu")});
    QCOMPARE(c.processesPerHost(), 2);
    QCOMPARE(c.worldSize(), 4);
    QCOMPARE(c.devicesOf(0), (QStringList{QStringLiteral("cuda:1"), QStringLiteral("cuda:3")}));
    QCOMPARE(c.devicesOf(1), (QStringList{QStringLiteral("cuda:0"), QStringLiteral("cuda:2")}));
    // Each host's ranks get that host's GPU ids; cluster.json keeps the choice.
    const QString cfg = m_tmp.filePath(QStringLiteral("gpu.yaml"));
    QFile f(cfg);
    QVERIFY(f.open(QIODevice::WriteOnly));
    f.write("extends: debug-tiny\n");
    f.close();
    LaunchSpec s;
    s.runId = QStringLiteral("gpu-run");
    s.configPath = cfg;
    const QStringList preview = SshLauncher::commandPreview(s, c);
    QCOMPARE(preview.size(), 4);
    QVERIFY2(preview[0].startsWith(QStringLiteral("gpu0:")) && preview[0].contains(QStringLiteral("distributed.gpu_ids=[1,3]")), qPrintable(preview[0]));
    QVERIFY2(preview[3].startsWith(QStringLiteral("gpu1:")) && preview[3].contains(QStringLiteral("distributed.gpu_ids=[0,2]")), qPrintable(preview[3]));
    QVERIFY(preview[3].contains(QStringLiteral("RANK=3")) && preview[3].contains(QStringLiteral("LOCAL_RANK=1")));
    QVERIFY(c.toJson().value(QStringLiteral("host_devices")).toObject().contains(QStringLiteral("gpu1")));
    QCOMPARE(ClusterSpec::fromJson(c.toJson()).devicesOf(1), c.devicesOf(1));
    // Unequal choices are refused by the launcher too.
    ClusterSpec bad = c;
    bad.hostDevices[QStringLiteral("gpu1")] = {QStringLiteral("cuda:0")};
    SshLauncher launcher;
    s.runDir = m_tmp.filePath(QStringLiteral("gpu-run"));
    QVERIFY(!launcher.start(s, bad, &err));
    QVERIFY2(err.contains(QStringLiteral("same number of GPUs")), qPrintable(err));
  }

  // The Monitor labels the ranks of a cluster run with their hosts (from cluster.json).
  void monitorNamesTheHostOfEachRank() {
    QTemporaryDir dir;
    QVERIFY(QFile::copy(QStringLiteral(FATHOM_SOURCE_DIR "/tests/ui/fixtures/dist_three_ranks.jsonl"), dir.filePath(QStringLiteral("events.jsonl"))));
    ClusterSpec c;
    for (const char* id : {"nodeA", "nodeB", "nodeC"}) {
      HostConfig h;
      h.id = QString::fromLatin1(id);
      h.address = QStringLiteral("10.0.0.1");
      c.hosts << h;
    }
    c.procsPerHost = 1;
    QVERIFY(c.save(dir.path()));
    cluster::RunSession session(QStringLiteral("dist-3ranks"), dir.path());
    session.start();
    QTRY_VERIFY_WITH_TIMEOUT(session.hasExitRecord(), 5000);
    session.flush();
    RunDashboard dash;
    dash.resize(1200, 900);
    dash.show();
    dash.setSession(&session);
    QCOMPARE(dash.rankHeatMap()->rankLabel(1), QStringLiteral("1 · nodeB"));
    ChartPanel* p = dash.panel(QStringLiteral("rank_step_time"));
    QVERIFY(p && p->seriesCount() >= 3);
    QStringList names;
    for (int i = 0; i < p->seriesCount(); ++i) names << p->seriesName(i);
    QVERIFY2(names.join(QLatin1Char(' ')).contains(QStringLiteral("r2@nodeC")), qPrintable(names.join(QLatin1Char(' '))));
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
