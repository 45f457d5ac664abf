// Single-sequence generation (see generator.h).
#include "engine/infer/generator.h"

#include <algorithm>
#include <chrono>
#include <stdexcept>

namespace fathom::infer {

using Clock = std::chrono::steady_clock;

size_t stop_prefix_overlap(const std::string& text, const std::vector<std::string>& stops) {
  size_t best = 0;
  for (const auto& s : stops) {
    for (size_t n = std::min(s.size() - (s.empty() ? 0 : 1), text.size()); n > best; --n)
      if (text.compare(text.size() - n, n, s, 0, n) == 0) {
        best = n;
        break;
      }
  }
  return best;
}

GenerateResult generate(model::Transformer& net, const tok::Tokenizer& tokenizer, const std::vector<int64_t>& prompt_ids,
                        const SamplingParams& params, const std::function<bool(const TokenEvent&)>& on_token) {
  const auto t0 = Clock::now();
  const int64_t ctx = net->args().max_seq_len;
  if (prompt_ids.empty()) throw std::invalid_argument("the prompt is empty");
  if (static_cast<int64_t>(prompt_ids.size()) >= ctx)
    throw std::invalid_argument("the prompt has " + std::to_string(prompt_ids.size()) + " tokens; the model's context is " +
                                std::to_string(ctx) + " (prompt + at least one generated token must fit)");
  torch::NoGradGuard ng;
  net->eval();
  const auto device = net->model->embed_tokens->weight.device();
  GenerateResult r;
  r.prompt_tokens = static_cast<int64_t>(prompt_ids.size());
  const int64_t budget = std::min<int64_t>(params.max_tokens, ctx - r.prompt_tokens);
  auto cache = net->new_cache(1, r.prompt_tokens + budget);
  Sampler sampler(params);
  std::vector<int64_t> history = prompt_ids;
  tok::Utf8StreamDecoder utf8(tokenizer);
  std::string pending;  // decoded, not yet released (possible start of a stop string)
  const auto eos = tokenizer.eos_id();
  auto logits = net->forward_cached(torch::tensor(prompt_ids, torch::kInt64).unsqueeze(0).to(device), cache)
                    .select(1, r.prompt_tokens - 1)
                    .squeeze(0);
  Clock::time_point first_token;
  r.finish_reason = "length";
  for (int64_t i = 0; i < budget; ++i) {
    const Choice c = sampler.sample(logits, history);
    if (i == 0) first_token = Clock::now();
    const bool is_eos = (eos && c.token == static_cast<int64_t>(*eos)) ||
                        std::find(params.stop_token_ids.begin(), params.stop_token_ids.end(), c.token) != params.stop_token_ids.end();
    if (is_eos) {
      r.finish_reason = "stop";
      break;
    }
    r.tokens.push_back(c.token);
    r.choices.push_back(c);
    history.push_back(c.token);
    pending += utf8.push(static_cast<uint32_t>(c.token));
    // A stop string anywhere in the pending text ends the generation there.
    size_t cut = std::string::npos;
    for (const auto& s : params.stop)
      if (!s.empty()) cut = std::min(cut, pending.find(s));
    TokenEvent ev;
    ev.choice = c;
    if (cut != std::string::npos) {
      ev.text = pending.substr(0, cut);
      r.text += ev.text;
      pending.clear();
      r.finish_reason = "stop";
      if (on_token) on_token(ev);
      break;
    }
    const size_t hold = stop_prefix_overlap(pending, params.stop);
    ev.text = pending.substr(0, pending.size() - hold);
    pending.erase(0, pending.size() - hold);
    r.text += ev.text;
    if (on_token && !on_token(ev)) {
      r.finish_reason = "cancelled";
      break;
    }
    if (i + 1 < budget)
      logits = net->forward_cached(torch::tensor({c.token}, torch::kInt64).view({1, 1}).to(device), cache).select(1, 0).squeeze(0);
  }
  if (r.finish_reason != "stop" || pending.size()) {
    // Whatever is held back (a partial stop prefix, an unfinished UTF-8 tail) is output after all.
    std::string tail = pending + utf8.finish();
    if (!tail.empty()) {
      r.text += tail;
      if (on_token) on_token(TokenEvent{tail, Choice{}});
    }
  }
  const auto t_end = Clock::now();
  r.seconds = std::chrono::duration<double>(t_end - t0).count();
  if (!r.tokens.empty()) {
    r.time_to_first_token_s = std::chrono::duration<double>(first_token - t0).count();
    const double decode_s = std::chrono::duration<double>(t_end - first_token).count();
    r.decode_tokens_per_s = r.tokens.size() > 1 && decode_s > 0 ? static_cast<double>(r.tokens.size() - 1) / decode_s : 0.0;
  }
  return r;
}

}  // namespace fathom::infer
