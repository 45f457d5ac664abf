// Single-sequence generation (see generator.h).
#include "engine/infer/generator.h"

#include "engine/infer/graph_decode.h"

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

Sequence::Sequence(const tok::Tokenizer& tokenizer, std::vector<int64_t> prompt, const SamplingParams& params, int64_t context)
    : tokenizer_(tokenizer), prompt_(std::move(prompt)), params_(params), sampler_(params), utf8_(tokenizer), t0_(Clock::now()) {
  if (prompt_.empty()) throw std::invalid_argument("the prompt is empty");
  if (static_cast<int64_t>(prompt_.size()) >= context)
    throw std::invalid_argument("the prompt has " + std::to_string(prompt_.size()) + " tokens; the model's context is " +
                                std::to_string(context) + " (prompt + at least one generated token must fit)");
  history_ = prompt_;
  budget_ = std::min<int64_t>(params.max_tokens, context - static_cast<int64_t>(prompt_.size()));
  result_.prompt_tokens = static_cast<int64_t>(prompt_.size());
  result_.finish_reason = "length";
  if (budget_ <= 0) done_ = true;
}

int64_t Sequence::vocab_limit() const { return static_cast<int64_t>(tokenizer_.vocab_size()); }

bool Sequence::greedy_only() const {
  return params_.temperature == 0.0 && params_.logprobs == 0 && params_.repetition_penalty == 1.0 && params_.presence_penalty == 0.0 &&
         params_.frequency_penalty == 0.0;
}

Sequence::Step Sequence::advance_greedy(int64_t token) {
  if (done_) return {};
  Choice c;
  c.token = token;
  c.logprob = 0.0;  // as the sampler reports a greedy choice (probability 1 after the filter)
  return accept(c);
}

Sequence::Step Sequence::advance(const torch::Tensor& logits) {
  if (done_) return {};
  // Checkpoints often pad the embedding past the tokenizer (Qwen: 151,936 rows for 151,669 tokens):
  // those rows are not tokens and are never sampled.
  const auto V = vocab_limit();
  return accept(sampler_.sample(V > 0 && logits.size(0) > V ? logits.narrow(0, 0, V) : logits, history_));
}

Sequence::Step Sequence::accept(const Choice& c) {
  Step out;
  if (first_token_ == Clock::time_point{}) first_token_ = Clock::now();
  const auto eos = tokenizer_.eos_id();
  const bool is_eos = (eos && !params_.ignore_eos && c.token == static_cast<int64_t>(*eos)) ||
                      std::find(params_.stop_token_ids.begin(), params_.stop_token_ids.end(), c.token) != params_.stop_token_ids.end();
  if (is_eos) {
    result_.finish_reason = "stop";
    done_ = true;
    return out;
  }
  result_.tokens.push_back(c.token);
  result_.choices.push_back(c);
  history_.push_back(c.token);
  pending_ += utf8_.push(static_cast<uint32_t>(c.token));
  out.has_event = true;
  out.event.choice = c;
  // A stop string anywhere in the pending text ends the generation there.
  size_t cut = std::string::npos;
  for (const auto& s : params_.stop)
    if (!s.empty()) cut = std::min(cut, pending_.find(s));
  if (cut != std::string::npos) {
    out.event.text = pending_.substr(0, cut);
    result_.text += out.event.text;
    pending_.clear();
    result_.finish_reason = "stop";
    done_ = true;
    return out;
  }
  const size_t hold = stop_prefix_overlap(pending_, params_.stop);
  out.event.text = pending_.substr(0, pending_.size() - hold);
  pending_.erase(0, pending_.size() - hold);
  result_.text += out.event.text;
  if (static_cast<int64_t>(result_.tokens.size()) >= budget_) done_ = true;  // finish_reason stays "length"
  return out;
}

Sequence::Step Sequence::finish(const std::string& reason_if_not_done) {
  Step out;
  if (finished_) return out;
  finished_ = true;
  if (!done_) {
    result_.finish_reason = reason_if_not_done;
    done_ = true;
  }
  // Whatever is held back (a partial stop prefix, an unfinished UTF-8 tail) is output after all,
  // unless a stop string ended the text.
  if (result_.finish_reason != "stop" || pending_.size()) {
    std::string tail = pending_ + utf8_.finish();
    pending_.clear();
    if (!tail.empty()) {
      result_.text += tail;
      out.has_event = true;
      out.event.text = tail;
      out.event.choice.token = -1;  // not a token of its own
    }
  }
  const auto t_end = Clock::now();
  result_.seconds = std::chrono::duration<double>(t_end - t0_).count();
  if (!result_.tokens.empty()) {
    result_.time_to_first_token_s = std::chrono::duration<double>(first_token_ - t0_).count();
    const double decode_s = std::chrono::duration<double>(t_end - first_token_).count();
    result_.decode_tokens_per_s =
        result_.tokens.size() > 1 && decode_s > 0 ? static_cast<double>(result_.tokens.size() - 1) / decode_s : 0.0;
  }
  return out;
}

GenerateResult generate(model::Transformer& net, const tok::Tokenizer& tokenizer, const std::vector<int64_t>& prompt_ids,
                        const SamplingParams& params, const std::function<bool(const TokenEvent&)>& on_token) {
  Sequence seq(tokenizer, prompt_ids, params, net->args().max_seq_len);
  torch::NoGradGuard ng;
  net->eval();
  const auto device = net->model->embed_tokens->weight.device();
  const auto P = static_cast<int64_t>(prompt_ids.size());
  auto cache = net->new_cache(1, seq.reserved_tokens());
  auto logits = net->forward_cached(torch::tensor(prompt_ids, torch::kInt64).unsqueeze(0).to(device), cache).select(1, P - 1).squeeze(0);
  // On CUDA each decode step is one graph replay (graph_decode.h); elsewhere the eager step.
  auto graph = GraphDecoder::create(net, cache);
  std::string cancel;
  const bool greedy = seq.greedy_only();
  const int64_t V = seq.vocab_limit();
  if (graph && greedy) {
    // Greedy on CUDA: the argmax and the next input stay on the device (graph_decode.h), and one
    // step more than the host has read is always queued, so the GPU does not wait between tokens.
    const int64_t vocab = V > 0 && logits.size(0) > V ? V : logits.size(0);
    auto step = seq.advance_greedy(logits.narrow(0, 0, vocab).argmax().item<int64_t>());
    bool started = false;
    while (true) {
      if (step.has_event && on_token && !on_token(step.event)) {
        cancel = "cancelled";
        break;
      }
      if (seq.done()) break;
      if (!started) {
        graph->greedy_start(seq.next_input(), cache.length, vocab);
        started = true;
      }
      // The cache holds prompt + budget positions; the step that yields the budget's last token feeds
      // position capacity - 2, so none is queued past it (a step there could also need a capture).
      while (graph->greedy_in_flight() < 2 && graph->greedy_position() < cache.capacity - 1) graph->greedy_enqueue();
      step = seq.advance_greedy(graph->greedy_wait());
      cache.length += 1;
    }
    while (started && graph->greedy_in_flight() > 0) graph->greedy_wait();  // steps past the end: drained, unused
    const auto tail = seq.finish(cancel.empty() ? "length" : cancel);
    if (tail.has_event && on_token) on_token(tail.event);
    return seq.result();
  }
  while (!seq.done()) {
    const auto step = greedy ? seq.advance_greedy((V > 0 && logits.size(0) > V ? logits.narrow(0, 0, V) : logits).argmax().item<int64_t>())
                             : seq.advance(logits);
    if (step.has_event && on_token && !on_token(step.event)) {
      cancel = "cancelled";
      break;
    }
    if (seq.done()) break;
    if (graph) {
      logits = graph->step(seq.next_input(), cache.length);
      cache.length += 1;
    } else {
      logits = net->forward_cached(torch::tensor({seq.next_input()}, torch::kInt64).view({1, 1}).to(device), cache).select(1, 0).squeeze(0);
    }
  }
  const auto tail = seq.finish(cancel.empty() ? "length" : cancel);
  if (tail.has_event && on_token) on_token(tail.event);
  return seq.result();
}

}  // namespace fathom::infer
