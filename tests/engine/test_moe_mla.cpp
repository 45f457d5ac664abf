// DeepSeek architectures: MLA (expanded training form vs the absorbed, compressed-cache inference
// form), DeepSeekMoE routing against a per-token reference, capacity drops, both balancing
// methods, activation checkpointing with MoE, and KV-cached decoding of the dense families.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <numeric>

#include "engine/model/moe.h"
#include "engine/model/transformer.h"

using namespace fathom::model;

namespace {

ModelArgs deepseek(int64_t q_lora_rank = 24, bool interleave = true) {
  ModelArgs a;
  a.family = "deepseek";
  a.vocab_size = 101;
  a.d_model = 48;
  a.n_layers = 3;
  a.n_heads = 4;
  a.n_kv_heads = 4;
  a.d_ff = 96;
  a.max_seq_len = 32;
  a.tie_embeddings = false;
  a.attention = "mla";
  a.mla = {/*kv_lora_rank=*/16, q_lora_rank, /*qk_rope_head_dim=*/8, /*qk_nope_head_dim=*/12, /*v_head_dim=*/10, interleave};
  a.moe.n_routed_experts = 8;
  a.moe.n_shared_experts = 2;
  a.moe.top_k = 3;
  a.moe.d_expert = 16;
  a.moe.first_k_dense = 1;
  return a;
}

ModelArgs dense(const std::string& family) {
  ModelArgs a;
  a.family = family;
  a.vocab_size = 89;
  a.d_model = 32;
  a.n_layers = 2;
  a.n_heads = 4;
  a.n_kv_heads = 2;
  a.d_ff = 64;
  a.max_seq_len = 32;
  return a;
}

// Prefill the first `split` tokens, then decode one token at a time; compare to a full forward.
void expect_cached_decoding_matches(Transformer& net, int64_t split, double tol) {
  torch::NoGradGuard ng;
  net->eval();
  auto idx = torch::randint(0, net->args().vocab_size, {2, 20}, torch::kInt64);
  auto full = net->forward(idx);
  auto cache = net->new_cache(2, 24);
  std::vector<torch::Tensor> parts{net->forward_cached(idx.narrow(1, 0, split), cache)};
  for (int64_t t = split; t < 20; ++t) parts.push_back(net->forward_cached(idx.narrow(1, t, 1), cache));
  auto cached = torch::cat(parts, 1);
  EXPECT_EQ(cache.length, 20);
  EXPECT_LT((cached - full).abs().max().item<double>(), tol);
}

}  // namespace

TEST(Rope, DeinterleaveTakesEvensThenOdds) {
  auto x = torch::arange(8, torch::kFloat32).view({1, 1, 1, 8});
  auto y = deinterleave(x);
  EXPECT_TRUE(torch::equal(y.view({8}), torch::tensor({0, 2, 4, 6, 1, 3, 5, 7}, torch::kFloat32)));
}

TEST(Mla, ParameterNamesAreDeepseekV3s) {
  Transformer net(deepseek());
  std::set<std::string> names;
  for (const auto& p : net->named_parameters()) names.insert(p.key());
  for (const char* n : {"model.layers.0.self_attn.q_a_proj.weight", "model.layers.0.self_attn.q_a_layernorm.weight",
                        "model.layers.0.self_attn.q_b_proj.weight", "model.layers.0.self_attn.kv_a_proj_with_mqa.weight",
                        "model.layers.0.self_attn.kv_a_layernorm.weight", "model.layers.0.self_attn.kv_b_proj.weight",
                        "model.layers.0.self_attn.o_proj.weight", "model.layers.0.mlp.gate_proj.weight",
                        "model.layers.1.mlp.gate.weight", "model.layers.1.mlp.experts.7.up_proj.weight",
                        "model.layers.2.mlp.shared_experts.down_proj.weight", "lm_head.weight"})
    EXPECT_TRUE(names.count(n)) << n;
  EXPECT_FALSE(names.count("model.layers.1.mlp.gate_proj.weight")) << "layer 1 is an MoE layer";
  std::set<std::string> buffers;
  for (const auto& b : net->named_buffers()) buffers.insert(b.key());
  EXPECT_TRUE(buffers.count("model.layers.1.mlp.gate.e_score_correction_bias"));
  // shared experts: one MLP of width n_shared · d_expert
  EXPECT_EQ(net->named_parameters()["model.layers.1.mlp.shared_experts.up_proj.weight"].sizes(),
            (std::vector<int64_t>{32, 48}));
  // kv_b_proj: (H·(nope + v), kv_lora_rank)
  EXPECT_EQ(net->named_parameters()["model.layers.0.self_attn.kv_b_proj.weight"].sizes(), (std::vector<int64_t>{88, 16}));
}

TEST(Mla, CompressedCacheDecodingMatchesTheExpandedForward) {
  for (int64_t q_rank : {0, 24}) {
    for (bool interleave : {false, true}) {
      torch::manual_seed(1);
      Transformer net(deepseek(q_rank, interleave));
      expect_cached_decoding_matches(net, 7, 2e-5);
    }
  }
  // The cache holds kv_lora_rank + rope dims per token and layer, not 2·H·(nope + v).
  Transformer net(deepseek());
  auto cache = net->new_cache(1, 32);
  const int64_t per_token = cache.bytes() / 32 / 3 / 4;  // floats per token per layer
  EXPECT_EQ(per_token, 16 + 8);
  EXPECT_LT(per_token * 5, 2 * 4 * (12 + 10));
}

TEST(Mla, IsCausal) {
  torch::manual_seed(2);
  Transformer net(deepseek());
  net->eval();
  torch::NoGradGuard ng;
  auto idx = torch::randint(0, 101, {1, 12}, torch::kInt64);
  auto a = net->forward(idx);
  auto idx2 = idx.clone();
  idx2.narrow(1, 8, 4).fill_(5);
  auto b = net->forward(idx2);
  EXPECT_TRUE(torch::allclose(a.narrow(1, 0, 8), b.narrow(1, 0, 8), 1e-5, 1e-6));
}

TEST(KvCache, DenseFamiliesDecodeLikeTheFullForward) {
  for (const char* family : {"llama", "qwen2"}) {
    torch::manual_seed(3);
    Transformer net(dense(family));
    if (std::string(family) == "qwen2") {
      // Qwen2 has q/k/v biases (and no o bias); make them non-zero so they matter.
      auto params = net->named_parameters();
      ASSERT_TRUE(params.contains("model.layers.0.self_attn.q_proj.bias"));
      ASSERT_FALSE(params.contains("model.layers.0.self_attn.o_proj.bias"));
      torch::NoGradGuard ng;
      for (auto& p : params)
        if (p.key().find(".bias") != std::string::npos) p.value().normal_(0, 0.5);
    }
    expect_cached_decoding_matches(net, 5, 2e-5);
    expect_cached_decoding_matches(net, 1, 2e-5);
  }
}

// The vectorised router and dispatch against a direct per-token evaluation of the definition.
TEST(Moe, MatchesAPerTokenReference) {
  for (const std::string gate : {"softmax", "sigmoid"}) {
    ModelArgs a = deepseek();
    a.moe.gate = gate;
    a.moe.n_group = 4;
    a.moe.topk_group = 2;
    a.moe.norm_topk_prob = gate == "sigmoid";
    a.moe.routed_scaling_factor = 2.5;
    torch::manual_seed(4);
    MoeImpl moe(a);
    for (auto& p : moe.parameters()) {
      torch::NoGradGuard ng;
      p.normal_(0, 0.2);
    }
    // Positive, as trained biases around sigmoid scores are: with negative scores the masked-out
    // experts (0) would tie, and which of them top-k picks is arbitrary (in transformers too).
    moe.gate->e_score_correction_bias.uniform_(0.0, 0.1);
    moe.eval();
    auto x = torch::randn({3, 5, 48});
    torch::NoGradGuard ng;
    auto y = moe.forward(x);

    auto h = x.view({-1, 48});
    const int64_t E = 8, per = 2;
    for (int64_t t = 0; t < h.size(0); ++t) {
      auto logits = torch::mv(moe.gate->weight, h[t]);
      auto s = gate == "sigmoid" ? logits.sigmoid() : logits.softmax(0);
      auto c = s + moe.gate->e_score_correction_bias;
      std::vector<std::pair<double, int64_t>> groups;
      for (int64_t g = 0; g < 4; ++g) {
        auto part = c.narrow(0, g * per, per);
        const double score = gate == "sigmoid" ? part.sum().item<double>() : part.max().item<double>();
        groups.push_back({score, g});
      }
      std::sort(groups.rbegin(), groups.rend());
      std::vector<std::pair<double, int64_t>> cand;
      for (int64_t e = 0; e < E; ++e) {
        const int64_t g = e / per;
        const bool allowed = g == groups[0].second || g == groups[1].second;
        cand.push_back({allowed ? c[e].item<double>() : 0.0, e});
      }
      std::sort(cand.rbegin(), cand.rend());
      std::vector<int64_t> chosen{cand[0].second, cand[1].second, cand[2].second};
      double wsum = 0;
      for (auto e : chosen) wsum += s[e].item<double>();
      auto expect = moe.shared_experts(h[t].unsqueeze(0)).squeeze(0);
      for (auto e : chosen) {
        double w = s[e].item<double>();
        if (a.moe.norm_topk_prob) w /= wsum;
        w *= 2.5;
        expect = expect + moe.experts[e]->as<MlpImpl>()->forward(h[t].unsqueeze(0)).squeeze(0) * w;
      }
      EXPECT_LT((y.view({-1, 48})[t] - expect).abs().max().item<double>(), 1e-5) << gate << " token " << t;
    }
  }
}

TEST(Moe, CapacityDropsTheLaterTokensAndCountsThem) {
  ModelArgs a = deepseek();
  a.moe.capacity_factor = 0.5;  // half the even share: at least half the assignments dropped
  torch::manual_seed(5);
  MoeImpl moe(a);
  moe.train();
  auto x = torch::randn({4, 16, 48});
  auto y = moe.forward(x);
  auto stats = moe.take_stats();
  EXPECT_EQ(stats.assignments, 4 * 16 * 3);
  EXPECT_GE(stats.dropped_frac, 0.5);
  EXPECT_LT(stats.dropped_frac, 1.0);
  EXPECT_NEAR(std::accumulate(stats.load.begin(), stats.load.end(), 0.0), 1.0, 1e-9);
  // no cap: nothing dropped, and the output differs from the capped one
  a.moe.capacity_factor = 0;
  torch::manual_seed(5);
  MoeImpl uncapped(a);
  uncapped.train();
  auto y2 = uncapped.forward(x);
  EXPECT_EQ(uncapped.take_stats().dropped_frac, 0.0);
  EXPECT_FALSE(torch::allclose(y, y2));
}

// With a capacity that drops: the output and the gradients (router, routed and shared experts)
// against a per-token evaluation where each expert keeps only its earliest tokens.
TEST(Moe, CappedDispatchMatchesAPerTokenReferenceWithGradients) {
  ModelArgs a = deepseek();
  a.moe.capacity_factor = 0.75;
  a.moe.norm_topk_prob = true;
  a.moe.routed_scaling_factor = 1.5;
  torch::manual_seed(11);
  MoeImpl moe(a);
  for (auto& p : moe.parameters()) {
    torch::NoGradGuard ng;
    p.normal_(0, 0.2);
  }
  moe.eval();  // no statistics; gradients still flow
  const int64_t N = 20, C = 48, E = 8, k = 3;
  auto x = torch::randn({2, 10, C});
  auto g = torch::randn({2, 10, C});
  (moe.forward(x) * g).sum().backward();
  std::vector<torch::Tensor> got_grads, got_params;
  for (auto& p : moe.parameters()) {
    got_params.push_back(p);
    got_grads.push_back(p.grad().defined() ? p.grad().clone() : torch::zeros_like(p));
    p.mutable_grad() = torch::Tensor();
  }
  torch::Tensor y_got;
  {
    torch::NoGradGuard ng;
    y_got = moe.forward(x).view({N, C});
  }

  // Reference: token by token, expert e keeps its first `capacity` assignments in token order.
  const int64_t capacity = static_cast<int64_t>(std::ceil(0.75 * N * k / static_cast<double>(E)));
  auto h = x.view({N, C});
  auto s = torch::matmul(h, moe.gate->weight.t()).softmax(-1);
  auto idx = std::get<1>((s.detach() + moe.gate->e_score_correction_bias).topk(k, -1));
  std::vector<int64_t> used(E, 0);
  int64_t dropped = 0;
  std::vector<torch::Tensor> rows;
  for (int64_t t = 0; t < N; ++t) {
    auto wt = s[t].index_select(0, idx[t]);
    wt = wt / (wt.sum() + 1e-20) * 1.5;
    auto yt = moe.shared_experts(h[t].unsqueeze(0)).squeeze(0);
    for (int64_t i = 0; i < k; ++i) {
      const int64_t e = idx[t][i].item<int64_t>();
      if (used[e]++ >= capacity) {
        ++dropped;
        continue;
      }
      yt = yt + moe.experts[e]->as<MlpImpl>()->forward(h[t].unsqueeze(0)).squeeze(0) * wt[i];
    }
    rows.push_back(yt);
  }
  ASSERT_GT(dropped, 0) << "the test wants a capacity that drops";
  auto y_ref = torch::stack(rows, 0);
  (y_ref * g.view({N, C})).sum().backward();
  EXPECT_LT((y_got - y_ref.detach()).abs().max().item<double>(), 1e-5);
  auto names = moe.named_parameters();
  size_t i = 0;
  for (auto& item : names) {
    auto want = item.value().grad().defined() ? item.value().grad() : torch::zeros_like(item.value());
    const double scale = want.abs().max().item<double>() + 1e-6;
    EXPECT_LT((got_grads[i] - want).abs().max().item<double>() / scale, 1e-4) << item.key();
    ++i;
  }
}

TEST(Moe, AuxLossIsAlphaSumFP) {
  ModelArgs a = deepseek();
  a.moe.aux_loss_coef = 0.1;
  torch::manual_seed(6);
  MoeImpl moe(a);
  moe.train();
  auto x = torch::randn({2, 10, 48});
  torch::Tensor aux;
  moe.forward(x, &aux);
  ASSERT_TRUE(aux.defined());
  // recompute by the definition
  torch::NoGradGuard ng;
  auto h = x.view({-1, 48});
  auto s = torch::matmul(h, moe.gate->weight.t()).softmax(-1);
  auto idx = std::get<1>(s.topk(3, -1));
  auto counts = torch::bincount(idx.reshape({-1}), {}, 8).to(torch::kFloat32);
  auto f = counts * (8.0 / (3.0 * 20.0));
  const double expect = 0.1 * (f * s.mean(0)).sum().item<double>();
  EXPECT_NEAR(aux.item<double>(), expect, 1e-6);
  EXPECT_TRUE(aux.requires_grad()) << "the aux loss must reach the router weights";
  // A router that sends everything to expert 0 is penalised far more (→ α·E/k·1 as P_0 → 1).
  moe.gate->weight[0].add_(5.0);
  torch::Tensor skewed;
  {
    torch::AutoGradMode on(true);
    moe.forward(x.abs(), &skewed);
  }
  EXPECT_GT(skewed.item<double>(), 1.5 * aux.item<double>());
}

TEST(Moe, BiasUpdateRaisesUnderloadedExperts) {
  ModelArgs a = deepseek();
  a.moe.gate = "sigmoid";
  a.moe.balance = "bias_update";
  a.moe.bias_update_rate = 0.05;
  torch::manual_seed(7);
  MoeImpl moe(a);
  {
    torch::NoGradGuard ng;
    moe.gate->weight.normal_(0, 0.02);
    moe.gate->weight[0].add_(0.5);  // expert 0 strongly preferred by tokens with positive mean
  }
  moe.train();
  auto x = torch::randn({4, 16, 48}).abs();
  moe.forward(x);
  moe.update_bias();
  auto b = moe.gate->e_score_correction_bias;
  EXPECT_NEAR(b[0].item<double>(), -0.05, 1e-7) << "the overloaded expert's bias falls";
  EXPECT_GT(b.max().item<double>(), 0.0) << "under-loaded experts' biases rise";
  // Repeated steps even out the load.
  auto first = moe.take_stats();
  for (int i = 0; i < 60; ++i) {
    moe.forward(x);
    moe.update_bias();
  }
  moe.take_stats();
  moe.forward(x);
  auto later = moe.take_stats();
  const double max_first = *std::max_element(first.load.begin(), first.load.end());
  const double max_later = *std::max_element(later.load.begin(), later.load.end());
  EXPECT_LT(max_later, max_first) << "load did not even out: max share " << max_first << " → " << max_later;
}

TEST(Moe, FullActivationCheckpointingGivesTheSameGradientsAndCountsOnce) {
  std::vector<torch::Tensor> grads[2];
  int64_t assignments[2];
  for (int mode = 0; mode < 2; ++mode) {
    ModelArgs a = deepseek();
    a.activation_checkpointing = mode ? "full" : "none";
    torch::manual_seed(8);
    Transformer net(a);
    net->train();
    auto idx = torch::randint(0, 101, {2, 16}, torch::kInt64);
    auto targets = torch::randint(0, 101, {2, 16}, torch::kInt64);
    auto loss = net->loss(idx, targets);
    EXPECT_GT(net->last_aux_loss(), 0.0);
    loss.backward();
    for (auto& p : net->parameters()) grads[mode].push_back(p.grad().defined() ? p.grad().clone() : torch::zeros_like(p));
    assignments[mode] = net->moe_layers()[0]->take_stats().assignments;
  }
  ASSERT_EQ(grads[0].size(), grads[1].size());
  for (size_t i = 0; i < grads[0].size(); ++i)
    EXPECT_TRUE(torch::allclose(grads[0][i], grads[1][i], 1e-4, 1e-6)) << "parameter " << i;
  EXPECT_EQ(assignments[0], 2 * 16 * 3);
  EXPECT_EQ(assignments[1], assignments[0]) << "recomputation in backward counted the tokens twice";
}

TEST(Moe, MatmulParameterCountUsesActiveExperts) {
  ModelArgs a = deepseek();
  const int64_t C = 48;
  const int64_t mla = C * 24 + 24 * 4 * 20 + C * (16 + 8) + 16 * 4 * 22 + 4 * 10 * C;
  const int64_t dense_ffn = 3 * C * 96;
  const int64_t moe_ffn = 8 * C + 3 * C * 16 * (3 + 2);
  EXPECT_EQ(matmul_parameter_count(a), C * 101 + 3 * mla + dense_ffn + 2 * moe_ffn);
}
