// One request, one sequence: prefill the prompt into a KV cache, then decode token by token with
// the sampler, streaming text as it becomes whole UTF-8 and holding back any tail that could still
// grow into a stop string (stop strings are not part of the output, as in OpenAI's API).
#pragma once
#include <torch/torch.h>

#include <functional>
#include <string>
#include <vector>

#include "engine/infer/sampler.h"
#include "engine/model/transformer.h"
#include "engine/tokenizer/tokenizer.h"

namespace fathom::infer {

struct TokenEvent {
  std::string text;  // newly final text (may be empty while a multi-byte character or stop prefix is pending)
  Choice choice;
};

struct GenerateResult {
  std::vector<int64_t> tokens;  // generated ids (the stop token not included)
  std::vector<Choice> choices;
  std::string text;
  std::string finish_reason;    // stop | length
  int64_t prompt_tokens = 0;
  double time_to_first_token_s = 0, decode_tokens_per_s = 0, seconds = 0;
};

// on_token returns false to cancel (finish_reason "cancelled"). Throws std::invalid_argument when
// the prompt does not fit the model's context (max_seq_len - 1 tokens).
GenerateResult generate(model::Transformer& net, const tok::Tokenizer& tokenizer, const std::vector<int64_t>& prompt_ids,
                        const SamplingParams& params, const std::function<bool(const TokenEvent&)>& on_token = {});

// Longest suffix of `text` that is a proper prefix of some stop string (bytes to hold back).
size_t stop_prefix_overlap(const std::string& text, const std::vector<std::string>& stops);

}  // namespace fathom::infer
