// Issue #12 (faults): the workspace registry (SQLite, WAL) survives its writer being SIGKILLed
// mid-write. This executable is also the writer (`--writer DIR`): through the same
// cluster/workspace code the workbench uses, it ingests metric points and events and updates the
// run row, one transaction per batch, and prints "committed SEQ" after each commit. The test kills
// it at 30 random moments (seeded, printed), and after every kill reopens the database: PRAGMA
// integrity_check must be "ok" and everything the writer reported committed must be there.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <QCoreApplication>
#include <QDateTime>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <random>
#include <set>
#include <string>
#include <thread>

#include "cluster/workspace/Sqlite.h"
#include "cluster/workspace/Workspace.h"

using namespace fathom::cluster;

namespace {

const QString kRun = QStringLiteral("kill-me");
constexpr int kBatch = 64;  // metric points per transaction
constexpr int kKills = 30;

std::string g_self;

// The writer: runs until killed.
int writer_main(const QString& dir) {
  Workspace ws;
  QString err;
  if (!ws.open(dir, &err)) {
    std::fprintf(stderr, "writer: %s\n", qPrintable(err));
    return 1;
  }
  ws.metrics().setMaxPointsPerSeries(1 << 30);  // keep every point: the test counts them
  RunRecord run;
  if (auto existing = ws.runs().get(kRun)) {
    run = *existing;
  } else {
    run.id = kRun;
    run.name = QStringLiteral("registry kill test");
    run.runDir = dir + QStringLiteral("/runs/") + kRun;
    run.status = run_status::running;
    run.createdAt = QDateTime::currentDateTimeUtc();
    if (!ws.runs().upsert(run)) {
      std::fprintf(stderr, "writer: %s\n", qPrintable(ws.runs().lastError()));
      return 1;
    }
  }
  qint64 seq = ws.metrics().ingestedSeq(kRun, 0);
  while (true) {
    QVector<MetricPoint> points;
    for (int i = 0; i < kBatch; ++i) {
      ++seq;
      points.push_back(MetricPoint{seq, seq * 256, seq * 0.01, QStringLiteral("loss"), 10.0 / static_cast<double>(seq), 0, seq});
    }
    if (!ws.metrics().ingest(kRun, points)) {
      std::fprintf(stderr, "writer: %s\n", qPrintable(ws.metrics().lastError()));
      return 1;
    }
    // An event and the run's row, each its own transaction, as the job queue writes them.
    EventItem ev;
    ev.step = seq;
    ev.name = QStringLiteral("checkpoint_saved");
    ev.json = QStringLiteral("{\"step\":%1,\"path\":\"%2\"}").arg(seq).arg(QString(200, QLatin1Char('x')));
    ev.seq = seq;
    if (!ws.events().ingest(kRun, {ev})) return 1;
    run.lastStep = seq;
    run.lastLoss = 10.0 / static_cast<double>(seq);
    if (!ws.runs().upsert(run)) return 1;
    const std::string line = "committed " + std::to_string(seq) + "\n";
    if (::write(1, line.data(), line.size()) < 0) return 1;
  }
}

// Every SEQ a writer reported committed (its batch's points, event and run row all written).
std::vector<qint64> reported_commits(const std::string& path) {
  std::ifstream in(path);
  std::string line;
  std::vector<qint64> out;
  while (std::getline(in, line))
    if (line.rfind("committed ", 0) == 0 && line.size() > 10) out.push_back(std::stoll(line.substr(10)));
  return out;
}

}  // namespace

TEST(RegistryKill, IntegrityOkAndCommittedRowsKeptAfterEveryKill) {
  char tmpl[] = "/tmp/fathom-registry-kill-XXXXXX";
  ASSERT_NE(::mkdtemp(tmpl), nullptr);
  const std::string dir = tmpl;
  uint64_t seed = std::random_device{}();
  if (const char* s = std::getenv("FATHOM_KILL_SEED")) seed = std::strtoull(s, nullptr, 10);
  std::printf("kill seed %llu\n", static_cast<unsigned long long>(seed));
  std::mt19937_64 rng(seed);
  std::uniform_int_distribution<int> delay_ms(20, 400);

  qint64 committed_total = 0, rows_checked = 0;
  std::vector<qint64> all_reported;
  int between = 0;
  for (int k = 1; k <= kKills; ++k) {
    const std::string out = dir + "/writer." + std::to_string(k) + ".out";
    const pid_t pid = ::fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
      const int fd = ::open(out.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
      ::dup2(fd, 1);
      ::execl(g_self.c_str(), g_self.c_str(), "--writer", dir.c_str(), static_cast<char*>(nullptr));
      ::_exit(127);
    }
    const int d = delay_ms(rng);
    std::this_thread::sleep_for(std::chrono::milliseconds(d));
    ASSERT_EQ(::kill(pid, SIGKILL), 0);
    int status = 0;
    ::waitpid(pid, &status, 0);
    ASSERT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL) << "the writer ended by itself (status " << status << ")";
    const auto reported = reported_commits(out);
    all_reported.insert(all_reported.end(), reported.begin(), reported.end());
    const qint64 committed = reported.empty() ? 0 : reported.back();

    Workspace ws;
    QString err;
    ASSERT_TRUE(ws.open(QString::fromStdString(dir), &err)) << "kill " << k << ": " << qPrintable(err);
    QString report;
    ASSERT_TRUE(ws.integrityCheck(&report)) << "kill " << k << ": " << qPrintable(report);
    const qint64 watermark = ws.metrics().ingestedSeq(kRun, 0);
    EXPECT_GE(watermark, committed) << "kill " << k << ": committed rows were lost";
    const auto series = ws.metrics().series(kRun, QStringLiteral("loss"), 0);
    ASSERT_EQ(series.size(), watermark) << "kill " << k << ": every point up to the watermark, once";
    for (int i = 0; i < series.size(); ++i) ASSERT_EQ(series[i].step, i + 1) << "kill " << k;
    const auto run = ws.runs().get(kRun);
    if (committed > 0) {
      ASSERT_TRUE(run.has_value());
      EXPECT_GE(run->lastStep, committed);
    }
    // The event of every batch any writer reported committed. (A writer killed between its
    // transactions leaves a batch without its event: it never wrote it, nothing was lost.)
    std::set<qint64> event_steps;
    for (const auto& e : ws.events().list(kRun)) event_steps.insert(e.step);
    for (qint64 seq : all_reported) ASSERT_TRUE(event_steps.count(seq)) << "kill " << k << ": the event of batch " << seq << " is gone";
    std::printf("kill %2d after %3d ms: writer reported %lld committed, database has %lld points, integrity ok\n", k, d,
                static_cast<long long>(committed), static_cast<long long>(watermark));
    committed_total = watermark;
    between += watermark > committed;  // killed after a commit it had not reported yet
    rows_checked += series.size();
  }
  std::printf("%d kills (%d between a batch's transactions), %zu batches reported committed, %lld metric points in the database at the end, %lld rows re-read; "
              "data lost: none\n",
              kKills, between, all_reported.size(), static_cast<long long>(committed_total), static_cast<long long>(rows_checked));
  EXPECT_GT(committed_total, 0) << "the writer never committed anything before being killed";
}

int main(int argc, char** argv) {
  g_self = std::filesystem::canonical("/proc/self/exe").string();
  if (argc == 3 && std::string(argv[1]) == "--writer") {
    QCoreApplication app(argc, argv);
    return writer_main(QString::fromLocal8Bit(argv[2]));
  }
  ::testing::InitGoogleTest(&argc, argv);
  return RUN_ALL_TESTS();
}
