// Record codec and LineDecoder: wire format, round trips, tolerant decoding of everything a pipe
// can deliver, and chunking independence of the incremental decoder.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "engine/protocol/protocol.h"
#include "protocol/protocol_test_util.h"

using namespace fathom::protocol;
using fathom::protocol::test::fixture;
using fathom::protocol::test::read_file;
using fathom::protocol::test::same_record;
using nlohmann::json;

namespace {

Record stamped(Record r, int rank = 3, int64_t seq = 42) {
  r.run = "run-α";
  r.rank = rank;
  r.seq = seq;
  r.t_ms = 1736868612345;
  return r;
}

// One record of every type with non-trivial payloads.
std::vector<Record> every_type() {
  std::vector<Record> out;
  HelloData h;
  h.engine_version = "0.1.0";
  h.command = "train";
  h.pid = 4242;
  h.world_size = 2;
  h.capabilities = {"control.sample"};
  h.devices = {DeviceInfo{0, "cuda", "NVIDIA H200", 150754820096, "GPU-1234"}};
  out.push_back(stamped(make_record(h)));
  MetricData m;
  m.step = 7;
  m.loss = 2.5;
  m.extra["moe.load.3"] = 0.125;
  m.loss_scale = 65536;
  out.push_back(stamped(make_record(m)));
  SystemData s;
  s.cpu_util_pct = 12.5;
  GpuSample g;
  g.index = 1;
  g.mem_used = 1 << 30;
  s.gpus.push_back(g);
  s.collectives.push_back(CollectiveSample{"all_reduce", "ring", 3, 1 << 20, 1.5, 0.7, 1.4});
  out.push_back(stamped(make_record(s)));
  out.push_back(stamped(make_record(EventData{"checkpoint_saved", json{{"step", 100}, {"path", "checkpoints/step-100"}}})));
  out.push_back(stamped(make_record(LogData{"info", "hello \"world\"\n\ttab"})));
  out.push_back(stamped(make_record(ErrorData{"cuda_oom", "out of memory on cuda:0", "lower micro_batch_size"})));
  out.push_back(stamped(make_record(ExitData{"failed", 3, "cuda_oom"})));
  Record unknown = stamped(make_record(RecordType::unknown, json{{"k", 1}}));
  unknown.type_name = "profile";
  out.push_back(unknown);
  return out;
}

std::vector<std::string> fixture_lines() {
  std::vector<std::string> lines;
  for (const char* name : {"events.jsonl", "events_damaged.jsonl"}) {
    const std::string text = read_file(fixture(name));
    std::size_t start = 0;
    for (std::size_t nl; (nl = text.find('\n', start)) != std::string::npos; start = nl + 1)
      lines.push_back(text.substr(start, nl - start + 1));
  }
  return lines;
}

}  // namespace

TEST(RecordType, NamesRoundTrip) {
  for (RecordType t : {RecordType::hello, RecordType::metric, RecordType::system, RecordType::event, RecordType::log,
                       RecordType::error, RecordType::exit}) {
    EXPECT_EQ(record_type_from_string(to_string(t)), t) << to_string(t);
  }
  EXPECT_STREQ(to_string(RecordType::unknown), "unknown");
  EXPECT_EQ(record_type_from_string("unknown"), RecordType::unknown);
  EXPECT_EQ(record_type_from_string("Metric"), RecordType::unknown);
  EXPECT_EQ(record_type_from_string(""), RecordType::unknown);
  EXPECT_STREQ(to_string(static_cast<RecordType>(99)), "unknown");
}

TEST(EncodeLine, KeyOrderAndFormatMatchArchitecture) {
  Record r = make_record(RecordType::log, json{{"level", "info"}, {"message", "hi"}});
  r.run = "r1";
  r.rank = 2;
  r.seq = 7;
  r.t_ms = 1700000000123;
  EXPECT_EQ(encode_line(r),
            R"({"v":1,"type":"log","run":"r1","rank":2,"seq":7,"t":1700000000123,"data":{"level":"info","message":"hi"}})"
            "\n");
}

TEST(EncodeLine, NonObjectAndNullDataAreNormalised) {
  Record r;
  r.type = RecordType::event;
  r.data = nullptr;
  EXPECT_NE(encode_line(r).find(R"("data":{})"), std::string::npos);
  r.data = json::array({1, 2});
  EXPECT_NE(encode_line(r).find(R"("data":{"value":[1,2]})"), std::string::npos);
  EXPECT_EQ(make_record(RecordType::log, 5).data, (json{{"value", 5}}));
  EXPECT_EQ(make_record(RecordType::log, nullptr).data, json::object());
}

TEST(EncodeLine, NeverThrowsOnInvalidUtf8OrNan) {
  Record r = make_record(RecordType::event, json{{"name", "sample"}, {"text", std::string("bad \xff\xfe utf8")}});
  r.run = std::string("run\xc3");  // truncated 2-byte sequence
  r.data["loss"] = std::numeric_limits<double>::quiet_NaN();
  r.data["inf"] = std::numeric_limits<double>::infinity();
  std::string line;
  ASSERT_NO_THROW(line = encode_line(r));
  std::string err;
  auto back = decode_line(line, &err);
  ASSERT_TRUE(back) << err;
  EXPECT_TRUE(back->data["loss"].is_null());
  EXPECT_TRUE(back->data["inf"].is_null());
  EXPECT_NE(back->data["text"].get<std::string>().find("\xef\xbf\xbd"), std::string::npos);  // U+FFFD
}

TEST(DecodeLine, RoundTripsEveryRecordType) {
  for (const Record& r : every_type()) {
    const std::string line = encode_line(r);
    ASSERT_EQ(line.back(), '\n');
    ASSERT_EQ(line.find('\n'), line.size() - 1) << "one line per record";
    std::string err;
    auto back = decode_line(line, &err);
    ASSERT_TRUE(back) << err << " in " << line;
    EXPECT_TRUE(same_record(r, *back)) << line << encode_line(*back);
    EXPECT_EQ(encode_line(*back), line);
  }
}

TEST(DecodeLine, UnknownTypeKeepsItsName) {
  auto r = decode_line(R"({"v":1,"type":"profile","run":"x","rank":0,"seq":1,"t":2,"data":{"ms":0.4}})");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->type, RecordType::unknown);
  EXPECT_EQ(r->type_name, "profile");
  EXPECT_EQ(r->data["ms"], 0.4);
  EXPECT_NE(encode_line(*r).find(R"("type":"profile")"), std::string::npos);
}

TEST(DecodeLine, ExtraFieldsAreIgnoredAndNewerVersionsDecoded) {
  auto r = decode_line(
      R"({"v":7,"type":"metric","run":"x","rank":1,"seq":9,"t":5,"trace":{"a":[1,2]},"data":{"step":3,"future":true}})");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->v, 7);
  EXPECT_EQ(r->type, RecordType::metric);
  EXPECT_EQ(r->rank, 1);
  EXPECT_EQ(r->seq, 9);
  EXPECT_EQ(as<MetricData>(*r).step, 3);
}

TEST(DecodeLine, MissingOptionalEnvelopeFieldsKeepDefaults) {
  auto r = decode_line(R"({"v":1,"type":"log"})");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->run, "");
  EXPECT_EQ(r->rank, 0);
  EXPECT_EQ(r->seq, 0);
  EXPECT_EQ(r->t_ms, 0);
  EXPECT_EQ(r->data, json::object());
  r = decode_line(R"({"v":1,"type":"log","run":null,"rank":null,"data":null})");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->data, json::object());
}

TEST(DecodeLine, AcceptsCrlfAndSurroundingWhitespace) {
  auto r = decode_line("  {\"v\":1,\"type\":\"exit\",\"data\":{\"status\":\"completed\"}} \r\n");
  ASSERT_TRUE(r);
  EXPECT_EQ(as<ExitData>(*r).status, "completed");
}

TEST(DecodeLine, RejectsMalformedWithReasonAndNeverThrows) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"", "empty"},
      {"   \r\n", "empty"},
      {"not json", "not valid JSON"},
      {R"({"v":1,"type":"log")", "not valid JSON"},
      {"[1,2,3]", "not a JSON object"},
      {"\"str\"", "not a JSON object"},
      {"42", "not a JSON object"},
      {R"({"type":"log"})", "\"v\""},
      {R"({"v":0,"type":"log"})", ">= 1"},
      {R"({"v":-3,"type":"log"})", ">= 1"},
      {R"({"v":"1","type":"log"})", "\"v\""},
      {R"({"v":1.5,"type":"log"})", "\"v\""},
      {R"({"v":1})", "\"type\""},
      {R"({"v":1,"type":3})", "\"type\""},
      {R"({"v":1,"type":"log","seq":"5"})", "\"seq\""},
      {R"({"v":1,"type":"log","rank":1.5})", "\"rank\""},
      {R"({"v":1,"type":"log","rank":99999999999})", "\"rank\""},
      {R"({"v":1,"type":"log","t":true})", "\"t\""},
      {R"({"v":1,"type":"log","seq":18446744073709551615})", "\"seq\""},
      {R"({"v":1,"type":"log","run":5})", "\"run\""},
      {R"({"v":1,"type":"log","data":[1]})", "\"data\""},
      {R"({"v":1,"type":"log","data":"x"})", "\"data\""},
      {std::string("\x00\x01\xff\xfe garbage", 12), "not valid JSON"},
      {std::string("{\"v\":1,\"type\":\"lo\xff\"}"), "not valid JSON"},  // invalid UTF-8 inside a string
      {std::string(100, '[') + std::string(100, ']'), "nested deeper"},
      {R"({"v":1,"type":"log","data":{"a":)" + std::string(200, '[') + std::string(200, ']') + "}}", "nested deeper"},
  };
  for (const auto& [line, want] : cases) {
    std::string err;
    std::optional<Record> r;
    ASSERT_NO_THROW(r = decode_line(line, &err)) << line;
    EXPECT_FALSE(r) << line;
    EXPECT_NE(err.find(want), std::string::npos) << "line: " << line << "\nerror: " << err;
    EXPECT_EQ(err.find('\n'), std::string::npos) << "error must be one line: " << err;
  }
}

TEST(DecodeLine, EveryTruncationOfAValidLineIsMalformed) {
  const std::string line = encode_line(every_type()[1]);  // a metric
  const std::string body = line.substr(0, line.size() - 1);
  for (std::size_t n = 0; n < body.size(); ++n) {
    std::string err;
    EXPECT_FALSE(decode_line(body.substr(0, n), &err)) << n;
    EXPECT_FALSE(err.empty());
  }
  EXPECT_TRUE(decode_line(body));
}

TEST(DecodeLine, BracesInsideStringsDoNotCountAsNesting) {
  Record r = make_record(LogData{"info", std::string(500, '[') + "\\\"{{{"});
  auto back = decode_line(encode_line(r));
  ASSERT_TRUE(back);
  EXPECT_EQ(as<LogData>(*back).message, std::string(500, '[') + "\\\"{{{");
}

TEST(DecodeLine, VeryLongLineRoundTrips) {
  std::string text;
  std::mt19937 rng(7);
  for (int i = 0; i < 2 * 1024 * 1024; ++i) text += static_cast<char>('a' + rng() % 26);
  Record r = make_record(EventData{"sample", json{{"step", 1}, {"text", text}}});
  auto back = decode_line(encode_line(r));
  ASSERT_TRUE(back);
  EXPECT_EQ(back->data["text"].get<std::string>(), text);
}

// ---- LineDecoder --------------------------------------------------------------------------------

namespace {

struct Decoded {
  std::vector<Record> records;
  int64_t malformed = 0, unknown = 0, lines = 0;
};

// A stream exercising every decoder path: fixture lines, blank lines, CRLF, garbage, unknown types.
std::string mixed_stream() {
  std::string s;
  for (const auto& l : fixture_lines()) s += l;
  s += "\n\r\n   \n";
  for (const Record& r : every_type()) {
    std::string line = encode_line(r);
    line.insert(line.size() - 1, "\r");
    s += line;
  }
  s += "garbage \x01\x02\n{\"v\":1,\"type\":\"log\",\"data\":{}";
  s += "\n";
  s += std::string("\xff\xfe\x00\n", 4);
  s += encode_line(every_type()[0]);
  return s;
}

template <class Chunker>
Decoded decode_stream(const std::string& s, Chunker next_size, bool finish = true) {
  LineDecoder dec;
  Decoded out;
  for (std::size_t pos = 0; pos < s.size();) {
    const std::size_t n = std::min(s.size() - pos, std::max<std::size_t>(1, next_size()));
    for (auto& r : dec.feed(std::string_view(s).substr(pos, n))) out.records.push_back(std::move(r));
    pos += n;
  }
  if (finish)
    for (auto& r : dec.finish()) out.records.push_back(std::move(r));
  out.malformed = dec.malformed_count();
  out.unknown = dec.unknown_type_count();
  out.lines = dec.line_count();
  return out;
}

void expect_same(const Decoded& a, const Decoded& b, const std::string& what) {
  ASSERT_EQ(a.records.size(), b.records.size()) << what;
  for (std::size_t i = 0; i < a.records.size(); ++i)
    EXPECT_TRUE(same_record(a.records[i], b.records[i])) << what << " record " << i;
  EXPECT_EQ(a.malformed, b.malformed) << what;
  EXPECT_EQ(a.unknown, b.unknown) << what;
  EXPECT_EQ(a.lines, b.lines) << what;
}

}  // namespace

TEST(LineDecoder, WholeStreamCountsEverything) {
  const std::string s = mixed_stream();
  const Decoded d = decode_stream(s, [&] { return s.size(); });
  // 24 + 12 fixture lines (11 decodable minus 2 malformed in the damaged one), 3 blank, 8 typed,
  // 3 malformed tail lines, 1 final hello.
  EXPECT_EQ(d.records.size(), 24u + 9u + 8u + 1u);
  EXPECT_EQ(d.malformed, 2 + 3);
  EXPECT_EQ(d.unknown, 1 + 1);
  EXPECT_EQ(d.lines, 24 + 12 + 3 + 8 + 3 + 1);
}

TEST(LineDecoder, ByteByByteAndRandomChunksGiveIdenticalRecords) {
  const std::string s = mixed_stream();
  const Decoded whole = decode_stream(s, [&] { return s.size(); });
  expect_same(whole, decode_stream(s, [] { return std::size_t{1}; }), "byte by byte");
  for (unsigned seed : {1u, 2u, 3u, 4u, 5u}) {
    std::mt19937 rng(seed);
    std::uniform_int_distribution<std::size_t> size(1, 700);
    expect_same(whole, decode_stream(s, [&] { return size(rng); }), "random chunks, seed " + std::to_string(seed));
  }
}

TEST(LineDecoder, KeepsPartialTailUntilItsNewline) {
  LineDecoder dec;
  const std::string line = encode_line(every_type()[4]);
  EXPECT_TRUE(dec.feed(line.substr(0, 10)).empty());
  EXPECT_EQ(dec.pending_bytes(), 10u);
  EXPECT_TRUE(dec.feed(line.substr(10, line.size() - 11)).empty());
  auto got = dec.feed("\n");
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].type, RecordType::log);
  EXPECT_EQ(dec.pending_bytes(), 0u);
  EXPECT_EQ(dec.malformed_count(), 0);
}

TEST(LineDecoder, FinishDecodesUnterminatedLastLineAndCountsTornOnes) {
  const std::string line = encode_line(every_type()[6]);
  LineDecoder dec;
  EXPECT_TRUE(dec.feed(line.substr(0, line.size() - 1)).empty());
  EXPECT_EQ(dec.finish().size(), 1u);
  EXPECT_EQ(dec.malformed_count(), 0);

  LineDecoder torn;
  EXPECT_TRUE(torn.feed(line.substr(0, line.size() / 2)).empty());
  EXPECT_TRUE(torn.finish().empty());
  EXPECT_EQ(torn.malformed_count(), 1);
  EXPECT_NE(torn.last_error().find("line 1:"), std::string::npos) << torn.last_error();
}

TEST(LineDecoder, LastErrorNamesTheLine) {
  LineDecoder dec;
  dec.feed(encode_line(every_type()[0]) + "\n" + "{oops\n" + encode_line(every_type()[1]));
  EXPECT_EQ(dec.malformed_count(), 1);
  EXPECT_NE(dec.last_error().find("line 3:"), std::string::npos) << dec.last_error();
  EXPECT_NE(dec.last_error().find("{oops"), std::string::npos) << dec.last_error();
}

TEST(LineDecoder, OverLongLineIsDroppedAndDecoderResyncs) {
  const std::string ok = encode_line(every_type()[4]);
  const std::string stream = ok + std::string(5000, 'x') + "\n" + ok + "{\"v\":1," + std::string(3000, ' ') + "\n" + ok;
  for (std::size_t chunk : {stream.size(), std::size_t{1}, std::size_t{333}}) {
    LineDecoder dec(1000);
    std::vector<Record> got;
    for (std::size_t pos = 0; pos < stream.size(); pos += chunk)
      for (auto& r : dec.feed(std::string_view(stream).substr(pos, chunk))) got.push_back(r);
    EXPECT_EQ(got.size(), 3u) << "chunk " << chunk;
    EXPECT_EQ(dec.malformed_count(), 2) << "chunk " << chunk;
    EXPECT_EQ(dec.line_count(), 5) << "chunk " << chunk;
    EXPECT_NE(dec.last_error().find("longer than 1000 bytes"), std::string::npos) << dec.last_error();
    EXPECT_LE(dec.pending_bytes(), 1000u);
  }
}

TEST(LineDecoder, ResetStartsOver) {
  LineDecoder dec;
  dec.feed("{bad\n{\"v\":1,");
  EXPECT_EQ(dec.malformed_count(), 1);
  dec.reset();
  EXPECT_EQ(dec.malformed_count(), 0);
  EXPECT_EQ(dec.pending_bytes(), 0u);
  EXPECT_EQ(dec.feed(encode_line(every_type()[0])).size(), 1u);
}

// The example lines in docs/protocol.md must stay valid records of the type they illustrate.
TEST(Docs, ExampleLinesDecode) {
  const std::string doc = read_file(std::string(FATHOM_SOURCE_DIR) + "/docs/protocol.md");
  ASSERT_FALSE(doc.empty()) << "docs/protocol.md not found";
  std::vector<std::string> seen;
  for (std::size_t at = 0; (at = doc.find("```json\n", at)) != std::string::npos;) {
    at += 8;
    const std::size_t end = doc.find("```", at);
    ASSERT_NE(end, std::string::npos);
    std::string err;
    auto r = decode_line(doc.substr(at, end - at), &err);
    ASSERT_TRUE(r) << err << "\n" << doc.substr(at, end - at);
    EXPECT_NE(r->type, RecordType::unknown) << r->type_name;
    seen.push_back(r->type_name);
    at = end;
  }
  // Every type is illustrated (metric twice: a single-process and a rank-tagged data-parallel one).
  EXPECT_EQ(seen, (std::vector<std::string>{"hello", "metric", "metric", "system", "event", "log", "error", "exit"}));
}
