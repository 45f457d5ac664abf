// One request, one sequence: prefill the prompt into a KV cache, then decode token by token with
// the sampler, streaming text as it becomes whole UTF-8 and holding back any tail that could still
// grow into a stop string (stop strings are not part of the output, as in OpenAI's API).
#pragma once
#include <torch/torch.h>

#include <chrono>
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

// The per-request half of generation, shared by generate() and the continuous batcher: sampling,
// the stop rules, UTF-8-whole streaming with stop-prefix hold-back, timing. The caller runs the
// model: it feeds the logits of the sequence's next position to advance().
class Sequence {
 public:
  // Throws std::invalid_argument when the prompt is empty or does not fit `context` (the model's
  // max_seq_len) with at least one generated token. The clock (latency, time to first token)
  // starts here.
  Sequence(const tok::Tokenizer& tokenizer, std::vector<int64_t> prompt, const SamplingParams& params, int64_t context);

  struct Step {
    bool has_event = false;
    TokenEvent event;
  };
  // Samples from `logits` (V) and advances; sets done() when the sequence finished (end token,
  // stop token or string, max_tokens, context). A finished sequence's held-back tail comes with
  // finish().
  Step advance(const torch::Tensor& logits);
  // Greedy without penalties or logprobs needs only the argmax, which the caller may take on the
  // device for a whole batch at once (the sampler copies the whole vocabulary to the host: ~1 ms a
  // row for 152K tokens). advance_greedy(argmax) == advance(logits) for such a sequence.
  bool greedy_only() const;
  Step advance_greedy(int64_t token);
  // Ends the sequence (reason "cancelled" when it was not done) and returns its held-back tail,
  // if any. Call once.
  Step finish(const std::string& reason_if_not_done = "cancelled");

  bool done() const { return done_; }
  int64_t vocab_limit() const;  // logits past this are padding rows, never sampled
  const std::vector<int64_t>& prompt() const { return prompt_; }
  // KV positions the sequence may use in all: prompt + max generated tokens.
  int64_t reserved_tokens() const { return static_cast<int64_t>(prompt_.size()) + budget_; }
  // The input of the next decode step (the last sampled token) and its position.
  int64_t next_input() const { return result_.tokens.back(); }
  int64_t position() const { return static_cast<int64_t>(prompt_.size() + result_.tokens.size()) - 1; }
  const GenerateResult& result() const { return result_; }

 private:
  Step accept(const Choice& c);
  const tok::Tokenizer& tokenizer_;
  std::vector<int64_t> prompt_, history_;
  SamplingParams params_;
  int64_t budget_ = 0;
  Sampler sampler_;
  tok::Utf8StreamDecoder utf8_;
  std::string pending_;
  GenerateResult result_;
  bool done_ = false, finished_ = false;
  std::chrono::steady_clock::time_point t0_, first_token_;
};

// on_token returns false to cancel (finish_reason "cancelled"). Throws std::invalid_argument when
// the prompt does not fit the model's context (max_seq_len - 1 tokens).
GenerateResult generate(model::Transformer& net, const tok::Tokenizer& tokenizer, const std::vector<int64_t>& prompt_ids,
                        const SamplingParams& params, const std::function<bool(const TokenEvent&)>& on_token = {});

// Longest suffix of `text` that is a proper prefix of some stop string (bytes to hold back).
size_t stop_prefix_overlap(const std::string& text, const std::vector<std::string>& stops);

}  // namespace fathom::infer
