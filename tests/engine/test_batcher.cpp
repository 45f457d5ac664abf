// Continuous batching: a batched decode step equals each sequence decoded alone (mha and mla);
// requests that join and leave a running batch get exactly the tokens they get alone (greedy, and
// seeded sampling); the KV budget and the queue cap hold; LoRA adapters picked per request in a
// mixed batch equal the adapter merged into the base; int8 / dynamic int8 stay close to fp32.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <filesystem>
#include <random>

#include "engine/infer/batcher.h"
#include "engine/infer/generator.h"
#include "engine/infer/load.h"
#include "engine/model/lora.h"
#include "engine/model/transformer.h"
#include "engine/tokenizer/tokenizer.h"
#include "tiny_tokenizer.h"

using namespace fathom::infer;
using fathom::testing::tiny_tokenizer;
namespace fm = fathom::model;
namespace fs = std::filesystem;

namespace {

// Weights wider than the default init so that greedy choices are not near-ties.
fm::ModelArgs tiny_args(int64_t vocab, bool mla_moe) {
  fm::ModelArgs a;
  a.vocab_size = vocab;
  a.d_model = 32;
  a.n_layers = 2;
  a.n_heads = 4;
  a.n_kv_heads = 2;
  a.d_ff = 64;
  a.max_seq_len = 96;
  a.init_std = 0.15;
  if (mla_moe) {
    a.family = "deepseek";
    a.attention = "mla";
    a.mla.kv_lora_rank = 16;
    a.mla.q_lora_rank = 0;
    a.mla.qk_rope_head_dim = 8;
    a.mla.qk_nope_head_dim = 8;
    a.mla.v_head_dim = 8;
    a.n_kv_heads = 4;
    a.moe.n_routed_experts = 4;
    a.moe.n_shared_experts = 1;
    a.moe.top_k = 2;
    a.moe.d_expert = 16;
    a.moe.first_k_dense = 1;
  }
  return a;
}

fm::Transformer tiny_model(int64_t vocab, bool mla_moe = false) {
  torch::manual_seed(0);
  fm::Transformer net(tiny_args(vocab, mla_moe));
  net->init_weights();
  net->eval();
  return net;
}

std::vector<int64_t> random_prompt(std::mt19937& rng, int64_t vocab, int n) {
  std::uniform_int_distribution<int64_t> d(5, vocab - 1);
  std::vector<int64_t> p;
  for (int i = 0; i < n; ++i) p.push_back(d(rng));
  return p;
}

struct TempDir {
  fs::path path;
  TempDir() {
    path = fs::temp_directory_path() / ("fathom-batcher-" + std::to_string(::getpid()) + "-" + std::to_string(std::random_device{}()));
    fs::create_directories(path);
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
};

void decode_step_matches_alone(bool mla_moe) {
  const int64_t V = 300;
  auto net = tiny_model(V, mla_moe);
  torch::NoGradGuard ng;
  std::mt19937 rng(1);
  const std::vector<int> lengths{3, 11, 7};
  const int64_t B = static_cast<int64_t>(lengths.size());
  auto batched = net->new_cache(4, 32);
  std::vector<fm::KvCache> alone;
  std::vector<int64_t> positions, next;
  std::vector<torch::Tensor> expected;
  for (int64_t b = 0; b < B; ++b) {
    auto prompt = random_prompt(rng, V, lengths[static_cast<size_t>(b)]);
    // Prefill row b of the batched cache through a view, and a cache of its own.
    fm::KvCache view;
    view.capacity = batched.capacity;
    for (auto& [k, v] : batched.layers) view.layers.emplace_back(k.narrow(0, b, 1), v.narrow(0, b, 1));
    auto idx = torch::tensor(prompt, torch::kInt64).unsqueeze(0);
    net->forward_cached(idx, view);
    alone.push_back(net->new_cache(1, 32));
    net->forward_cached(idx, alone.back());
    const int64_t tok = (b * 37 + 11) % V;
    next.push_back(tok);
    positions.push_back(static_cast<int64_t>(prompt.size()));
    expected.push_back(net->forward_cached(torch::tensor({tok}, torch::kInt64).view({1, 1}), alone.back()).view({V}));
  }
  for (int round = 0; round < 2; ++round) {
    auto step = fm::DecodeStep::make(positions, torch::kCPU);
    auto logits = net->forward_decode(torch::tensor(next, torch::kInt64).view({B, 1}), batched, step);
    ASSERT_EQ(logits.sizes(), (std::vector<int64_t>{B, V}));
    for (int64_t b = 0; b < B; ++b) {
      EXPECT_LT((logits[b] - expected[static_cast<size_t>(b)]).abs().max().item<double>(), 1e-5) << "row " << b << " round " << round;
      // The next round: feed each row's argmax at the next position.
      next[static_cast<size_t>(b)] = logits[b].argmax().item<int64_t>();
      ++positions[static_cast<size_t>(b)];
      expected[static_cast<size_t>(b)] =
          net->forward_cached(torch::tensor({next[static_cast<size_t>(b)]}, torch::kInt64).view({1, 1}), alone[static_cast<size_t>(b)]).view({V});
    }
  }
}

// Submits requests in waves (later ones join a running batch), returns each one's result.
std::vector<GenerateResult> run_batched(Batcher& batcher, const std::vector<std::vector<int64_t>>& prompts,
                                        const std::vector<SamplingParams>& params, const std::vector<int>& adapters = {}) {
  std::vector<Batcher::Handle> handles;
  for (size_t i = 0; i < prompts.size(); ++i) {
    handles.push_back(batcher.submit(prompts[i], params[i], adapters.empty() ? -1 : adapters[i]));
    if (i % 2 == 1) {
      // Let the batch run a few steps before the next wave arrives.
      TokenEvent ev;
      for (int k = 0; k < 3 && batcher.next(handles[i - 1], &ev); ++k) {
      }
    }
  }
  std::vector<GenerateResult> out;
  for (auto& h : handles) {
    out.push_back(batcher.wait(h));
    EXPECT_EQ(batcher.error(h), "");
  }
  return out;
}

void batched_equals_alone(bool mla_moe) {
  auto tokenizer = tiny_tokenizer();
  const auto V = static_cast<int64_t>(tokenizer.vocab_size());
  auto net = tiny_model(V, mla_moe);
  std::mt19937 rng(3);
  std::vector<std::vector<int64_t>> prompts;
  std::vector<SamplingParams> params;
  for (int i = 0; i < 7; ++i) {
    prompts.push_back(random_prompt(rng, V, 2 + (i * 5) % 13));
    SamplingParams p;
    p.temperature = i % 3 == 2 ? 0.8 : 0.0;  // some seeded sampling among the greedy ones
    p.seed = 100 + i;
    p.max_tokens = 6 + (i * 7) % 19;
    params.push_back(p);
  }
  BatcherOptions bo;
  bo.max_batch = 3;
  Batcher batcher(net, tokenizer, bo);
  auto results = run_batched(batcher, prompts, params);
  for (size_t i = 0; i < prompts.size(); ++i) {
    auto alone = generate(net, tokenizer, prompts[i], params[i]);
    EXPECT_EQ(results[i].tokens, alone.tokens) << "request " << i;
    EXPECT_EQ(results[i].text, alone.text) << "request " << i;
    EXPECT_EQ(results[i].finish_reason, alone.finish_reason) << "request " << i;
  }
  const auto s = batcher.stats();
  int64_t multi = 0;
  for (size_t b = 2; b < s.batch_size_counts.size(); ++b) multi += s.batch_size_counts[b];
  EXPECT_GT(multi, 0) << "no decode step ran with more than one sequence";
  EXPECT_EQ(s.batch_size_counts.size(), 4u);  // never more than max_batch = 3
  EXPECT_EQ(s.running, 0);
  EXPECT_EQ(s.kv_tokens_reserved, 0);
  EXPECT_EQ(s.prefills, 7);
}

}  // namespace

TEST(Batcher, DecodeStepEqualsEachSequenceAloneMha) { decode_step_matches_alone(false); }
TEST(Batcher, DecodeStepEqualsEachSequenceAloneMlaMoe) { decode_step_matches_alone(true); }
TEST(Batcher, JoiningAndLeavingRequestsGetTheirAloneTokens) { batched_equals_alone(false); }
TEST(Batcher, JoiningAndLeavingRequestsGetTheirAloneTokensMlaMoe) { batched_equals_alone(true); }

TEST(Batcher, StreamedEventsAddUpToTheText) {
  auto tokenizer = tiny_tokenizer();
  auto net = tiny_model(static_cast<int64_t>(tokenizer.vocab_size()));
  Batcher batcher(net, tokenizer, {});
  SamplingParams p;
  p.seed = 9;
  p.max_tokens = 40;
  const auto ids = tokenizer.encode("The Congress");
  auto h = batcher.submit(std::vector<int64_t>(ids.begin(), ids.end()), p);
  std::string streamed;
  TokenEvent ev;
  int events = 0;
  while (batcher.next(h, &ev)) {
    streamed += ev.text;
    ++events;
  }
  const auto r = batcher.wait(h);
  EXPECT_EQ(streamed, r.text);
  EXPECT_GE(events, static_cast<int>(r.tokens.size()));
  EXPECT_GT(r.tokens.size(), 0u);
}

TEST(Batcher, KvBudgetQueuesRequestsAndRefusesOversizedOnes) {
  auto tokenizer = tiny_tokenizer();
  const auto V = static_cast<int64_t>(tokenizer.vocab_size());
  auto net = tiny_model(V);
  BatcherOptions bo;
  bo.max_batch = 4;
  bo.max_kv_tokens = 40;  // room for one request of 10 + 20 at a time
  Batcher batcher(net, tokenizer, bo);
  std::mt19937 rng(5);
  SamplingParams p;
  p.temperature = 0;
  p.max_tokens = 20;
  std::vector<Batcher::Handle> hs;
  for (int i = 0; i < 3; ++i) hs.push_back(batcher.submit(random_prompt(rng, V, 10), p));
  for (auto& h : hs) EXPECT_FALSE(batcher.wait(h).tokens.empty());
  const auto s = batcher.stats();
  for (size_t b = 2; b < s.batch_size_counts.size(); ++b) EXPECT_EQ(s.batch_size_counts[b], 0) << "batch of " << b << " over the budget";
  p.max_tokens = 35;
  try {
    batcher.submit(random_prompt(rng, V, 10), p);
    FAIL() << "a request needing 45 KV tokens was accepted under a budget of 40";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("budget is 40"), std::string::npos) << e.what();
  }
}

TEST(Batcher, FullQueueRefusesAndCancelledRequestsLeave) {
  auto tokenizer = tiny_tokenizer();
  const auto V = static_cast<int64_t>(tokenizer.vocab_size());
  auto net = tiny_model(V);
  BatcherOptions bo;
  bo.max_batch = 1;
  bo.max_queue = 1;
  Batcher batcher(net, tokenizer, bo);
  std::mt19937 rng(7);
  SamplingParams p;
  p.temperature = 0;
  p.max_tokens = 80;
  auto first = batcher.submit(random_prompt(rng, V, 4), p);
  TokenEvent ev;
  ASSERT_TRUE(batcher.next(first, &ev));  // running now
  auto second = batcher.submit(random_prompt(rng, V, 4), p);  // queued
  EXPECT_THROW(batcher.submit(random_prompt(rng, V, 4), p), QueueFull);
  batcher.cancel(first);
  batcher.cancel(second);
  const auto r1 = batcher.wait(first);
  const auto r2 = batcher.wait(second);
  EXPECT_EQ(r1.finish_reason, "cancelled");
  EXPECT_LT(r1.tokens.size(), 80u);
  EXPECT_EQ(r2.finish_reason, "cancelled");
  EXPECT_EQ(batcher.stats().running, 0);
  // The slot is free again.
  p.max_tokens = 3;
  EXPECT_EQ(batcher.wait(batcher.submit(random_prompt(rng, V, 4), p)).tokens.size(), 3u);
}

TEST(Batcher, PerRequestAdaptersInOneBatchEqualEachAdapterMerged) {
  auto tokenizer = tiny_tokenizer();
  const auto V = static_cast<int64_t>(tokenizer.vocab_size());
  TempDir tmp;
  // Two adapters of different ranks and targets, with non-zero B so they change the output.
  std::vector<std::string> dirs;
  std::vector<std::pair<std::set<std::string>, fm::LoraSpec>> setups{
      {{"model.layers.0.self_attn.q_proj", "model.layers.1.self_attn.v_proj", "model.layers.1.mlp.down_proj"}, {4, 8.0, 0.0, false}},
      {{"model.layers.0.self_attn.o_proj", "model.layers.0.mlp.up_proj"}, {8, 16.0, 0.0, true}}};
  for (size_t g = 0; g < setups.size(); ++g) {
    auto net = tiny_model(V);
    fm::add_lora(net, setups[g].first, setups[g].second);
    torch::NoGradGuard ng;
    torch::manual_seed(10 + static_cast<int>(g));
    for (auto& [name, t] : fm::lora_tensors(net)) t.normal_(0, 0.3);
    dirs.push_back((tmp.path / ("adapter" + std::to_string(g))).string());
    fm::save_peft_adapter(dirs.back(), fm::lora_tensors(net), setups[g].second, setups[g].first, "tiny");
  }
  LoadedModel served;
  served.net = tiny_model(V);
  served.tokenizer = tokenizer;
  install_adapter_bank(served, dirs);

  std::mt19937 rng(11);
  std::vector<std::vector<int64_t>> prompts;
  std::vector<SamplingParams> params;
  const std::vector<int> adapters{-1, 0, 1, 0, 1, -1};
  for (size_t i = 0; i < adapters.size(); ++i) {
    prompts.push_back(random_prompt(rng, V, 3 + static_cast<int>(i) * 2));
    SamplingParams p;
    p.temperature = 0;
    p.max_tokens = 12;
    params.push_back(p);
  }
  BatcherOptions bo;
  bo.max_batch = 6;
  Batcher batcher(served.net, served.tokenizer, bo);
  auto results = run_batched(batcher, prompts, params, adapters);
  bool differs = false;
  for (size_t i = 0; i < adapters.size(); ++i) {
    auto ref = tiny_model(V);
    if (adapters[i] >= 0) {
      const auto g = static_cast<size_t>(adapters[i]);
      auto ad = fm::load_peft_adapter(dirs[g]);
      fm::add_lora(ref, fm::adapted_modules(ad.tensors), ad.spec);
      torch::NoGradGuard ng;
      std::map<std::string, torch::Tensor> by(ad.tensors.begin(), ad.tensors.end());
      for (auto& [n, t] : fm::lora_tensors(ref)) t.copy_(by.at(n));
      fm::merge_lora(ref);
    }
    auto alone = generate(ref, tokenizer, prompts[i], params[i]);
    EXPECT_EQ(results[i].tokens, alone.tokens) << "request " << i << " adapter " << adapters[i];
    if (adapters[i] >= 0) {
      auto base = tiny_model(V);
      differs = differs || generate(base, tokenizer, prompts[i], params[i]).tokens != alone.tokens;
    }
  }
  EXPECT_TRUE(differs) << "the adapters never changed a greedy output: the test would not see a wrong bank";
}

TEST(Batcher, Int8AndDynamicInt8StayCloseToFp32) {
  auto tokenizer = tiny_tokenizer();
  const auto V = static_cast<int64_t>(tokenizer.vocab_size());
  auto ref = tiny_model(V);
  torch::NoGradGuard ng;
  std::mt19937 rng(13);
  auto idx = torch::tensor(random_prompt(rng, V, 24), torch::kInt64).unsqueeze(0);
  auto want = ref->forward(idx);
  for (const std::string mode : {"int8", "dynamic_int8"}) {
    LoadedModel m;
    m.net = tiny_model(V);
    m.tokenizer = tokenizer;
    const auto summary = quantize_for_serving(m, mode);
    EXPECT_NE(summary.find("linear layers"), std::string::npos) << summary;
    auto got = m.net->forward(idx);
    const double rel = ((got - want).norm() / want.norm()).item<double>();
    EXPECT_LT(rel, 0.05) << mode << ": " << summary;
    EXPECT_GT(rel, 0.0) << mode << " changed nothing: " << summary;
    // And it serves: greedy generation through the batcher equals generate() on the same weights.
    SamplingParams p;
    p.temperature = 0;
    p.max_tokens = 8;
    Batcher batcher(m.net, m.tokenizer, {});
    auto prompt = random_prompt(rng, V, 5);
    EXPECT_EQ(batcher.wait(batcher.submit(prompt, p)).tokens, generate(m.net, tokenizer, prompt, p).tokens) << mode;
  }
}

// The int8 quantiser (quantize_int8's and the decode LM head's) works a chunk of rows at a time: the
// same values as the whole-matrix formula across a chunk edge, and within half a step of w. On the
// CPU no int8 head copy is made (it serves the CUDA decode gemv only).
TEST(Batcher, Int8QuantiserByChunksEqualsTheWholeMatrixFormula) {
  torch::manual_seed(31);
  auto w = torch::randn({5000, 24}) * torch::rand({5000, 1});  // 5,000 rows: two chunks of ≤ 4,096
  w[4096].zero_();                                             // an all-zero row on the chunk edge
  const auto [q, scale] = fm::quantize_rows_int8(w);
  auto s_ref = w.abs().amax(1).clamp_min(1e-12) / 127.0;
  auto q_ref = torch::round(w / s_ref.unsqueeze(1)).clamp(-127, 127).to(torch::kInt8);
  EXPECT_TRUE(torch::equal(q, q_ref));
  EXPECT_TRUE(torch::allclose(scale, s_ref));
  EXPECT_EQ(q[4096].abs().sum().item<int64_t>(), 0);
  const auto err = (q.to(torch::kFloat32) * scale.unsqueeze(1) - w).abs() / scale.unsqueeze(1);
  EXPECT_LE(err.max().item<double>(), 0.5 + 1e-4);
  auto tokenizer = tiny_tokenizer();
  auto net = tiny_model(static_cast<int64_t>(tokenizer.vocab_size()));
  EXPECT_EQ(net->quantize_head_for_decode(), 0);
  EXPECT_FALSE(net->head_quantized_for_decode());
}
