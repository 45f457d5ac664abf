// Emitter: stamping, stdout and file output, concurrency across threads and processes sharing one
// events file, seq continuation on re-open, torn last lines, and a reader that went away.
#include <gtest/gtest.h>

#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <csignal>
#include <map>
#include <thread>

#include "engine/protocol/protocol.h"
#include "protocol/protocol_test_util.h"

using namespace fathom::protocol;
using fathom::protocol::test::read_file;
using fathom::protocol::test::TempDir;
using fathom::protocol::test::write_file;
using nlohmann::json;

namespace {

int64_t now_ms() {
  using namespace std::chrono;
  return duration_cast<milliseconds>(system_clock::now().time_since_epoch()).count();
}

// Decodes a whole file strictly: every non-blank line must be a record.
std::vector<Record> decode_all(const std::string& path, int64_t* malformed = nullptr) {
  EventsFileReader reader(path);
  auto records = reader.read_new();
  if (malformed) *malformed = reader.malformed_count();
  else EXPECT_EQ(reader.malformed_count(), 0) << reader.last_error();
  return records;
}

// Per rank: seqs must be exactly 1..n in file order.
void expect_dense_increasing_seqs(const std::vector<Record>& records, std::map<int, int64_t> want_counts) {
  std::map<int, int64_t> last;
  for (const Record& r : records) {
    const int64_t expected = last[r.rank] + 1;
    ASSERT_EQ(r.seq, expected) << "rank " << r.rank;
    last[r.rank] = r.seq;
  }
  for (const auto& [rank, n] : want_counts) EXPECT_EQ(last[rank], n) << "rank " << rank;
}

}  // namespace

TEST(Emitter, StampsAndWritesTheSameLineToStdoutAndFile) {
  TempDir dir;
  const std::string events = dir.file("events.jsonl");
  const std::string captured = dir.file("stdout.txt");
  const int cap = ::open(captured.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  ASSERT_GE(cap, 0);
  const int64_t before = now_ms();
  {
    Emitter em("run-7", 2, events, true);
    em.set_stdout_fd(cap);
    EXPECT_EQ(em.next_seq(), 1);
    EXPECT_EQ(em.emit(RecordType::log, json{{"level", "info"}, {"message", "a"}}), 1);
    EXPECT_EQ(em.emit(MetricData{}), 2);
    EXPECT_EQ(em.emit(RecordType::event, json("not an object")), 3);
    EXPECT_EQ(em.write_errors(), 0) << em.last_error();
  }
  ::close(cap);
  const int64_t after = now_ms();
  EXPECT_EQ(read_file(events), read_file(captured));
  const auto records = decode_all(events);
  ASSERT_EQ(records.size(), 3u);
  for (const Record& r : records) {
    EXPECT_EQ(r.run, "run-7");
    EXPECT_EQ(r.rank, 2);
    EXPECT_EQ(r.v, kProtocolVersion);
    EXPECT_GE(r.t_ms, before);
    EXPECT_LE(r.t_ms, after);
  }
  EXPECT_EQ(records[0].type, RecordType::log);
  EXPECT_EQ(records[1].type, RecordType::metric);
  EXPECT_EQ(records[2].data, (json{{"value", "not an object"}}));
  expect_dense_increasing_seqs(records, {{2, 3}});
}

TEST(Emitter, WithoutFileOrStdoutStillCountsSeq) {
  Emitter em("r", 0, "", false);
  EXPECT_EQ(em.emit(LogData{"debug", "x"}), 1);
  EXPECT_EQ(em.emit(LogData{"debug", "y"}), 2);
  EXPECT_FALSE(em.stdout_enabled());
  em.set_stdout(false);
  EXPECT_EQ(em.write_errors(), 0);
}

TEST(Emitter, TwoThreadsGiveWellFormedLinesAndUniqueOrderedSeqs) {
  TempDir dir;
  const std::string events = dir.file("events.jsonl");
  constexpr int kPerThread = 3000;
  {
    Emitter em("run", 0, events, false);
    auto work = [&](int id) {
      for (int i = 0; i < kPerThread; ++i) {
        MetricData m;
        m.step = i;
        m.tokens = id;  // which thread wrote it
        m.loss = 0.5 * i;
        em.emit(m);
      }
    };
    std::thread a(work, 1), b(work, 2);
    a.join();
    b.join();
    EXPECT_EQ(em.next_seq(), 2 * kPerThread + 1);
  }
  const auto records = decode_all(events);
  ASSERT_EQ(records.size(), 2u * kPerThread);
  expect_dense_increasing_seqs(records, {{0, 2 * kPerThread}});
  int per_thread[3] = {0, 0, 0};
  for (const Record& r : records) ++per_thread[as<MetricData>(r).tokens];
  EXPECT_EQ(per_thread[1], kPerThread);
  EXPECT_EQ(per_thread[2], kPerThread);
}

TEST(Emitter, TwoProcessesAppendingToOneFileNeverInterleaveLines) {
  TempDir dir;
  const std::string events = dir.file("events.jsonl");
  constexpr int kPerThread = 800;
  pid_t children[2];
  for (int rank = 0; rank < 2; ++rank) {
    const pid_t pid = ::fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
      // Child: no gtest assertions here; the exit code says how it went.
      int rc = 0;
      try {
        Emitter em("run", rank, events, false);
        auto work = [&](int id) {
          for (int i = 0; i < kPerThread; ++i) {
            // Lines from ~100 B to ~9 KB: beyond PIPE_BUF, so atomicity comes from O_APPEND alone.
            const std::string msg(static_cast<std::size_t>((i * 37 + id * 11) % 9000), static_cast<char>('a' + rank));
            em.emit(LogData{"debug", msg});
          }
        };
        std::thread a(work, 0), b(work, 1);
        a.join();
        b.join();
        if (em.write_errors() != 0) rc = 3;
      } catch (...) {
        rc = 2;
      }
      ::_exit(rc);
    }
    children[rank] = pid;
  }
  for (pid_t pid : children) {
    int status = 0;
    ASSERT_EQ(::waitpid(pid, &status, 0), pid);
    ASSERT_TRUE(WIFEXITED(status));
    EXPECT_EQ(WEXITSTATUS(status), 0);
  }
  const auto records = decode_all(events);
  ASSERT_EQ(records.size(), 4u * kPerThread);
  expect_dense_increasing_seqs(records, {{0, 2 * kPerThread}, {1, 2 * kPerThread}});
  for (const Record& r : records) {
    const std::string msg = as<LogData>(r).message;
    EXPECT_EQ(msg.find_first_not_of(static_cast<char>('a' + r.rank)), std::string::npos) << "bytes of another rank";
  }
}

TEST(Emitter, SeqContinuesAfterReopenPerRank) {
  TempDir dir;
  const std::string events = dir.file("events.jsonl");
  {
    Emitter r0("run", 0, events, false);
    Emitter r1("run", 1, events, false);
    for (int i = 0; i < 5; ++i) r0.emit(LogData{"info", "r0"});
    for (int i = 0; i < 2; ++i) r1.emit(LogData{"info", "r1"});
    r0.emit(ExitData{exit_status::killed, 137, ""});
  }
  EXPECT_EQ(scan_last_seq(events, 0), 6);
  EXPECT_EQ(scan_last_seq(events, 1), 2);
  EXPECT_EQ(scan_last_seq(events, 2), 0);
  {
    Emitter r0("run", 0, events, false);
    Emitter r1("run", 1, events, false);
    Emitter r2("run", 2, events, false);
    EXPECT_EQ(r0.next_seq(), 7);
    EXPECT_EQ(r1.next_seq(), 3);
    EXPECT_EQ(r2.next_seq(), 1);
    EXPECT_EQ(r0.emit(EventData{event_name::resumed, json{{"step", 100}}}), 7);
    EXPECT_EQ(r1.emit(LogData{"info", "back"}), 3);
  }
  const auto records = decode_all(events);
  ASSERT_EQ(records.size(), 10u);
  expect_dense_increasing_seqs(records, {{0, 7}, {1, 3}});
}

TEST(Emitter, TerminatesATornLastLineBeforeAppending) {
  TempDir dir;
  const std::string events = dir.file("events.jsonl");
  Record old = make_record(LogData{"info", "before crash"});
  old.run = "run";
  old.seq = 4;
  const std::string torn = encode_line(make_record(MetricData{})).substr(0, 30);
  write_file(events, encode_line(old) + torn);
  {
    Emitter em("run", 0, events, false);
    EXPECT_EQ(em.next_seq(), 5);
    em.emit(EventData{event_name::resumed, json{{"step", 3}}});
  }
  int64_t malformed = 0;
  const auto records = decode_all(events, &malformed);
  ASSERT_EQ(records.size(), 2u);
  EXPECT_EQ(malformed, 1);
  EXPECT_EQ(records[1].seq, 5);
  EXPECT_EQ(as<EventData>(records[1]).name, "resumed");
}

TEST(Emitter, LostReaderDisablesStdoutButKeepsTheFile) {
  TempDir dir;
  const std::string events = dir.file("events.jsonl");
  int fds[2];
  ASSERT_EQ(::pipe(fds), 0);
  ::close(fds[0]);  // the workbench went away
  {
    Emitter em("run", 0, events, true);
    struct sigaction sa {};
    ASSERT_EQ(::sigaction(SIGPIPE, nullptr, &sa), 0);
    EXPECT_EQ(sa.sa_handler, SIG_IGN);
    em.set_stdout_fd(fds[1]);
    EXPECT_EQ(em.emit(LogData{"info", "one"}), 1);
    EXPECT_FALSE(em.stdout_enabled());
    EXPECT_EQ(em.write_errors(), 1);
    EXPECT_NE(em.last_error().find("EPIPE"), std::string::npos) << em.last_error();
    EXPECT_EQ(em.emit(LogData{"info", "two"}), 2);
    EXPECT_EQ(em.write_errors(), 1);
  }
  ::close(fds[1]);
  EXPECT_EQ(decode_all(events).size(), 2u);
}

TEST(Emitter, UnwritablePathThrowsNamingIt) {
  TempDir dir;
  const std::string bad = dir.file("no/such/dir/events.jsonl");
  try {
    Emitter em("run", 0, bad, false);
    FAIL() << "expected an exception";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find(bad), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("run directory"), std::string::npos) << e.what();
  }
}

TEST(Emitter, CloseIsIdempotentAndLaterEmitsSkipTheFile) {
  TempDir dir;
  const std::string events = dir.file("events.jsonl");
  Emitter em("run", 0, events, false);
  em.emit(LogData{"info", "a"});
  em.close();
  em.close();
  const std::string before = read_file(events);
  EXPECT_EQ(em.emit(LogData{"info", "b"}), 2);
  EXPECT_EQ(read_file(events), before);
  EXPECT_EQ(em.write_errors(), 0);
}
