// Request bodies of the OpenAI-compatible API (see request.h).
#include "engine/serve/request.h"

#include <algorithm>
#include <type_traits>

namespace fathom::serve {

using json = nlohmann::json;

ApiError bad(const std::string& message, const std::string& param, const std::string& code) {
  return {400, message, "invalid_request_error", param, code};
}

namespace {

// Typed optional fields: a field of the wrong type is an error naming it; unknown fields are ignored.
template <typename T>
void field(const json& body, const char* key, T& out) {
  if (!body.contains(key) || body[key].is_null()) return;
  const auto& v = body[key];
  if constexpr (std::is_same_v<T, bool>) {
    if (!v.is_boolean()) throw bad(std::string("'") + key + "' must be a boolean", key);
    out = v.get<bool>();
  } else if constexpr (std::is_integral_v<T>) {
    if (!v.is_number_integer()) throw bad(std::string("'") + key + "' must be an integer", key);
    out = v.get<T>();
  } else if constexpr (std::is_floating_point_v<T>) {
    if (!v.is_number()) throw bad(std::string("'") + key + "' must be a number", key);
    out = v.get<T>();
  } else {
    if (!v.is_string()) throw bad(std::string("'") + key + "' must be a string", key);
    out = v.get<std::string>();
  }
}

infer::SamplingParams sampling(const json& body, bool chat, int64_t default_max_tokens) {
  infer::SamplingParams p;
  p.max_tokens = default_max_tokens;
  field(body, "max_tokens", p.max_tokens);
  if (chat) field(body, "max_completion_tokens", p.max_tokens);
  field(body, "temperature", p.temperature);
  field(body, "top_p", p.top_p);
  field(body, "top_k", p.top_k);
  field(body, "min_p", p.min_p);
  field(body, "presence_penalty", p.presence_penalty);
  field(body, "frequency_penalty", p.frequency_penalty);
  field(body, "repetition_penalty", p.repetition_penalty);
  field(body, "ignore_eos", p.ignore_eos);  // vLLM's extension, for load tests
  if (body.contains("seed") && !body["seed"].is_null()) {
    if (!body["seed"].is_number_integer()) throw bad("'seed' must be an integer", "seed");
    p.seed = body["seed"].get<uint64_t>();
  }
  if (body.contains("stop") && !body["stop"].is_null()) {
    const auto& s = body["stop"];
    if (s.is_string()) p.stop.push_back(s.get<std::string>());
    else if (s.is_array()) {
      for (const auto& x : s) {
        if (!x.is_string()) throw bad("'stop' must be a string or an array of strings", "stop");
        p.stop.push_back(x.get<std::string>());
      }
    } else {
      throw bad("'stop' must be a string or an array of strings", "stop");
    }
  }
  if (chat) {
    bool lp = false;
    field(body, "logprobs", lp);
    int top = 0;
    field(body, "top_logprobs", top);
    p.logprobs = lp ? std::max(top, 0) : 0;
  } else {
    int lp = 0;
    field(body, "logprobs", lp);
    p.logprobs = lp;
  }
  if (p.max_tokens > 1000000) throw bad("'max_tokens' " + std::to_string(p.max_tokens) + " is absurd", "max_tokens");
  if (const auto err = p.validate(); !err.empty()) throw bad(err);
  return p;
}

std::vector<data::ChatTurn> chat_turns(const json& body) {
  if (!body.contains("messages") || !body["messages"].is_array() || body["messages"].empty())
    throw bad("'messages' must be a non-empty array of {role, content}", "messages");
  std::vector<data::ChatTurn> turns;
  for (const auto& m : body["messages"]) {
    if (!m.is_object() || !m.contains("role") || !m["role"].is_string())
      throw bad("each message needs a string 'role'", "messages");
    std::string content;
    if (m.contains("content") && m["content"].is_string()) content = m["content"].get<std::string>();
    else if (m.contains("content") && m["content"].is_array()) {
      for (const auto& part : m["content"])  // [{type: text, text: ...}]
        if (part.is_object() && part.contains("type") && part["type"] == "text" && part.contains("text") &&
            part["text"].is_string())
          content += part["text"].get<std::string>();
    } else {
      throw bad("each message needs 'content' (a string or text parts)", "messages");
    }
    std::string role = m["role"].get<std::string>();
    if (role == "developer") role = "system";
    if (role != "system" && role != "user" && role != "assistant")
      throw bad("role '" + role + "' is not system, user or assistant", "messages");
    turns.push_back({role, content});
  }
  return turns;
}

std::string text_prompt(const json& body) {
  if (!body.contains("prompt")) throw bad("'prompt' is required", "prompt");
  const auto& pr = body["prompt"];
  if (pr.is_string()) return pr.get<std::string>();
  if (pr.is_array() && pr.size() == 1 && pr[0].is_string()) return pr[0].get<std::string>();
  throw bad("'prompt' must be a string (one prompt per request)", "prompt");
}

}  // namespace

CompletionRequest parse_completion_request(const std::string& body, bool chat, int64_t default_max_tokens,
                                           const std::function<void(const std::string&)>& check_model) {
  json j;
  try {
    j = json::parse(body);
  } catch (const std::exception& e) {
    throw bad(std::string("We could not parse the JSON body of your request: ") + e.what());
  }
  return parse_completion_request(j, chat, default_max_tokens, check_model);
}

CompletionRequest parse_completion_request(const json& body, bool chat, int64_t default_max_tokens,
                                           const std::function<void(const std::string&)>& check_model) {
  if (!body.is_object()) throw bad("the request body must be a JSON object");
  CompletionRequest r;
  if (body.contains("model") && !body["model"].is_null() && !body["model"].is_string())
    throw bad("'model' must be a string", "model");
  if (body.contains("model") && body["model"].is_string()) {
    r.model = body["model"].get<std::string>();
    if (check_model) check_model(r.model);
  }
  field(body, "stream", r.stream);
  if (body.contains("n") && !(body["n"].is_number_integer() && body["n"].get<int>() == 1))
    throw bad("only n = 1 is supported", "n");
  r.params = sampling(body, chat, default_max_tokens);
  // chat: "logprobs": true (+ top_logprobs); completions: "logprobs": N.
  r.logprobs = body.contains("logprobs") && !body["logprobs"].is_null() &&
               (chat ? body["logprobs"].is_boolean() && body["logprobs"].get<bool>() : true);
  if (chat) r.turns = chat_turns(body);
  else r.prompt = text_prompt(body);
  return r;
}

}  // namespace fathom::serve
