// Codec of workbench -> engine control lines; same tolerance rules as records (record.cpp).
#include "engine/protocol/control.h"

#include "engine/protocol/record.h"

namespace fathom::protocol {

using nlohmann::json;

std::optional<Control> decode_control(std::string_view line, std::string* error) {
  auto fail = [&](const std::string& why) -> std::optional<Control> {
    if (error) *error = why;
    return std::nullopt;
  };
  try {
    if (!line.empty() && line.back() == '\n') line.remove_suffix(1);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (line.find_first_not_of(" \t\r\n") == std::string_view::npos) return fail("empty control line");
    // Depth guard like decode_line: a control object is one level deep, nesting is never needed.
    int depth = 0;
    bool in_string = false;
    for (std::size_t i = 0; i < line.size(); ++i) {
      const char c = line[i];
      if (in_string) {
        if (c == '\\') ++i;
        else if (c == '"') in_string = false;
      } else if (c == '"') {
        in_string = true;
      } else if ((c == '{' || c == '[') && ++depth > kMaxNestingDepth) {
        return fail("control line nested deeper than " + std::to_string(kMaxNestingDepth) + " levels");
      } else if (c == '}' || c == ']') {
        --depth;
      }
    }
    json j;
    try {
      j = json::parse(line.begin(), line.end());
    } catch (const json::exception& e) {
      return fail(std::string("control line is not valid JSON: ") + e.what() +
                  "; expected e.g. {\"op\":\"stop\"}");
    }
    if (!j.is_object()) return fail("control line is not a JSON object; expected e.g. {\"op\":\"stop\"}");
    const auto op = j.find("op");
    if (op == j.end() || !op->is_string() || op->get_ref<const std::string&>().empty())
      return fail("control line has no \"op\" string; expected one of checkpoint, stop, sample, ping");
    Control c;
    c.op = op->get<std::string>();
    if (const auto p = j.find("prompt"); p != j.end() && p->is_string()) c.prompt = p->get<std::string>();
    c.raw = std::move(j);
    return c;
  } catch (const std::exception& e) {
    return fail(std::string("could not decode control line: ") + e.what());
  } catch (...) {
    return fail("could not decode control line");
  }
}

std::string encode_control(const Control& control) {
  json j = control.raw.is_object() ? control.raw : json::object();
  j["op"] = control.op;
  if (!control.prompt.empty() || control.op == control_op::sample) j["prompt"] = control.prompt;
  return j.dump(-1, ' ', false, json::error_handler_t::replace) + "\n";
}

}  // namespace fathom::protocol
