// The transformer: causality, GQA shapes, Hugging Face parameter names, activation checkpointing
// equivalence, initialisation scale.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <set>

#include "engine/model/transformer.h"
#include "engine/ops/shared_linear.h"

using fathom::model::ModelArgs;
using fathom::model::Transformer;

static ModelArgs tiny(std::string ckpt = "none", bool tie = true) {
  ModelArgs a;
  a.vocab_size = 97;
  a.d_model = 32;
  a.n_layers = 2;
  a.n_heads = 4;
  a.n_kv_heads = 2;
  a.d_ff = 64;
  a.max_seq_len = 16;
  a.tie_embeddings = tie;
  a.activation_checkpointing = ckpt;
  return a;
}

TEST(Transformer, LogitsShapeAndCausality) {
  torch::manual_seed(0);
  Transformer net(tiny());
  net->eval();
  auto idx = torch::randint(0, 97, {2, 12}, torch::kInt64);
  auto logits = net->forward(idx);
  ASSERT_EQ(logits.sizes(), (std::vector<int64_t>{2, 12, 97}));
  // Changing tokens after position 5 must not change logits at positions ≤ 5.
  auto idx2 = idx.clone();
  idx2.narrow(1, 6, 6).fill_(3);
  auto logits2 = net->forward(idx2);
  EXPECT_TRUE(torch::allclose(logits.narrow(1, 0, 6), logits2.narrow(1, 0, 6), 1e-5, 1e-6));
  EXPECT_FALSE(torch::allclose(logits.narrow(1, 6, 6), logits2.narrow(1, 6, 6), 1e-5, 1e-6));
}

TEST(Transformer, HuggingFaceParameterNames) {
  Transformer tied(tiny("none", true));
  Transformer untied(tiny("none", false));
  std::set<std::string> names;
  for (const auto& p : tied->named_parameters()) names.insert(p.key());
  EXPECT_TRUE(names.count("model.embed_tokens.weight"));
  EXPECT_TRUE(names.count("model.layers.0.self_attn.q_proj.weight"));
  EXPECT_TRUE(names.count("model.layers.1.self_attn.k_proj.weight"));
  EXPECT_TRUE(names.count("model.layers.1.mlp.down_proj.weight"));
  EXPECT_TRUE(names.count("model.layers.0.input_layernorm.weight"));
  EXPECT_TRUE(names.count("model.layers.0.post_attention_layernorm.weight"));
  EXPECT_TRUE(names.count("model.norm.weight"));
  EXPECT_FALSE(names.count("lm_head.weight"));
  EXPECT_EQ(names.size(), 1u + 2u * 9u + 1u);
  bool has_head = false;
  for (const auto& p : untied->named_parameters()) has_head |= p.key() == "lm_head.weight";
  EXPECT_TRUE(has_head);
  // GQA: k/v project to n_kv_heads · head_dim = 2 · 8.
  EXPECT_EQ(tied->named_parameters()["model.layers.0.self_attn.k_proj.weight"].sizes(), (std::vector<int64_t>{16, 32}));
}

TEST(Transformer, MatmulParameterCount) {
  auto a = tiny("none", false);
  Transformer net(a);
  int64_t matmul = 0;
  for (const auto& p : net->named_parameters())
    if (p.value().dim() == 2 && p.key() != "model.embed_tokens.weight") matmul += p.value().numel();
  EXPECT_EQ(fathom::model::matmul_parameter_count(a), matmul);
}

// Full and selective recomputation must give the same loss and gradients as storing activations.
TEST(Transformer, ActivationCheckpointingMatchesPlainBackward) {
  auto idx = torch::randint(0, 97, {3, 16}, torch::kInt64);
  auto tgt = torch::randint(0, 97, {3, 16}, torch::kInt64);
  std::map<std::string, std::map<std::string, torch::Tensor>> grads;
  std::map<std::string, double> losses;
  for (std::string mode : {"none", "full", "selective"}) {
    torch::manual_seed(42);
    Transformer net(tiny(mode));
    net->train();
    auto loss = net->loss(idx, tgt);
    loss.backward();
    losses[mode] = loss.item<double>();
    for (const auto& p : net->named_parameters()) {
      ASSERT_TRUE(p.value().grad().defined()) << mode << ": no gradient for " << p.key();
      grads[mode][p.key()] = p.value().grad().clone();
    }
  }
  for (std::string mode : {"full", "selective"}) {
    EXPECT_DOUBLE_EQ(losses[mode], losses["none"]) << mode;
    for (const auto& [name, g] : grads["none"]) {
      ASSERT_TRUE(grads[mode][name].defined()) << mode << " " << name;
      EXPECT_TRUE(torch::allclose(grads[mode][name], g, 1e-5, 1e-7)) << mode << " " << name;
    }
  }
}

TEST(Transformer, InitialLossNearUniform) {
  torch::manual_seed(3);
  Transformer net(tiny());
  auto idx = torch::randint(0, 97, {4, 16}, torch::kInt64);
  auto tgt = torch::randint(0, 97, {4, 16}, torch::kInt64);
  const double loss = net->loss(idx, tgt).item<double>();
  EXPECT_NEAR(loss, std::log(97.0), 0.3);  // small init → near-uniform predictions
}

// q/k/v-style products of one input as one autograd node (engine/ops/shared_linear.h; the model uses
// it on CUDA): outputs and every gradient as separate linears give them, also when one output's
// gradient never arrives (no gradient for its weight then, as with a separate linear).
TEST(SharedInputLinear, MatchesSeparateLinears) {
  namespace ops = fathom::ops;
  torch::manual_seed(3);
  const auto f64 = torch::kFloat64;
  auto x0 = torch::randn({2, 5, 16}, f64);
  const std::vector<torch::Tensor> w0{torch::randn({8, 16}, f64), torch::randn({4, 16}, f64), torch::randn({4, 16}, f64)};
  for (bool use_last : {true, false}) {
    auto run = [&](bool shared) {
      auto x = x0.clone().requires_grad_(true);
      std::vector<torch::Tensor> ws;
      for (const auto& w : w0) ws.push_back(w.clone().requires_grad_(true));
      auto ys = shared ? ops::shared_input_linear(x, ws) : ops::composite::shared_input_linear(x, ws);
      auto loss = (ys[0] * ys[0]).sum() + (ys[1] * 0.5).sum();
      if (use_last) loss = loss + ys[2].pow(3).sum();
      loss.backward();
      std::vector<torch::Tensor> out(ys.begin(), ys.end());
      out.push_back(x.grad());
      for (const auto& w : ws) out.push_back(w.grad());
      return out;
    };
    const auto shared = run(true), separate = run(false);
    ASSERT_EQ(shared.size(), separate.size());
    for (size_t i = 0; i < shared.size(); ++i) {
      SCOPED_TRACE("use_last " + std::to_string(use_last) + " tensor " + std::to_string(i));
      ASSERT_EQ(shared[i].defined(), separate[i].defined());
      if (shared[i].defined()) {
        EXPECT_TRUE(torch::allclose(shared[i], separate[i], 1e-12, 1e-12));
      }
    }
    EXPECT_EQ(shared.back().defined(), use_last);  // W_2's gradient only when y_2 was used
  }
  // A weight that does not fit the input: a clear error.
  EXPECT_THROW(ops::shared_input_linear(x0, {torch::randn({4, 15}, f64)}), c10::Error);
}

// Which layers the model hands to shared_input_linear: only those whose forward is exactly x · Wᵀ.
TEST(SharedInputLinear, OnlyPlainProductsQualify) {
  using fathom::model::Linear;
  auto x = torch::randn({2, 3, 16});
  Linear plain(16, 8, /*bias=*/false);
  EXPECT_TRUE(plain->plain_product_for(x));
  Linear biased(16, 8, /*bias=*/true);
  EXPECT_FALSE(biased->plain_product_for(x));
  Linear adapted(16, 8, false);
  adapted->add_lora(fathom::model::LoraSpec{});
  EXPECT_FALSE(adapted->plain_product_for(x));
  adapted->merge();  // merged: the weight is the whole product again
  EXPECT_TRUE(adapted->plain_product_for(x));
  Linear int8(16, 8, false);
  int8->quantize_int8();
  EXPECT_FALSE(int8->plain_product_for(x));
  Linear banked(16, 8, false);
  banked->set_adapter_bank(torch::zeros({2, 4, 16}), torch::zeros({2, 8, 4}), torch::ones({2}));
  EXPECT_FALSE(banked->plain_product_for(x));
}
