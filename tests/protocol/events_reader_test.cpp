// EventsFileReader (re-attach) and scan_last_seq: half-written lines, a concurrent writer,
// truncation and replacement, seek, read budgets, over-long lines, backward seq scans.
#include <gtest/gtest.h>

#include <fcntl.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <filesystem>
#include <random>
#include <thread>

#include "engine/protocol/protocol.h"
#include "protocol/protocol_test_util.h"

using namespace fathom::protocol;
using fathom::protocol::test::fixture;
using fathom::protocol::test::read_file;
using fathom::protocol::test::same_record;
using fathom::protocol::test::TempDir;
using fathom::protocol::test::write_file;
using nlohmann::json;

namespace {

std::string line_of(int rank, int64_t seq, const std::string& message = "m") {
  Record r = make_record(LogData{"info", message});
  r.run = "run";
  r.rank = rank;
  r.seq = seq;
  r.t_ms = 1700000000000 + seq;
  return encode_line(r);
}

void append_raw(int fd, const std::string& bytes) {
  ASSERT_EQ(::write(fd, bytes.data(), bytes.size()), static_cast<ssize_t>(bytes.size()));
}

}  // namespace

TEST(EventsFileReader, MissingFileIsNotAnError) {
  TempDir dir;
  const std::string path = dir.file("events.jsonl");
  EventsFileReader reader(path);
  EXPECT_TRUE(reader.read_new().empty());
  EXPECT_EQ(reader.offset(), 0);
  EXPECT_EQ(reader.last_error(), "");
  EXPECT_EQ(reader.last_seq(0), 0);
  write_file(path, line_of(0, 1));
  EXPECT_EQ(reader.read_new().size(), 1u);
  EXPECT_EQ(reader.last_seq(0), 1);
}

TEST(EventsFileReader, ReadsTheRealisticFixture) {
  const std::string path = fixture("events.jsonl");
  EventsFileReader reader(path);
  const auto records = reader.read_new();
  EXPECT_EQ(records.size(), 24u);
  EXPECT_EQ(reader.malformed_count(), 0) << reader.last_error();
  EXPECT_EQ(reader.unknown_type_count(), 0);
  EXPECT_EQ(reader.last_seq(0), 21);
  EXPECT_EQ(reader.last_seq(1), 3);
  EXPECT_EQ(reader.last_seqs().size(), 2u);
  EXPECT_EQ(reader.offset(), static_cast<int64_t>(std::filesystem::file_size(path)));
  EXPECT_TRUE(reader.read_new().empty());
  EXPECT_EQ(reader.restarts(), 0);
}

TEST(EventsFileReader, ToleratesTheDamagedFixture) {
  EventsFileReader reader(fixture("events_damaged.jsonl"));
  const auto records = reader.read_new();
  ASSERT_EQ(records.size(), 9u);
  EXPECT_EQ(reader.malformed_count(), 2);  // the torn line before the resume, and a traceback
  EXPECT_EQ(reader.unknown_type_count(), 1);
  EXPECT_EQ(as<EventData>(records[4]).name, "resumed");
  EXPECT_EQ(records[5].type_name, "profile");
  EXPECT_EQ(records[6].v, 2);
  EXPECT_EQ(as<MetricData>(records[6]).loss, 3.12);
  EXPECT_EQ(as<LogData>(records[7]).message, "loss scale reduced");  // a CRLF line
  EXPECT_EQ(reader.last_seq(0), 10);
  EXPECT_NE(reader.last_error().find("events_damaged.jsonl at byte "), std::string::npos) << reader.last_error();
  EXPECT_NE(reader.last_error().find("Traceback"), std::string::npos) << reader.last_error();
}

TEST(EventsFileReader, HalfWrittenLineWaitsForItsEnd) {
  TempDir dir;
  const std::string path = dir.file("events.jsonl");
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
  ASSERT_GE(fd, 0);
  EventsFileReader reader(path);
  const std::string a = line_of(0, 1, "first"), b = line_of(0, 2, "second");
  append_raw(fd, a.substr(0, 20));
  EXPECT_TRUE(reader.read_new().empty());
  EXPECT_EQ(reader.offset(), 0);
  append_raw(fd, a.substr(20, a.size() - 21));  // everything but the '\n': still incomplete
  EXPECT_TRUE(reader.read_new().empty());
  append_raw(fd, "\n" + b.substr(0, 5));
  auto got = reader.read_new();
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(as<LogData>(got[0]).message, "first");
  EXPECT_EQ(reader.offset(), static_cast<int64_t>(a.size()));
  append_raw(fd, b.substr(5));
  got = reader.read_new();
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(as<LogData>(got[0]).message, "second");
  EXPECT_EQ(reader.malformed_count(), 0);
  ::close(fd);
}

TEST(EventsFileReader, ByteByByteAppendYieldsEveryRecordOnce) {
  TempDir dir;
  const std::string path = dir.file("events.jsonl");
  const std::string text = read_file(fixture("events.jsonl"));
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
  ASSERT_GE(fd, 0);
  EventsFileReader reader(path);
  std::vector<Record> got;
  for (char c : text) {
    append_raw(fd, std::string(1, c));
    for (auto& r : reader.read_new()) got.push_back(std::move(r));
  }
  ::close(fd);
  EventsFileReader whole(fixture("events.jsonl"));
  const auto want = whole.read_new();
  ASSERT_EQ(got.size(), want.size());
  for (std::size_t i = 0; i < got.size(); ++i) EXPECT_TRUE(same_record(got[i], want[i])) << i;
  EXPECT_EQ(reader.malformed_count(), 0) << reader.last_error();
}

TEST(EventsFileReader, FollowsAConcurrentWriterThatSplitsLines) {
  TempDir dir;
  const std::string path = dir.file("events.jsonl");
  constexpr int kLines = 2000;
  std::atomic<bool> done{false};
  std::thread writer([&] {
    const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
    std::mt19937 rng(11);
    for (int i = 1; i <= kLines; ++i) {
      const std::string line = line_of(0, i, std::string(rng() % 300, 'x'));
      std::size_t pos = 0;
      while (pos < line.size()) {
        const std::size_t n = std::min<std::size_t>(line.size() - pos, 1 + rng() % 97);
        if (::write(fd, line.data() + pos, n) != static_cast<ssize_t>(n)) std::abort();
        pos += n;
        if (rng() % 50 == 0) std::this_thread::yield();
      }
    }
    ::close(fd);
    done = true;
  });
  EventsFileReader reader(path);
  std::vector<Record> got;
  for (;;) {
    const bool finished = done.load();
    for (auto& r : reader.read_new()) got.push_back(std::move(r));
    if (finished) break;
  }
  writer.join();
  ASSERT_EQ(got.size(), static_cast<std::size_t>(kLines));
  for (int i = 0; i < kLines; ++i) ASSERT_EQ(got[i].seq, i + 1);
  EXPECT_EQ(reader.malformed_count(), 0) << reader.last_error();
  EXPECT_EQ(reader.last_seq(0), kLines);
}

TEST(EventsFileReader, StartsOverWhenTheFileIsTruncated) {
  TempDir dir;
  const std::string path = dir.file("events.jsonl");
  write_file(path, line_of(0, 1) + line_of(0, 2) + line_of(0, 3));
  EventsFileReader reader(path);
  EXPECT_EQ(reader.read_new().size(), 3u);
  EXPECT_EQ(reader.last_seq(0), 3);
  write_file(path, line_of(1, 1));  // O_TRUNC keeps the inode
  const auto got = reader.read_new();
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].rank, 1);
  EXPECT_EQ(reader.restarts(), 1);
  EXPECT_EQ(reader.last_seq(0), 0);
  EXPECT_EQ(reader.last_seq(1), 1);
}

TEST(EventsFileReader, StartsOverWhenTheFileIsRewrittenLongerInPlace) {
  TempDir dir;
  const std::string path = dir.file("events.jsonl");
  write_file(path, line_of(0, 1, "a"));
  EventsFileReader reader(path);
  EXPECT_EQ(reader.read_new().size(), 1u);
  // Same inode, larger, and no line end where the old one was.
  write_file(path, line_of(0, 1, "a much longer first message") + line_of(0, 2));
  EXPECT_EQ(reader.read_new().size(), 2u);
  EXPECT_EQ(reader.restarts(), 1);
  EXPECT_EQ(reader.malformed_count(), 0);
}

TEST(EventsFileReader, StartsOverWhenTheFileIsReplaced) {
  TempDir dir;
  const std::string path = dir.file("events.jsonl");
  write_file(path, line_of(0, 1) + line_of(0, 2));
  EventsFileReader reader(path);
  EXPECT_EQ(reader.read_new().size(), 2u);
  write_file(dir.file("new.jsonl"), line_of(0, 1) + line_of(0, 2) + line_of(0, 3));
  std::filesystem::rename(dir.file("new.jsonl"), path);
  EXPECT_EQ(reader.read_new().size(), 3u);
  EXPECT_EQ(reader.restarts(), 1);
}

TEST(EventsFileReader, SeekResumesFromASavedOffset) {
  TempDir dir;
  const std::string path = dir.file("events.jsonl");
  std::string first, rest;
  for (int i = 1; i <= 10; ++i) first += line_of(0, i);
  for (int i = 11; i <= 24; ++i) rest += line_of(0, i);
  write_file(path, first);
  EventsFileReader a(path);
  EXPECT_EQ(a.read_new().size(), 10u);
  const int64_t saved = a.offset();
  write_file(path, rest, true);

  EventsFileReader b(path);
  b.seek(saved);
  auto got = b.read_new();
  ASSERT_EQ(got.size(), 14u);
  EXPECT_EQ(got.front().seq, 11);
  EXPECT_EQ(b.restarts(), 0);

  EventsFileReader c(path);  // an offset inside a line: the rest of that line is skipped quietly
  c.seek(saved + 5);
  got = c.read_new();
  ASSERT_EQ(got.size(), 13u);
  EXPECT_EQ(got.front().seq, 12);
  EXPECT_EQ(c.malformed_count(), 0);
  EXPECT_EQ(c.restarts(), 0);
}

TEST(EventsFileReader, ReadBudgetSplitsWorkAcrossCalls) {
  EventsFileReader reader(fixture("events.jsonl"));
  std::size_t total = 0, calls = 0;
  for (;;) {
    const auto got = reader.read_new(1000);
    if (got.empty()) break;
    total += got.size();
    ++calls;
  }
  EXPECT_EQ(total, 24u);
  EXPECT_GE(calls, 5u);  // 7 KB in 1 KB budgets
}

TEST(EventsFileReader, OverLongLineIsSkippedEvenWhenItArrivesInPieces) {
  TempDir dir;
  const std::string path = dir.file("events.jsonl");
  write_file(path, line_of(0, 1) + std::string(3000, 'j') + "\n" + line_of(0, 2));
  EventsFileReader whole(path, 500);
  EXPECT_EQ(whole.read_new().size(), 2u);
  EXPECT_EQ(whole.malformed_count(), 1);
  EXPECT_NE(whole.last_error().find("longer than 500 bytes"), std::string::npos) << whole.last_error();

  const std::string path2 = dir.file("pieces.jsonl");
  write_file(path2, line_of(0, 1) + std::string(300, 'j'));
  EventsFileReader reader(path2, 500);
  EXPECT_EQ(reader.read_new().size(), 1u);
  write_file(path2, std::string(300, 'j'), true);
  EXPECT_TRUE(reader.read_new().empty());
  write_file(path2, std::string(300, 'j'), true);
  EXPECT_TRUE(reader.read_new().empty());
  write_file(path2, "jjj\n" + line_of(0, 2), true);
  const auto got = reader.read_new();
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].seq, 2);
  EXPECT_EQ(reader.malformed_count(), 1);
  EXPECT_EQ(reader.restarts(), 0);
}

TEST(ScanLastSeq, FindsEachRanksLastRecordAcrossManyBlocks) {
  TempDir dir;
  const std::string path = dir.file("events.jsonl");
  EXPECT_EQ(scan_last_seq(path, 0), 0);  // no file yet
  std::string text = line_of(1, 7) + line_of(2, 1, std::string(200000, 's')) + "\n";
  for (int i = 1; i <= 5000; ++i) text += line_of(0, i, std::string(i % 400, 'p'));
  text += line_of(3, 9, std::string(150000, 'q'));  // a last line spanning several 64 KiB blocks
  text += "{\"v\":1,\"type\":\"log\",\"rank\":0,\"seq\":999";  // torn tail: not a record
  write_file(path, text);
  EXPECT_GT(text.size(), 1000000u);
  EXPECT_EQ(scan_last_seq(path, 0), 5000);
  EXPECT_EQ(scan_last_seq(path, 1), 7);
  EXPECT_EQ(scan_last_seq(path, 2), 1);
  EXPECT_EQ(scan_last_seq(path, 3), 9);
  EXPECT_EQ(scan_last_seq(path, 4), 0);
  EXPECT_EQ(scan_last_seq(fixture("events.jsonl"), 0), 21);
  EXPECT_EQ(scan_last_seq(fixture("events_damaged.jsonl"), 0), 10);
}
