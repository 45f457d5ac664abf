// The protocol record (ARCHITECTURE.md §3) and its JSON-lines codec: one record per line,
// `{"v":1,"type":T,"run":ID,"rank":R,"seq":N,"t":unix_ms,"data":{...}}`. Plain C++17 + nlohmann-json.
// Decoding is tolerant and never throws: unknown fields are ignored, unknown types come back as
// RecordType::unknown, a malformed line yields std::nullopt plus an error text.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

namespace fathom::protocol {

// Bumps are additive: a reader decodes records with a higher `v` and ignores what it does not know.
constexpr int kProtocolVersion = 1;

// A line longer than this is dropped as malformed (LineDecoder, EventsFileReader) so that a peer
// printing garbage without newlines cannot grow the reader's buffer without bound. 16 MiB is far
// above any record the engine writes (the largest are `sample` events with generated text).
constexpr std::size_t kMaxLineBytes = std::size_t{16} << 20;

// JSON nesting deeper than this is rejected before parsing; records are at most ~4 levels deep and
// a bound keeps recursive code (dump, destructors in older nlohmann) away from stack exhaustion.
constexpr int kMaxNestingDepth = 64;

enum class RecordType { hello, metric, system, event, log, error, exit, unknown };

// Wire name of a type ("hello", ...); "unknown" for RecordType::unknown.
const char* to_string(RecordType type);
// Inverse of to_string; any other name (including "unknown") gives RecordType::unknown.
RecordType record_type_from_string(std::string_view name);

struct Record {
  int v = kProtocolVersion;
  RecordType type = RecordType::unknown;
  std::string type_name;  // raw wire name, kept for unknown types (set for known ones too)
  std::string run;        // run id
  int rank = 0;
  int64_t seq = 0;        // per (run, rank), assigned by Emitter starting at 1; 0 = not assigned
  int64_t t_ms = 0;       // unix time in milliseconds; key "t" on the wire
  nlohmann::json data = nlohmann::json::object();
};

// A record of `type` carrying `data` (a non-object `data` is wrapped as {"value": data}); run, rank,
// seq and t are left for the Emitter to fill in.
Record make_record(RecordType type, const nlohmann::json& data);

// One JSON object followed by '\n', keys in the order v, type, run, rank, seq, t, data. Never throws:
// invalid UTF-8 in strings is replaced by U+FFFD, NaN/inf numbers become null, a null `data` is
// written as {} and any other non-object `data` as {"value": data}.
std::string encode_line(const Record& record);

// Decodes one line (a trailing "\n" or "\r\n" is allowed). Returns std::nullopt and, when `error` is
// given, a one-line reason when the line is not a protocol record: not JSON, not an object, nesting
// too deep, `v` missing or < 1, `type` missing or not a string, an envelope field of the wrong type
// (rank, seq, t must be integers; run a string; data an object or null). Never throws.
std::optional<Record> decode_line(std::string_view line, std::string* error = nullptr);

// Incremental decoder for a byte stream (pipe, SSH channel, file): feed arbitrary chunks, get the
// records of the lines completed so far. Blank lines are skipped silently; malformed lines and
// lines over `max_line_bytes` are counted and described in last_error(), never thrown.
// One decoder per stream; not thread-safe.
class LineDecoder {
 public:
  LineDecoder() : LineDecoder(kMaxLineBytes) {}
  explicit LineDecoder(std::size_t max_line_bytes);

  // Records of the complete lines in (kept tail + chunk); the unterminated tail is kept.
  std::vector<Record> feed(std::string_view chunk);
  // End of stream: decodes a final line that lacks its '\n' (a torn line counts as malformed).
  std::vector<Record> finish();

  int64_t malformed_count() const { return malformed_; }
  // Records whose type this build does not know; they are returned (type_name set), not dropped.
  int64_t unknown_type_count() const { return unknown_; }
  // Lines completed so far (blank and malformed included), for "line N" in messages.
  int64_t line_count() const { return lines_; }
  // Bytes held back as an unterminated tail (offset bookkeeping for file readers).
  std::size_t pending_bytes() const { return skipping_ ? 0 : tail_.size(); }
  // "line N: <reason>" for the last malformed line; empty when none.
  const std::string& last_error() const { return last_error_; }
  // Drops the tail and the counters: the stream starts over.
  void reset();

 private:
  void take_line(std::string_view line, std::vector<Record>& out);

  std::size_t max_line_bytes_;
  std::string tail_;
  bool skipping_ = false;  // inside an over-long line: drop bytes until the next '\n'
  int64_t malformed_ = 0;
  int64_t unknown_ = 0;
  int64_t lines_ = 0;
  std::string last_error_;
};

}  // namespace fathom::protocol
