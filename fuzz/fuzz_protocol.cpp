// Protocol lines (engine stdout, events.jsonl, SSH channels) and control lines (engine stdin):
// decode_line, LineDecoder over arbitrary chunking, decode_control, every payload's from_json,
// and the round trip decode(encode(record)).
#include <string>
#include <string_view>

#include "engine/protocol/control.h"
#include "engine/protocol/payloads.h"
#include "engine/protocol/record.h"
#include "fuzz/fuzz_util.h"

using namespace fathom::protocol;

namespace {

// as<T> never throws, whatever `data` holds; the typed payload must encode and decode again.
template <typename T>
void try_payload(const Record& r) {
  const T payload = as<T>(r);
  const std::string line = encode_line(make_record(payload));
  if (!decode_line(line)) fathom::fuzz::fail("a payload's record does not decode:", line);
}

void check_record(const Record& r) {
  try_payload<HelloData>(r);
  try_payload<MetricData>(r);
  try_payload<SystemData>(r);
  try_payload<EventData>(r);
  try_payload<LogData>(r);
  try_payload<ErrorData>(r);
  try_payload<ExitData>(r);
  // What we write we must read back (the encoder replaces invalid UTF-8 and NaN).
  const std::string line = encode_line(r);
  std::string err;
  const auto again = decode_line(line, &err);
  if (!again) fathom::fuzz::fail("encode_line output does not decode:", err + " line=" + line);
  // An unknown type keeps its wire name; an empty one is written as "unknown" (encode_line's rule).
  const std::string type_name = r.type_name.empty() ? "unknown" : r.type_name;
  if (again->type_name != type_name || again->rank != r.rank || again->seq != r.seq || again->t_ms != r.t_ms)
    fathom::fuzz::fail("round trip changed the envelope:", line);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);

  std::string err;
  if (auto r = decode_line(text, &err)) check_record(*r);
  if (auto c = decode_control(text, &err)) {
    const std::string line = encode_control(*c);
    if (!decode_control(line)) fathom::fuzz::fail("encode_control output does not decode:", line);
  }

  // The stream decoder, fed in chunks whose sizes come from the first byte; a small line limit so
  // the over-long-line path is reached too.
  if (size > 0) {
    const size_t step = 1 + data[0] % 61;
    LineDecoder dec(size > 300 ? 256 : kMaxLineBytes);
    for (size_t at = 1; at < size; at += step) {
      for (const auto& r : dec.feed(text.substr(at, step))) check_record(r);
    }
    for (const auto& r : dec.finish()) check_record(r);
  }
  return 0;
}
