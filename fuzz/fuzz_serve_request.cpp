// HTTP request bodies of `serve` (/v1/completions, /v1/chat/completions): the body text goes
// through parse_completion_request exactly as the server calls it, which may only throw ApiError
// (400/404); an accepted request must hold valid sampling parameters, and is then rendered and
// tokenised as the server does (chat template, then the tokenizer).
#include <string>

#include "engine/data/instruct.h"
#include "engine/serve/request.h"
#include "fuzz/fuzz_util.h"
#include "fuzz/tiny_tokenizer.h"

using namespace fathom;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const auto& tok = fuzz::tiny_tokenizer();
  const bool chat = data[0] & 1;
  const std::string body(reinterpret_cast<const char*>(data + 1), size - 1);
  serve::CompletionRequest r;
  try {
    r = serve::parse_completion_request(body, chat, 128, [](const std::string& model) {
      if (!model.empty() && model != "tiny" && model != "adapter-a")
        throw serve::ApiError{404, "The model '" + model + "' does not exist", "invalid_request_error", "model", "model_not_found"};
    });
  } catch (const serve::ApiError& e) {
    if (e.status != 400 && e.status != 404) fuzz::fail("unexpected status", std::to_string(e.status));
    return 0;
  }
  if (const auto err = r.params.validate(); !err.empty()) fuzz::fail("accepted invalid sampling parameters:", err);
  if (r.params.max_tokens < 1 || r.params.max_tokens > 1000000) fuzz::fail("max_tokens out of range");
  if (chat) {
    if (r.turns.empty()) fuzz::fail("a chat request without messages was accepted");
    static const char* templates[] = {"plain", "chatml", "llama3", "deepseek"};
    const auto pieces = data::render_generation_prompt(r.turns, templates[(data[0] >> 1) & 3], tok);
    (void)data::encode_example(pieces, tok, 1 << 30);
  } else {
    (void)tok.encode(r.prompt);
  }
  return 0;
}
