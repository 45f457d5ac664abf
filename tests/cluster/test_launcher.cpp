// LocalLauncher against a stand-in engine (fake_engine.cpp, a real executable named fathom-engine):
// detached session and process group, per-rank argv and torchrun environment, stderr.log, stop /
// kill of the whole group, the supervisor's exit_status, and the errors a user can meet.
#include <QtTest>

#include <signal.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cluster/launch/LocalLauncher.h"
#include "cluster/launch/ProcessInfo.h"
#include "cluster/workspace/RunFiles.h"

using namespace fathom::cluster;

namespace {

QString readText(const QString& path) {
  QFile f(path);
  return f.open(QIODevice::ReadOnly) ? QString::fromUtf8(f.readAll()) : QString();
}

qint64 parentOf(qint64 pid) {
  const QString stat = readText(QStringLiteral("/proc/%1/stat").arg(pid));
  const QStringList f = stat.mid(stat.lastIndexOf(QLatin1Char(')')) + 2).split(QLatin1Char(' '));
  return f.size() > 1 ? f[1].toLongLong() : -1;
}

}  // namespace

class LauncherTest : public QObject {
  Q_OBJECT

 private:
  QTemporaryDir m_tmp{QDir::tempPath() + QStringLiteral("/fathom launcher XXXXXX")};  // a space on purpose
  QList<qint64> m_groups;

  LaunchSpec spec(const QString& name, int nprocs = 1) {
    LaunchSpec s;
    s.runId = name;
    s.runDir = m_tmp.filePath(QStringLiteral("runs/") + name);
    s.configPath = m_tmp.filePath(QStringLiteral("my config.yaml"));
    s.nprocs = nprocs;
    s.devices = {QStringLiteral("cpu")};
    s.engineBinary = QStringLiteral(FAKE_ENGINE_PATH);
    return s;
  }

 private slots:
  void initTestCase() {
    QVERIFY(m_tmp.isValid());
    QFile cfg(m_tmp.filePath(QStringLiteral("my config.yaml")));
    QVERIFY(cfg.open(QIODevice::WriteOnly));
    cfg.write("extends: debug-tiny\n");
  }

  void cleanupTestCase() {
    for (qint64 g : m_groups) ::kill(-static_cast<pid_t>(g), SIGKILL);
  }

  void commandPreviewIsShellQuoted() {
    LocalLauncher l;
    LaunchSpec s = spec(QStringLiteral("preview"), 2);
    s.overrides = {QStringLiteral("train.sample_prompt=It's a test")};
    s.environment = {QStringLiteral("FATHOM_WORKSPACE=/my ws")};
    const QStringList lines = l.commandPreview(s);
    QVERIFY2(lines[1].contains(QStringLiteral("FATHOM_WORKSPACE='/my ws' ")), qPrintable(lines[1]));
    QCOMPARE(lines.size(), 2);
    QVERIFY2(lines[0].contains(QStringLiteral("'train.sample_prompt=It'\\''s a test'")), qPrintable(lines[0]));
    QVERIFY(lines[0].contains(LocalLauncher::shellQuote(s.configPath)));
    QVERIFY(lines[0].contains(QStringLiteral("--control-fifo")));
    QVERIFY(lines[0].contains(QStringLiteral("RANK=0 ")));
    QVERIFY(lines[1].contains(QStringLiteral("RANK=1 ")));
    QVERIFY(lines[1].contains(QStringLiteral("distributed.rank=1")));
    QVERIFY(lines[0].contains(QStringLiteral("2>>") + LocalLauncher::shellQuote(s.runDir + QStringLiteral("/stderr.log"))));
    QVERIFY(lines[1].contains(QStringLiteral("stderr.rank1.log")));
    QCOMPARE(LocalLauncher::shellQuote(QStringLiteral("plain/path-1.yaml")), QStringLiteral("plain/path-1.yaml"));
    QCOMPARE(LocalLauncher::shellQuote(QString()), QStringLiteral("''"));
  }

  void singleRankIsDetachedAndStops() {
    LocalLauncher l;
    LaunchSpec s = spec(QStringLiteral("single"));
    s.environment = {QStringLiteral("FATHOM_TEST_MARK=a b")};
    const LaunchResult r = l.start(s);
    QVERIFY2(r.ok, qPrintable(r.error));
    m_groups << r.pgid;
    QVERIFY(r.pid > 0);
    QCOMPARE(r.pgid, r.pid);
    QTRY_VERIFY_WITH_TIMEOUT(QFileInfo::exists(s.runDir + QStringLiteral("/events.jsonl")), 10000);
    QVERIFY(LocalLauncher::isAlive(r.pid, s.runDir));
    QVERIFY(!LocalLauncher::isAlive(r.pid, m_tmp.filePath(QStringLiteral("runs/other"))));
    // Detached: its own session and group, and not our child (the supervisor is its parent).
    QVERIFY(getsid(static_cast<pid_t>(r.pid)) != getsid(0));
    QCOMPARE(static_cast<qint64>(getpgid(static_cast<pid_t>(r.pid))), r.pid);
    QVERIFY(parentOf(r.pid) != getpid());
    QVERIFY(r.supervisorPid > 0);
    QCOMPARE(parentOf(r.pid), r.supervisorPid);
    QVERIFY(parentOf(r.supervisorPid) != getpid());  // the supervisor was orphaned on purpose

    const QStringList argv = readText(s.runDir + QStringLiteral("/argv.0.txt")).split(QLatin1Char('\n'), Qt::SkipEmptyParts);
    QCOMPARE(argv.value(1), QStringLiteral("train"));
    QCOMPARE(argv.value(2), QFileInfo(s.configPath).absoluteFilePath());
    QVERIFY(argv.contains(QStringLiteral("run.device=cpu")));
    QVERIFY(argv.join(QLatin1Char(' ')).contains(QStringLiteral("--control-fifo ") + s.runDir + QStringLiteral("/control.fifo")));
    QVERIFY(!argv.contains(QStringLiteral("--resume")));
    QCOMPARE(readText(s.runDir + QStringLiteral("/cwd.0.txt")).trimmed(), QFileInfo(s.runDir).canonicalFilePath());
    const QString env = readText(s.runDir + QStringLiteral("/env.0.txt"));
    QVERIFY2(!env.contains(QStringLiteral("\nRANK=")) && !env.startsWith(QStringLiteral("RANK=")), "single-process runs get no RANK");
    QVERIFY(env.split(QLatin1Char('\n')).contains(QStringLiteral("FATHOM_TEST_MARK=a b")));
    QVERIFY(readText(s.runDir + QStringLiteral("/stderr.log")).contains(QStringLiteral("fake engine rank 0 started")));

    QString err;
    QVERIFY2(LocalLauncher::stop(r.pid, &err), qPrintable(err));
    QTRY_VERIFY_WITH_TIMEOUT(!LocalLauncher::isAlive(r.pid, s.runDir), 10000);
    QTRY_VERIFY_WITH_TIMEOUT(!run_files::readExitStatus(s.runDir).isEmpty(), 10000);
    const auto exits = run_files::readExitStatus(s.runDir);
    QCOMPARE(exits.size(), 1);
    QCOMPARE(exits[0].pid, r.pid);
    QVERIFY(!exits[0].signaled);
    QCOMPARE(exits[0].code, 0);
    QVERIFY(readText(s.runDir + QStringLiteral("/events.jsonl")).contains(QStringLiteral("\"stopped\"")));
  }

  void multiRankGetsTorchrunEnvironmentAndDiesTogether() {
    LocalLauncher l;
    const LaunchSpec s = spec(QStringLiteral("multi"), 2);
    const LaunchResult r = l.start(s);
    QVERIFY2(r.ok, qPrintable(r.error));
    m_groups << r.pgid;
    QCOMPARE(r.rankPids.size(), 2);
    // Both ranks' files: the fake engine writes argv.N.txt last, and rank 0 may start after rank 1
    // (waiting for env.1.txt alone read a missing env.0.txt: a CI flake).
    QTRY_VERIFY_WITH_TIMEOUT(QFileInfo::exists(s.runDir + QStringLiteral("/argv.0.txt")) &&
                                 QFileInfo::exists(s.runDir + QStringLiteral("/argv.1.txt")),
                             10000);
    QCOMPARE(static_cast<qint64>(getpgid(static_cast<pid_t>(r.rankPids[1]))), r.pgid);
    for (int rank = 0; rank < 2; ++rank) {
      const QStringList env = readText(s.runDir + QStringLiteral("/env.%1.txt").arg(rank)).split(QLatin1Char('\n'));
      QVERIFY(env.contains(QStringLiteral("MASTER_ADDR=127.0.0.1")));
      QVERIFY(env.contains(QStringLiteral("RANK=%1").arg(rank)));
      QVERIFY(env.contains(QStringLiteral("LOCAL_RANK=%1").arg(rank)));
      QVERIFY(env.contains(QStringLiteral("WORLD_SIZE=2")));
      QVERIFY(!env.filter(QRegularExpression(QStringLiteral("^MASTER_PORT=\\d+$"))).isEmpty());
      const QStringList argv = readText(s.runDir + QStringLiteral("/argv.%1.txt").arg(rank)).split(QLatin1Char('\n'));
      QVERIFY(argv.contains(QStringLiteral("distributed.rank=%1").arg(rank)));
      QVERIFY(argv.contains(QStringLiteral("distributed.world_size=2")));
    }
    QTRY_VERIFY_WITH_TIMEOUT(QFileInfo::exists(s.runDir + QStringLiteral("/stderr.rank1.log")), 10000);
    QString err;
    QVERIFY2(LocalLauncher::kill(r.pgid, &err), qPrintable(err));
    QTRY_VERIFY_WITH_TIMEOUT(run_files::readExitStatus(s.runDir).size() == 2, 10000);
    for (const auto& e : run_files::readExitStatus(s.runDir)) {
      QVERIFY(e.signaled);
      QCOMPARE(e.code, int(SIGKILL));
      QVERIFY(run_files::describeExit(e).contains(QStringLiteral("SIGKILL")));
    }
  }

  void failedRankTakesTheOthersDown() {
    // Like torchrun: one rank dying must not leave the others hanging in a collective.
    LocalLauncher l;
    LaunchSpec s = spec(QStringLiteral("rankfail"), 2);
    s.overrides = {QStringLiteral("fake.exit=3"), QStringLiteral("fake.exit_rank=1")};
    const LaunchResult r = l.start(s);
    QVERIFY2(r.ok, qPrintable(r.error));
    m_groups << r.pgid;
    QTRY_VERIFY_WITH_TIMEOUT(run_files::readExitStatus(s.runDir).size() == 2, 15000);
    const auto exits = run_files::readExitStatus(s.runDir);
    for (const auto& e : exits) {
      if (e.rank == 1) QCOMPARE(e.code, 3);
      if (e.rank == 0) QVERIFY2(!e.signaled && e.code == 0, "rank 0 got SIGTERM and stopped cleanly");
    }
    QVERIFY(readText(s.runDir + QStringLiteral("/stderr.log")).contains(QStringLiteral("SIGTERM")));
  }

  void errorsSayWhatToDo() {
    LocalLauncher l;
    LaunchSpec s = spec(QStringLiteral("bad"));
    s.engineBinary = m_tmp.filePath(QStringLiteral("no-such-engine"));
    qputenv("FATHOM_ENGINE_BIN", m_tmp.filePath(QStringLiteral("also-missing")).toUtf8());
    const QByteArray path = qgetenv("PATH");
    qputenv("PATH", "/nonexistent");
    LaunchResult r = l.start(s);
    qunsetenv("FATHOM_ENGINE_BIN");
    qputenv("PATH", path);
    QVERIFY(!r.ok);
    QVERIFY2(r.error.contains(QStringLiteral("fathom-engine was not found")) && r.error.contains(QStringLiteral("FATHOM_ENGINE_BIN")),
             qPrintable(r.error));

    s = spec(QStringLiteral("bad2"));
    s.configPath = m_tmp.filePath(QStringLiteral("missing.yaml"));
    r = l.start(s);
    QVERIFY(!r.ok);
    QVERIFY2(r.error.contains(QStringLiteral("missing.yaml")) && r.error.contains(QStringLiteral("does not exist")), qPrintable(r.error));

    // A file that is not executable as a program: the supervisor reports execve's errno.
    s = spec(QStringLiteral("bad3"));
    const QString notExe = m_tmp.filePath(QStringLiteral("bin/fathom-engine"));
    QDir().mkpath(QFileInfo(notExe).path());
    QFile f(notExe);
    QVERIFY(f.open(QIODevice::WriteOnly));
    f.write("\x7f" "ELF garbage");
    f.close();
    f.setPermissions(QFileDevice::ReadOwner | QFileDevice::WriteOwner | QFileDevice::ExeOwner);
    s.engineBinary = notExe;
    r = l.start(s);
    QVERIFY(!r.ok);
    QVERIFY2(r.error.contains(QStringLiteral("cannot execute")), qPrintable(r.error));
  }

  void processInfoRejectsZombiesAndStrangers() {
    QVERIFY(processExists(getpid()));
    QVERIFY(!isEngineProcessFor(getpid(), m_tmp.path()));  // alive, but not a fathom-engine
    const pid_t child = fork();
    if (child == 0) _exit(0);
    QTRY_COMPARE_WITH_TIMEOUT(readText(QStringLiteral("/proc/%1/stat").arg(child)).section(QLatin1Char(')'), -1).trimmed().left(1),
                              QStringLiteral("Z"), 5000);
    QVERIFY2(!processExists(child), "a zombie is not alive");
    waitpid(child, nullptr, 0);
    QVERIFY(!processExists(child));
  }
};

QTEST_GUILESS_MAIN(LauncherTest)
#include "test_launcher.moc"
