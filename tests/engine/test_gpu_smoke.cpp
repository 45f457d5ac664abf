// GPU smoke test: a bf16 matmul and a bf16 forward of the engine's transformer on CUDA agree with
// fp32 on the CPU. Skipped (exit 77) where no CUDA device is visible.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cctype>
#include <cstdlib>
#include <iostream>

#include "engine/infer/batcher.h"
#include "engine/infer/generator.h"
#include "engine/infer/graph_decode.h"
#include "engine/model/fp8.h"
#include "engine/model/lora.h"
#include "tiny_tokenizer.h"
#include "engine/model/transformer.h"
#include "engine/train/optimizer.h"

TEST(GpuSmoke, Bf16MatmulMatchesCpu) {
  torch::manual_seed(0);
  auto a = torch::randn({512, 1024});
  auto b = torch::randn({1024, 256});
  auto ref = torch::matmul(a, b);
  auto got = torch::matmul(a.to(torch::kCUDA, torch::kBFloat16), b.to(torch::kCUDA, torch::kBFloat16)).to(torch::kCPU, torch::kFloat32);
  // bf16 has 8 bits of mantissa: relative error ~ 2^-8 per element, accumulated in fp32.
  const double rel = (got - ref).norm().item<double>() / ref.norm().item<double>();
  EXPECT_LT(rel, 1e-2);
}

TEST(GpuSmoke, TransformerForwardBf16) {
  fathom::model::ModelArgs a;
  a.vocab_size = 512; a.d_model = 128; a.n_layers = 2; a.n_heads = 4; a.n_kv_heads = 2; a.d_ff = 352; a.max_seq_len = 64;
  torch::manual_seed(1);
  fathom::model::Transformer net(a);
  auto idx = torch::randint(0, 512, {2, 64}, torch::kInt64);
  torch::NoGradGuard ng;
  auto ref = net->forward(idx);
  net->to(torch::kBFloat16);
  net->to_device(torch::kCUDA);
  auto got = net->forward(idx.to(torch::kCUDA)).to(torch::kCPU, torch::kFloat32);
  const double rel = (got - ref).norm().item<double>() / ref.norm().item<double>();
  EXPECT_LT(rel, 3e-2);
}

// The CUDA optimizer path (fused AdamW on LibTorch ≥ 2.1) must match the CPU multi-tensor path.
TEST(GpuSmoke, AdamWOnCudaMatchesCpu) {
  torch::manual_seed(2);
  auto w = torch::randn({64, 32});
  auto b = torch::randn({32});
  auto wc = w.clone(), bc = b.clone();
  auto wg = w.to(torch::kCUDA), bg = b.to(torch::kCUDA);
  fathom::train::AdamWOptions o;
  fathom::train::AdamW cpu({{"w", wc}, {"b", bc}}, o);
  fathom::train::AdamW gpu({{"w", wg}, {"b", bg}}, o);
  for (int step = 0; step < 10; ++step) {
    auto gw = torch::randn({64, 32}), gb = torch::randn({32});
    wc.mutable_grad() = gw; bc.mutable_grad() = gb;
    wg.mutable_grad() = gw.to(torch::kCUDA); bg.mutable_grad() = gb.to(torch::kCUDA);
    cpu.step(1e-3);
    gpu.step(1e-3);
  }
  EXPECT_TRUE(torch::allclose(wg.cpu(), wc, 1e-5, 1e-6));
  EXPECT_TRUE(torch::allclose(bg.cpu(), bc, 1e-5, 1e-6));
}

// Grouped-query attention through SDPA's enable_gqa (FATHOM_SDPA_GQA) against the repeated K/V it
// replaces: output and the three gradients, causal prefill and one decoding row. Where this LibTorch
// has no enable_gqa (< 2.5), both runs take the repeat and the test checks nothing new.
TEST(GpuSmoke, SdpaGqaMatchesRepeatedKv) {
  torch::manual_seed(21);
  auto opts = torch::TensorOptions().dtype(torch::kBFloat16).device(torch::kCUDA);
  for (int64_t T : {128, 1}) {
    auto q0 = torch::randn({2, 8, T, 64}, opts), k0 = torch::randn({2, 2, 128, 64}, opts), v0 = torch::randn({2, 2, 128, 64}, opts);
    const int64_t past = T == 1 ? 127 : 0;
    auto run = [&](bool gqa) {
      fathom::model::set_sdpa_gqa(gqa);
      auto q = q0.clone().requires_grad_(true), k = k0.clone().requires_grad_(true), v = v0.clone().requires_grad_(true);
      auto y = fathom::model::causal_attention(q, k, v, past);
      auto g = torch::autograd::grad({y}, {q, k, v}, {torch::ones_like(y)});
      fathom::model::set_sdpa_gqa(std::nullopt);
      return std::vector<torch::Tensor>{y.to(torch::kFloat32), g[0].to(torch::kFloat32), g[1].to(torch::kFloat32),
                                        g[2].to(torch::kFloat32)};
    };
    const auto want = run(false), got = run(true);
    const char* names[] = {"output", "dq", "dk", "dv"};
    for (size_t i = 0; i < want.size(); ++i) {
      const double rel = (got[i] - want[i]).norm().item<double>() / (want[i].norm().item<double>() + 1e-12);
      EXPECT_LT(rel, 2e-2) << names[i] << " at T " << T;
    }
  }
}

// DeepSeek-V3-style model (MLA + group-limited sigmoid MoE) on CUDA in bf16 agrees with fp32 on
// the CPU, in the expanded forward and in compressed-KV-cache decoding (SDPA with a narrower v).
TEST(GpuSmoke, DeepSeekMlaMoeBf16AndCachedDecoding) {
  fathom::model::ModelArgs a;
  a.family = "deepseek"; a.vocab_size = 512; a.d_model = 128; a.n_layers = 3; a.n_heads = 4; a.n_kv_heads = 4; a.d_ff = 256;
  a.max_seq_len = 64; a.attention = "mla"; a.tie_embeddings = false;
  a.mla = {32, 48, 16, 32, 24, true};
  a.moe.n_routed_experts = 8; a.moe.n_shared_experts = 1; a.moe.top_k = 2; a.moe.d_expert = 64; a.moe.first_k_dense = 1;
  a.moe.gate = "sigmoid"; a.moe.n_group = 2; a.moe.topk_group = 1; a.moe.norm_topk_prob = true;
  torch::manual_seed(3);
  fathom::model::Transformer net(a);
  net->eval();
  auto idx = torch::randint(0, 512, {2, 48}, torch::kInt64);
  torch::NoGradGuard ng;
  auto ref = net->forward(idx);
  net->to_device(torch::kCUDA);
  auto fp32 = net->forward(idx.to(torch::kCUDA)).cpu();
  EXPECT_LT(((fp32 - ref).norm() / ref.norm()).item<double>(), 1e-4) << "fp32 CUDA vs CPU";
  auto cache = net->new_cache(2, 64);
  std::vector<torch::Tensor> parts{net->forward_cached(idx.narrow(1, 0, 40).to(torch::kCUDA), cache)};
  for (int t = 40; t < 48; ++t) parts.push_back(net->forward_cached(idx.narrow(1, t, 1).to(torch::kCUDA), cache));
  auto cached = torch::cat(parts, 1).cpu();
  EXPECT_LT(((cached - ref).norm() / ref.norm()).item<double>(), 1e-4) << "cached decoding on CUDA";
  net->to(torch::kBFloat16);
  net->to_device(torch::kCUDA);
  auto bf16 = net->forward(idx.to(torch::kCUDA)).to(torch::kCPU, torch::kFloat32);
  EXPECT_LT(((bf16 - ref).norm() / ref.norm()).item<double>(), 5e-2) << "bf16 CUDA vs fp32 CPU";
}

// LoRA with an int8 base on CUDA: a training step moves only the adapters.
TEST(GpuSmoke, LoraInt8BaseTrainsOnCuda) {
  fathom::model::ModelArgs a;
  a.vocab_size = 256; a.d_model = 64; a.n_layers = 2; a.n_heads = 4; a.n_kv_heads = 2; a.d_ff = 128; a.max_seq_len = 32;
  torch::manual_seed(4);
  fathom::model::Transformer net(a);
  auto targets = fathom::model::lora_targets(net, {"q_proj", "v_proj", "down_proj"});
  fathom::model::add_lora(net, targets, {8, 16.0, 0.0, false});
  fathom::model::freeze_base(net);
  net->to(torch::kBFloat16);
  net->to_device(torch::kCUDA);
  auto [before, after] = fathom::model::quantize_base_int8(net);
  EXPECT_LT(after * 3 / 2, before + 1) << "bf16 → int8 about halves the base";
  std::vector<torch::Tensor> trainable;
  for (auto& p : net->parameters())
    if (p.requires_grad()) trainable.push_back(p);
  torch::optim::Adam opt(trainable, torch::optim::AdamOptions(1e-2));
  auto idx = torch::randint(0, 256, {4, 32}, torch::kInt64).to(torch::kCUDA);
  auto tgt = torch::roll(idx, -1, 1);
  double first = 0, last = 0;
  for (int i = 0; i < 60; ++i) {
    opt.zero_grad();
    auto loss = net->loss(idx, tgt);
    loss.backward();
    opt.step();
    (i == 0 ? first : last) = loss.item<double>();
  }
  EXPECT_LT(last, first - 0.3);
}

// Decode steps replayed from CUDA graphs give the eager step's logits, across span buckets (64,
// 128, 256 keys) and the cache's capacity, in fp32 and bf16; greedy generation gives the same tokens.
TEST(GpuSmoke, CudaGraphDecodeMatchesEager) {
  fathom::model::ModelArgs a;
  a.vocab_size = 512; a.d_model = 128; a.n_layers = 2; a.n_heads = 4; a.n_kv_heads = 2; a.d_ff = 352; a.max_seq_len = 320;
  for (auto dtype : {torch::kFloat32, torch::kBFloat16}) {
    torch::manual_seed(2);
    fathom::model::Transformer net(a);
    net->to(dtype);
    net->to_device(torch::kCUDA);
    net->eval();
    torch::NoGradGuard ng;
    const int64_t P = 40, N = 300;
    auto prompt = torch::randint(0, 512, {1, P}, torch::kInt64).to(torch::kCUDA);
    auto eager = net->new_cache(1, N), graphed = net->new_cache(1, N);
    auto le = net->forward_cached(prompt, eager).select(1, P - 1).squeeze(0);
    net->forward_cached(prompt, graphed);
    std::string why;
    auto g = fathom::infer::GraphDecoder::create(net, graphed, &why);
    ASSERT_TRUE(g) << why;
    double worst = 0;
    for (int64_t pos = P; pos < N; ++pos) {
      const int64_t tok = le.argmax().item<int64_t>();
      auto lg = g->step(tok, pos).to(torch::kFloat32);
      graphed.length += 1;
      le = net->forward_cached(torch::full({1, 1}, tok, torch::TensorOptions().dtype(torch::kInt64).device(torch::kCUDA)), eager)
               .select(1, 0).squeeze(0);
      const double rel = (lg - le.to(torch::kFloat32)).norm().item<double>() / le.to(torch::kFloat32).norm().item<double>();
      worst = std::max(worst, rel);
    }
    EXPECT_LT(worst, dtype == torch::kFloat32 ? 1e-5 : 2e-2) << "dtype " << dtype;
    EXPECT_EQ(g->graphs(), 4) << "spans 64, 128, 256 and the capacity 300";
  }
  // generate() uses the graphs on CUDA: the same greedy tokens as with FATHOM_CUDA_GRAPHS=0.
  torch::manual_seed(3);
  fathom::model::Transformer net(a);
  net->to_device(torch::kCUDA);
  std::vector<int64_t> prompt(20);
  for (size_t i = 0; i < prompt.size(); ++i) prompt[i] = static_cast<int64_t>((i * 37) % 290);
  const auto tok = fathom::testing::tiny_tokenizer();  // 300 tokens: ids past it are never sampled
  fathom::infer::SamplingParams sp;
  sp.temperature = 0;
  sp.ignore_eos = true;
  sp.max_tokens = 150;
  // Greedy generate() keeps the argmax on the device and one step queued ahead (graph_decode.h's
  // greedy pipeline): the same tokens at every length, the first token alone, and when the caller
  // stops it after 5 tokens.
  for (int64_t max_tokens : {int64_t{150}, int64_t{1}, int64_t{2}}) {
    sp.max_tokens = max_tokens;
    const auto with = fathom::infer::generate(net, tok, prompt, sp);
    setenv("FATHOM_CUDA_GRAPHS", "0", 1);
    const auto without = fathom::infer::generate(net, tok, prompt, sp);
    unsetenv("FATHOM_CUDA_GRAPHS");
    EXPECT_EQ(with.tokens, without.tokens) << "max_tokens " << max_tokens;
    EXPECT_EQ(static_cast<int64_t>(with.tokens.size()), max_tokens);
  }
  sp.max_tokens = 150;
  auto stop_after_5 = [](int* n) { return [n](const fathom::infer::TokenEvent&) { return ++*n < 5; }; };
  int n_with = 0, n_without = 0;
  const auto cut = fathom::infer::generate(net, tok, prompt, sp, stop_after_5(&n_with));
  setenv("FATHOM_CUDA_GRAPHS", "0", 1);
  const auto cut_eager = fathom::infer::generate(net, tok, prompt, sp, stop_after_5(&n_without));
  unsetenv("FATHOM_CUDA_GRAPHS");
  EXPECT_EQ(cut.tokens, cut_eager.tokens);
  EXPECT_EQ(n_with, n_without);
  EXPECT_EQ(n_with, 5);
  EXPECT_LT(cut.tokens.size(), size_t{150});
  // A caller that stops at the very first token: nothing is queued, the same single token.
  int first_with = 0, first_without = 0;
  auto stop_at_once = [](int* n) { return [n](const fathom::infer::TokenEvent&) { return ++*n < 1; }; };
  const auto once = fathom::infer::generate(net, tok, prompt, sp, stop_at_once(&first_with));
  setenv("FATHOM_CUDA_GRAPHS", "0", 1);
  const auto once_eager = fathom::infer::generate(net, tok, prompt, sp, stop_at_once(&first_without));
  unsetenv("FATHOM_CUDA_GRAPHS");
  EXPECT_EQ(once.tokens, once_eager.tokens);
  EXPECT_EQ(once.tokens.size(), size_t{1});
  EXPECT_EQ(once.finish_reason, "cancelled");
  // A stop string inside the pipeline: it ends the text where the eager path ends it, with steps
  // still queued (drained, unused). The stop is two printable ASCII characters from the middle of
  // the eager 150-token text.
  setenv("FATHOM_CUDA_GRAPHS", "0", 1);
  const auto full = fathom::infer::generate(net, tok, prompt, sp);
  unsetenv("FATHOM_CUDA_GRAPHS");
  std::string stop;
  for (size_t i = full.text.size() / 2; i + 1 < full.text.size() && stop.empty(); ++i)
    if (std::isprint(static_cast<unsigned char>(full.text[i])) && std::isprint(static_cast<unsigned char>(full.text[i + 1])) &&
        static_cast<unsigned char>(full.text[i]) < 128 && static_cast<unsigned char>(full.text[i + 1]) < 128)
      stop = full.text.substr(i, 2);
  ASSERT_FALSE(stop.empty()) << "no ASCII pair in the greedy text to stop on";
  sp.stop = {stop};
  const auto stopped = fathom::infer::generate(net, tok, prompt, sp);
  setenv("FATHOM_CUDA_GRAPHS", "0", 1);
  const auto stopped_eager = fathom::infer::generate(net, tok, prompt, sp);
  unsetenv("FATHOM_CUDA_GRAPHS");
  EXPECT_EQ(stopped.tokens, stopped_eager.tokens) << "stop " << stop;
  EXPECT_EQ(stopped.text, stopped_eager.text);
  EXPECT_EQ(stopped.finish_reason, "stop");
  EXPECT_EQ(stopped_eager.finish_reason, "stop");
  EXPECT_LT(stopped.tokens.size(), size_t{150});
}

// The continuous batcher's decode steps replayed from CUDA graphs (rows padded to 1, 2, 4, then the
// batch cap 5; spans 64 and 128; the cache growing mid-run, which drops the graphs) give the eager
// batcher's tokens, for requests that join a running batch.
TEST(GpuSmoke, BatcherCudaGraphsMatchEager) {
  fathom::model::ModelArgs a;
  a.vocab_size = 512; a.d_model = 128; a.n_layers = 2; a.n_heads = 4; a.n_kv_heads = 2; a.d_ff = 352; a.max_seq_len = 640;
  torch::manual_seed(4);
  fathom::model::Transformer net(a);
  net->to_device(torch::kCUDA);
  net->eval();
  const auto tok = fathom::testing::tiny_tokenizer();
  std::vector<std::vector<int64_t>> prompts;
  std::vector<fathom::infer::SamplingParams> params;
  for (int i = 0; i < 9; ++i) {
    std::vector<int64_t> p(3 + (i * 7) % 30);
    for (size_t j = 0; j < p.size(); ++j) p[j] = static_cast<int64_t>((i * 31 + j * 17) % 290);
    prompts.push_back(p);
    fathom::infer::SamplingParams sp;
    sp.temperature = 0;
    sp.ignore_eos = true;
    sp.max_tokens = 20 + (i * 67) % 400;  // spans 64 to 512 keys; past the first cache size (256)
    params.push_back(sp);
  }
  auto run = [&](bool graphs, fathom::infer::BatcherStats* stats) {
    if (!graphs) setenv("FATHOM_CUDA_GRAPHS", "0", 1);
    fathom::infer::BatcherOptions bo;
    bo.max_batch = 5;
    fathom::infer::Batcher batcher(net, tok, bo);
    std::vector<fathom::infer::Batcher::Handle> hs;
    for (size_t i = 0; i < prompts.size(); ++i) {
      hs.push_back(batcher.submit(prompts[i], params[i]));
      if (i % 3 == 2) {  // let the batch run a few steps: later requests join a running batch
        fathom::infer::TokenEvent ev;
        for (int k = 0; k < 5 && batcher.next(hs[i - 2], &ev); ++k) {
        }
      }
    }
    std::vector<fathom::infer::GenerateResult> all;
    for (auto& h : hs) all.push_back(batcher.wait(h));
    *stats = batcher.stats();
    unsetenv("FATHOM_CUDA_GRAPHS");
    return all;
  };
  fathom::infer::BatcherStats with_stats, without_stats;
  const auto with = run(true, &with_stats);
  const auto without = run(false, &without_stats);
  for (size_t i = 0; i < prompts.size(); ++i) {
    EXPECT_EQ(with[i].tokens, without[i].tokens) << "request " << i;
    EXPECT_EQ(static_cast<int64_t>(with[i].tokens.size()), params[i].max_tokens) << "request " << i;
  }
  EXPECT_EQ(with_stats.graph_steps, with_stats.decode_steps);
  EXPECT_GT(with_stats.decode_steps, 0);
  EXPECT_EQ(without_stats.graph_steps, 0);
}

// FP8 products (e4m3 forward, e5m2 gradients, per-tensor scales) against bf16: output and both
// gradients within FP8's precision (e4m3 has 3 mantissa bits: ~6% per element, far less in sums).
TEST(GpuSmoke, Fp8LinearMatchesBf16) {
  const auto why = fathom::model::fp8::unavailable_reason(torch::Device(torch::kCUDA, 0));
  if (!why.empty()) GTEST_SKIP() << why;
  torch::manual_seed(4);
  auto opts = torch::TensorOptions().dtype(torch::kBFloat16).device(torch::kCUDA);
  auto x = torch::randn({4, 64, 256}, opts).requires_grad_(true);
  auto w = (torch::randn({384, 256}, opts) * 0.05).requires_grad_(true);
  auto g = torch::randn({4, 64, 384}, opts);
  ASSERT_TRUE(fathom::model::fp8::applicable(x, w));
  auto y8 = fathom::model::fp8::linear(x, w);
  y8.backward(g);
  auto dx8 = x.grad().clone(), dw8 = w.grad().clone();
  x.mutable_grad() = torch::Tensor();
  w.mutable_grad() = torch::Tensor();
  auto y = torch::nn::functional::linear(x, w);
  y.backward(g);
  auto rel = [](const torch::Tensor& a, const torch::Tensor& b) {
    return ((a.to(torch::kFloat32) - b.to(torch::kFloat32)).norm() / b.to(torch::kFloat32).norm()).item<double>();
  };
  EXPECT_EQ(y8.sizes(), y.sizes());
  EXPECT_LT(rel(y8, y), 0.05);
  EXPECT_LT(rel(dx8, x.grad()), 0.08);
  EXPECT_LT(rel(dw8, w.grad()), 0.08);
  std::cout << "fp8 vs bf16 relative error: y " << rel(y8, y) << ", dx " << rel(dx8, x.grad()) << ", dw " << rel(dw8, w.grad()) << "\n";
}

int main(int argc, char** argv) {
  if (!torch::cuda::is_available()) {
    std::cout << "SKIP: no CUDA device visible (gpu tests run on the GPU machine: packaging/build-engine-gpu.sh)\n";
    return 77;
  }
  ::testing::InitGoogleTest(&argc, argv);
  return RUN_ALL_TESTS();
}
