// Fuzz-style robustness: 10,000 random mutations of valid record and control lines go through
// decode_line, the typed readers, LineDecoder and decode_control. Nothing may throw or crash, and
// whatever decodes must re-encode to a line that decodes to the same record.
// Seed: FATHOM_FUZZ_SEED (default fixed, so a failure reproduces).
#include <gtest/gtest.h>

#include <cstdlib>
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

std::vector<std::string> seed_lines() {
  std::vector<std::string> lines;
  for (const char* name : {"events.jsonl", "events_damaged.jsonl"}) {
    const std::string text = read_file(fixture(name));
    std::size_t start = 0;
    for (std::size_t nl; (nl = text.find('\n', start)) != std::string::npos; start = nl + 1)
      lines.push_back(text.substr(start, nl - start));
  }
  MetricData m;
  m.step = 5;
  m.loss_scale = 1024;
  m.extra["moe.load.1"] = 0.5;
  lines.push_back(encode_line(make_record(m)));
  SystemData s;
  s.gpus.resize(2);
  s.gpus[1].mem_used = 123;
  s.collectives.resize(1);
  lines.push_back(encode_line(make_record(s)));
  lines.push_back(encode_line(make_record(ErrorData{"cuda_oom", "oom", "smaller batch"})));
  lines.push_back(encode_control(Control{"sample", "hello", json{{"temperature", 0.8}}}));
  lines.push_back("{\"op\":\"stop\"}");
  for (auto& l : lines)
    if (!l.empty() && l.back() == '\n') l.pop_back();
  return lines;
}

const std::vector<std::string> kTokens = {"{", "}", "[", "]", "\"", ",", ":", "null", "true", "-", "1e999", "-0",
                                          "\\u", "\\ud800", "\\", "\"v\":", "\"type\":", "\"data\":", "\r", "\n",
                                          std::string(1, '\0'), "\xff", "\xc3", "\xed\xa0\x80", "18446744073709551616",
                                          "9223372036854775808", "1.5", "NaN"};

std::string mutate(std::string s, const std::vector<std::string>& corpus, std::mt19937_64& rng) {
  auto pick = [&](std::size_t n) { return n == 0 ? std::size_t{0} : static_cast<std::size_t>(rng() % n); };
  const int ops = 1 + static_cast<int>(rng() % 4);
  for (int k = 0; k < ops; ++k) {
    switch (rng() % 9) {
      case 0:  // flip a bit
        if (!s.empty()) s[pick(s.size())] ^= static_cast<char>(1u << (rng() % 8));
        break;
      case 1:  // random byte
        if (!s.empty()) s[pick(s.size())] = static_cast<char>(rng() & 0xff);
        break;
      case 2:  // insert random bytes
        s.insert(pick(s.size() + 1), std::string(1 + pick(8), static_cast<char>(rng() & 0xff)));
        break;
      case 3:  // delete a range
        if (!s.empty()) {
          const std::size_t at = pick(s.size());
          s.erase(at, 1 + pick(std::min<std::size_t>(40, s.size() - at)));
        }
        break;
      case 4:  // truncate
        s.resize(pick(s.size() + 1));
        break;
      case 5:  // duplicate a range
        if (!s.empty()) {
          const std::size_t at = pick(s.size());
          s.insert(pick(s.size() + 1), s.substr(at, 1 + pick(60)));
        }
        break;
      case 6:  // insert a JSON-ish token
        s.insert(pick(s.size() + 1), kTokens[pick(kTokens.size())]);
        break;
      case 7:  // splice with another line
      {
        const std::string& other = corpus[pick(corpus.size())];
        s = s.substr(0, pick(s.size() + 1)) + other.substr(pick(other.size() + 1));
        break;
      }
      case 8:  // deep nesting
        s.insert(pick(s.size() + 1), std::string(1 + pick(200), rng() % 2 ? '[' : '{'));
        break;
    }
  }
  return s;
}

// Every typed reader must accept any decoded data without throwing.
void read_all_payloads(const Record& r) {
  (void)as<HelloData>(r);
  (void)as<MetricData>(r);
  (void)as<SystemData>(r);
  (void)as<EventData>(r);
  (void)as<LogData>(r);
  (void)as<ErrorData>(r);
  (void)as<ExitData>(r);
}

}  // namespace

TEST(Fuzz, TenThousandMutationsNeverThrowAndDecodedRecordsAreStable) {
  const char* env = std::getenv("FATHOM_FUZZ_SEED");
  const uint64_t seed = env ? std::strtoull(env, nullptr, 10) : 20250114;
  SCOPED_TRACE("FATHOM_FUZZ_SEED=" + std::to_string(seed));
  std::mt19937_64 rng(seed);
  const auto corpus = seed_lines();
  ASSERT_GT(corpus.size(), 30u);

  int decoded = 0, rejected = 0, controls = 0;
  std::string stream;
  for (int i = 0; i < 10000; ++i) {
    const std::string line = mutate(corpus[rng() % corpus.size()], corpus, rng);
    std::string err;
    std::optional<Record> r;
    ASSERT_NO_THROW(r = decode_line(line, &err)) << "mutation " << i;
    if (r) {
      ++decoded;
      ASSERT_NO_THROW(read_all_payloads(*r)) << "mutation " << i;
      std::string again;
      ASSERT_NO_THROW(again = encode_line(*r));
      auto back = decode_line(again, &err);
      ASSERT_TRUE(back) << "re-encoded line does not decode: " << err;
      // Re-encoding is a fixed point (the first encode may have replaced invalid UTF-8).
      EXPECT_EQ(encode_line(*back), again) << "mutation " << i;
      EXPECT_TRUE(same_record(*back, *decode_line(again))) << "mutation " << i;
    } else {
      ++rejected;
      EXPECT_FALSE(err.empty()) << "mutation " << i;
    }
    std::optional<Control> c;
    ASSERT_NO_THROW(c = decode_control(line, &err)) << "mutation " << i;
    if (c) {
      ++controls;
      ASSERT_NO_THROW((void)decode_control(encode_control(*c)));
    }
    stream += line;
    stream += '\n';
  }
  // Both outcomes must be exercised, or the mutations are too weak or too strong to test anything.
  EXPECT_GT(decoded, 500);
  EXPECT_GT(rejected, 500);
  EXPECT_GT(controls, 0);

  // The same bytes as one stream, in random chunk sizes, through the incremental decoder.
  LineDecoder dec(64 * 1024);
  std::size_t records = 0;
  for (std::size_t pos = 0; pos < stream.size();) {
    const std::size_t n = std::min<std::size_t>(stream.size() - pos, 1 + rng() % 4096);
    ASSERT_NO_THROW(records += dec.feed(std::string_view(stream).substr(pos, n)).size());
    pos += n;
  }
  ASSERT_NO_THROW(records += dec.finish().size());
  EXPECT_GT(records, 0u);
  EXPECT_GT(dec.malformed_count(), 0);
}
