// JSON-lines codec of protocol records. Decoding guards against everything a pipe can deliver
// (garbage, torn lines, CRLF, huge or deeply nested input) and reports instead of throwing.
#include "engine/protocol/record.h"

#include <climits>
#include <cstdio>
#include <limits>
#include <utility>

namespace fathom::protocol {

using nlohmann::json;

namespace {

constexpr const char* kTypeNames[] = {"hello", "metric", "system", "event", "log", "error", "exit"};

// Up to 60 bytes of the offending line with control and non-ASCII bytes escaped, so an error
// message stays one printable line whatever the input was.
std::string snippet(std::string_view line) {
  constexpr std::size_t kMax = 60;
  std::string out;
  for (std::size_t i = 0; i < line.size() && i < kMax; ++i) {
    const auto c = static_cast<unsigned char>(line[i]);
    if (c >= 0x20 && c < 0x7f && c != '\\') {
      out += static_cast<char>(c);
    } else {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\x%02x", c);
      out += buf;
    }
  }
  if (line.size() > kMax) out += "...";
  return out;
}

bool is_blank(std::string_view s) {
  for (char c : s)
    if (c != ' ' && c != '\t' && c != '\r' && c != '\n') return false;
  return true;
}

// Deepest {/[ nesting outside string literals; stops counting once past `limit`.
int nesting_depth(std::string_view s, int limit) {
  int depth = 0, deepest = 0;
  bool in_string = false;
  for (std::size_t i = 0; i < s.size(); ++i) {
    const char c = s[i];
    if (in_string) {
      if (c == '\\') ++i;
      else if (c == '"') in_string = false;
    } else if (c == '"') {
      in_string = true;
    } else if (c == '{' || c == '[') {
      if (++depth > deepest && (deepest = depth) > limit) return deepest;
    } else if (c == '}' || c == ']') {
      --depth;
    }
  }
  return deepest;
}

// nlohmann's messages start with "[json.exception.parse_error.101] "; the tag helps nobody here.
std::string strip_exception_tag(const char* what) {
  std::string s = what;
  if (!s.empty() && s[0] == '[') {
    const auto end = s.find("] ");
    if (end != std::string::npos) s.erase(0, end + 2);
  }
  return s;
}

// Integer envelope field: absent or null keeps `out`; an integer in [lo, hi] is stored; anything
// else (string, float, out of range) is an error.
template <class Int>
bool read_int_field(const json& obj, const char* key, Int& out, std::string& why) {
  const auto it = obj.find(key);
  if (it == obj.end() || it->is_null()) return true;
  constexpr auto lo = static_cast<int64_t>(std::numeric_limits<Int>::min());
  constexpr auto hi = static_cast<int64_t>(std::numeric_limits<Int>::max());
  if (it->is_number_unsigned()) {
    const auto u = it->get<uint64_t>();
    if (u <= static_cast<uint64_t>(hi)) {
      out = static_cast<Int>(u);
      return true;
    }
  } else if (it->is_number_integer()) {
    const auto i = it->get<int64_t>();
    if (i >= lo && i <= hi) {
      out = static_cast<Int>(i);
      return true;
    }
  }
  why = std::string("field \"") + key + "\" must be an integer, got " + it->dump(-1, ' ', false, json::error_handler_t::replace).substr(0, 40);
  return false;
}

std::string dump_compact(const json& j) { return j.dump(-1, ' ', false, json::error_handler_t::replace); }

}  // namespace

const char* to_string(RecordType type) {
  const auto i = static_cast<std::size_t>(type);
  return i < sizeof kTypeNames / sizeof kTypeNames[0] ? kTypeNames[i] : "unknown";
}

RecordType record_type_from_string(std::string_view name) {
  for (std::size_t i = 0; i < sizeof kTypeNames / sizeof kTypeNames[0]; ++i)
    if (name == kTypeNames[i]) return static_cast<RecordType>(i);
  return RecordType::unknown;
}

Record make_record(RecordType type, const json& data) {
  Record r;
  r.type = type;
  r.type_name = to_string(type);
  if (data.is_object()) r.data = data;
  else if (!data.is_null()) r.data = json{{"value", data}};
  return r;
}

std::string encode_line(const Record& record) {
  std::string name = record.type != RecordType::unknown ? to_string(record.type) : record.type_name;
  if (name.empty()) name = "unknown";
  std::string out;
  out.reserve(96);
  out += "{\"v\":";
  out += std::to_string(record.v);
  out += ",\"type\":";
  out += dump_compact(json(name));
  out += ",\"run\":";
  out += dump_compact(json(record.run));
  out += ",\"rank\":";
  out += std::to_string(record.rank);
  out += ",\"seq\":";
  out += std::to_string(record.seq);
  out += ",\"t\":";
  out += std::to_string(record.t_ms);
  out += ",\"data\":";
  if (record.data.is_object()) out += dump_compact(record.data);
  else if (record.data.is_null()) out += "{}";
  else out += dump_compact(json{{"value", record.data}});
  out += "}\n";
  return out;
}

std::optional<Record> decode_line(std::string_view line, std::string* error) {
  auto fail = [&](const std::string& why) -> std::optional<Record> {
    if (error) *error = why;
    return std::nullopt;
  };
  try {
    if (!line.empty() && line.back() == '\n') line.remove_suffix(1);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (is_blank(line)) return fail("empty line");
    if (nesting_depth(line, kMaxNestingDepth) > kMaxNestingDepth)
      return fail("JSON nested deeper than " + std::to_string(kMaxNestingDepth) + " levels: '" + snippet(line) + "'");

    json j;
    try {
      j = json::parse(line.begin(), line.end());
    } catch (const json::exception& e) {
      return fail("not valid JSON (" + strip_exception_tag(e.what()) + "): '" + snippet(line) + "'");
    }
    if (!j.is_object()) return fail("not a JSON object: '" + snippet(line) + "'");

    Record r;
    const auto v = j.find("v");
    if (v == j.end()) return fail("no \"v\" (protocol version) field: '" + snippet(line) + "'");
    std::string why;
    r.v = 0;
    if (!read_int_field(j, "v", r.v, why)) return fail(why);
    if (r.v < 1) return fail("protocol version \"v\" must be >= 1, got " + std::to_string(r.v));

    const auto type = j.find("type");
    if (type == j.end() || !type->is_string())
      return fail("no \"type\" string field: '" + snippet(line) + "'");
    r.type_name = type->get<std::string>();
    r.type = record_type_from_string(r.type_name);

    const auto run = j.find("run");
    if (run != j.end() && !run->is_null()) {
      if (!run->is_string()) return fail("field \"run\" must be a string, got " + dump_compact(*run).substr(0, 40));
      r.run = run->get<std::string>();
    }
    if (!read_int_field(j, "rank", r.rank, why) || !read_int_field(j, "seq", r.seq, why) ||
        !read_int_field(j, "t", r.t_ms, why))
      return fail(why);

    const auto data = j.find("data");
    if (data != j.end() && !data->is_null()) {
      if (!data->is_object()) return fail("field \"data\" must be an object, got " + dump_compact(*data).substr(0, 40));
      r.data = std::move(*data);
    }
    return r;
  } catch (const std::exception& e) {
    return fail(std::string("could not decode line: ") + e.what());
  } catch (...) {
    return fail("could not decode line");
  }
}

// ---- LineDecoder --------------------------------------------------------------------------------

LineDecoder::LineDecoder(std::size_t max_line_bytes) : max_line_bytes_(max_line_bytes) {}

void LineDecoder::reset() {
  tail_.clear();
  skipping_ = false;
  malformed_ = unknown_ = lines_ = 0;
  last_error_.clear();
}

void LineDecoder::take_line(std::string_view line, std::vector<Record>& out) {
  ++lines_;
  if (is_blank(line)) return;
  std::string why;
  auto r = decode_line(line, &why);
  if (!r) {
    ++malformed_;
    last_error_ = "line " + std::to_string(lines_) + ": " + why;
    return;
  }
  if (r->type == RecordType::unknown) ++unknown_;
  out.push_back(std::move(*r));
}

std::vector<Record> LineDecoder::feed(std::string_view chunk) {
  std::vector<Record> out;
  auto too_long = [&] {
    // Counted now, when the limit is crossed, so that byte-by-byte and whole-line feeding agree.
    ++malformed_;
    last_error_ = "line " + std::to_string(lines_ + 1) + ": longer than " + std::to_string(max_line_bytes_) +
                  " bytes; dropped up to the next newline";
    tail_.clear();
    tail_.shrink_to_fit();
  };
  std::size_t pos = 0;
  while (pos < chunk.size()) {
    const std::size_t nl = chunk.find('\n', pos);
    const std::string_view piece = chunk.substr(pos, nl == std::string_view::npos ? std::string_view::npos : nl - pos);
    if (skipping_) {
      // Rest of an over-long line: drop it; its newline ends the skip.
    } else if (tail_.size() + piece.size() > max_line_bytes_) {
      too_long();
      skipping_ = true;
    } else if (nl != std::string_view::npos && tail_.empty()) {
      take_line(piece, out);  // common case: a whole line inside one chunk, no copy
    } else {
      tail_.append(piece);
      if (nl != std::string_view::npos) {
        take_line(tail_, out);
        tail_.clear();
      }
    }
    if (nl == std::string_view::npos) break;
    if (skipping_) {
      skipping_ = false;
      ++lines_;
    }
    pos = nl + 1;
  }
  return out;
}

std::vector<Record> LineDecoder::finish() {
  std::vector<Record> out;
  if (skipping_) {
    skipping_ = false;
    ++lines_;
  } else if (!tail_.empty()) {
    take_line(tail_, out);
  }
  tail_.clear();
  return out;
}

}  // namespace fathom::protocol
