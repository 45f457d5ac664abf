// The body of a /v1/completions or /v1/chat/completions request, decoded and validated before it
// reaches the model. Torch-free (no tokenizer needed either), so the decoder is fuzzed on its own
// (fuzz/fuzz_serve_request.cpp); openai_server.cpp tokenises what it returns.
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "engine/data/instruct.h"
#include "engine/infer/sampling_params.h"

namespace fathom::serve {

// An OpenAI-style error: {"error": {"message", "type", "param", "code"}}.
struct ApiError {
  int status;
  std::string message, type, param, code;
};

// 400 invalid_request_error.
ApiError bad(const std::string& message, const std::string& param = "", const std::string& code = "");

struct CompletionRequest {
  std::string model;                   // "" when absent or null
  bool stream = false;
  bool logprobs = false;               // chat: "logprobs": true; completions: "logprobs" given
  infer::SamplingParams params;        // stop_token_ids left for the server (they need the tokenizer)
  std::vector<data::ChatTurn> turns;   // chat: the messages ("developer" read as "system")
  std::string prompt;                  // completions: the one prompt
};

// Decodes a request body. Throws ApiError: 400 for a body that is not a JSON object or a field
// that is missing, mistyped or out of range. `check_model` (optional) is called with "model" when
// one is given, before the other fields are checked, and may throw ApiError (404 for an unknown
// model).
CompletionRequest parse_completion_request(const std::string& body, bool chat, int64_t default_max_tokens,
                                           const std::function<void(const std::string&)>& check_model = {});
CompletionRequest parse_completion_request(const nlohmann::json& body, bool chat, int64_t default_max_tokens,
                                           const std::function<void(const std::string&)>& check_model = {});

}  // namespace fathom::serve
