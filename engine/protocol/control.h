// Control lines, workbench -> engine stdin: {"op":"checkpoint"}, {"op":"stop"}, {"op":"ping"},
// {"op":"sample","prompt":"..."}. Decoding accepts any op (the engine decides what it supports)
// and keeps the whole object in `raw` so newer fields (e.g. sample temperature) reach the engine.
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

namespace fathom::protocol {

namespace control_op {
constexpr const char* checkpoint = "checkpoint";  // save a checkpoint now, keep running
constexpr const char* stop = "stop";              // save a checkpoint, then exit 0
constexpr const char* sample = "sample";          // generate from `prompt`, answer with a `sample` event
constexpr const char* ping = "ping";              // liveness; answered with a `pong` event
}  // namespace control_op

struct Control {
  std::string op;
  std::string prompt;  // op == "sample"
  nlohmann::json raw = nlohmann::json::object();  // the whole decoded object, op and prompt included
};

// Decodes one control line (trailing "\n"/"\r\n" allowed). std::nullopt with `error` set when the
// line is not a JSON object with a non-empty string "op". Never throws.
std::optional<Control> decode_control(std::string_view line, std::string* error = nullptr);

// One JSON object + '\n': the fields of `raw` (if an object), then op, and prompt when non-empty
// or when op is "sample". Never throws (invalid UTF-8 is replaced by U+FFFD).
std::string encode_control(const Control& control);

}  // namespace fathom::protocol
