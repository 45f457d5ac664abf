// The estimator against hand-computed values: parameter counts of two presets, FLOPs per token,
// memory components by precision and ZeRO stage, device parsing, verdicts and suggestions.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "engine/config/config.h"
#include "engine/config/estimate.h"
#include "engine/config/units.h"

using namespace fathom::config;

namespace {
RunConfig preset(const std::string& name, std::vector<std::string> overrides = {}) {
  LoadOptions o;
  o.check_paths = false;
  o.overrides = std::move(overrides);
  LoadResult r = load_config_text("extends: " + name, "<test>", o);
  EXPECT_TRUE(r.ok()) << (r.errors.empty() ? "" : r.errors[0].message());
  return r.config;
}
constexpr int64_t MiB = 1024 * 1024;
}  // namespace

TEST(Estimate, DebugTinyParameterCount) {
  // V = 512, d = 64, L = 2, H = 4, Hkv = 2, head 16, d_ff = 192, tied embeddings.
  //   embedding            512·64                          = 32,768
  //   attention per layer  q 64·64 + k 64·32 + v 64·32 + o 64·64 = 4096 + 2048 + 2048 + 4096 = 12,288; x2 = 24,576
  //   SwiGLU per layer     3·64·192                        = 36,864; x2 = 73,728
  //   RMSNorm              2 layers · 2 · 64 + final 64    = 320
  //   total                32,768 + 24,576 + 73,728 + 320  = 131,392
  const ParamCounts p = count_parameters(preset("debug-tiny"));
  EXPECT_EQ(p.vocab_size, 512);
  EXPECT_EQ(p.embedding, 32768);
  EXPECT_EQ(p.attention, 24576);
  EXPECT_EQ(p.feed_forward, 73728);
  EXPECT_EQ(p.norms, 320);
  EXPECT_EQ(p.lm_head, 0);
  EXPECT_EQ(p.router, 0);
  EXPECT_EQ(p.total, 131392);
  EXPECT_EQ(p.non_embedding, 131392 - 32768);
  EXPECT_EQ(p.active_per_token, p.total);
  EXPECT_EQ(p.trainable, p.total);
  // N in 6N: attention + FFN + the LM head (tied, but still a 512x64 matmul) = 24,576 + 73,728 + 32,768.
  EXPECT_EQ(p.matmul_active, 131072);
  // Untied: the LM head adds another 512·64.
  EXPECT_EQ(count_parameters(preset("debug-tiny", {"model.tie_embeddings=false"})).total, 131392 + 32768);
}

TEST(Estimate, DeepseekMoeTinyParameterCount) {
  // V = 512, d = 64, L = 2, H = 4; MLA kv_lora 32, no q compression, rope 8, nope 16, v 16 (qk head 24);
  // MoE: 8 routed + 1 shared experts of width 32, top-2, first layer dense (d_ff 192), aux-loss balance.
  //   embedding        512·64                                       = 32,768
  //   MLA per layer    q 64·4·24 = 6144; kv_a 64·(32+8) = 2560; kv_b 32·4·(16+16) = 4096; o 4·16·64 = 4096
  //                    = 16,896; x2 = 33,792
  //   norms            per layer 2·64 + kv latent norm 32 = 160; x2 + final 64 = 384
  //   dense layer      3·64·192                                     = 36,864
  //   MoE layer        (8 + 1)·3·64·32 = 9·6144                     = 55,296
  //   router           64·8                                         = 512
  //   total            32,768 + 33,792 + 384 + 36,864 + 55,296 + 512 = 159,616
  //   active           total - (8 - 2)·6144                         = 122,752
  const ParamCounts p = count_parameters(preset("deepseek-moe-tiny"));
  EXPECT_EQ(p.embedding, 32768);
  EXPECT_EQ(p.attention, 33792);
  EXPECT_EQ(p.norms, 384);
  EXPECT_EQ(p.feed_forward, 36864 + 55296);
  EXPECT_EQ(p.router, 512);
  EXPECT_EQ(p.total, 159616);
  EXPECT_EQ(p.active_per_token, 122752);
  // N = attention 33,792 + dense 36,864 + (2 + 1) experts 18,432 + router 512 + LM head 32,768 = 122,368.
  EXPECT_EQ(p.matmul_active, 122368);
  // bias_update balance adds an 8-element bias buffer per MoE layer (counted, not trained).
  const ParamCounts b = count_parameters(preset("deepseek-moe-tiny", {"model.moe.balance=bias_update"}));
  EXPECT_EQ(b.total, 159616 + 8);
  EXPECT_EQ(b.trainable, 159616);
}

TEST(Estimate, DeepseekMoe16bIsSixteenBillionWithTwoPointEightActive) {
  const ParamCounts p = count_parameters(preset("deepseek-moe-16b"));
  EXPECT_NEAR(static_cast<double>(p.total) / 1e9, 16.4, 0.05);          // DeepSeekMoE paper: 16.4B
  EXPECT_NEAR(static_cast<double>(p.active_per_token) / 1e9, 2.8, 0.05);  // and 2.8B activated
}

TEST(Estimate, FlopsPerToken) {
  // PaLM: 6N + 12·L·d·T. debug-tiny: 6·131,072 + 12·2·64·64 = 786,432 + 98,304 = 884,736.
  const Estimate tiny = estimate(preset("debug-tiny"), {});
  EXPECT_DOUBLE_EQ(tiny.attention_flops_per_token, 98304.0);
  EXPECT_DOUBLE_EQ(tiny.flops_per_token, 884736.0);
  EXPECT_EQ(tiny.tokens_per_step, 8 * 64);
  EXPECT_DOUBLE_EQ(tiny.flops_per_step, 884736.0 * 512);
  // gpt2-124m: N = 12·4·768² + 12·3·768·2048 + 50304·768 = 28,311,552 + 56,623,104 + 38,633,472 = 123,568,128;
  // 6N = 741,408,768; attention 12·12·768·1024 = 113,246,208; sum 854,654,976.
  const Estimate gpt2 = estimate(preset("gpt2-124m"), {});
  EXPECT_EQ(gpt2.params.matmul_active, 123568128);
  EXPECT_DOUBLE_EQ(gpt2.flops_per_token, 854654976.0);
  EXPECT_EQ(gpt2.tokens_per_step, 16 * 32 * 1024);
  // MLA: 6·L·T·H·(qk_head + v_head) = 6·2·64·4·(24 + 16) = 122,880; 6N = 6·122,368 = 734,208.
  const Estimate moe = estimate(preset("deepseek-moe-tiny"), {});
  EXPECT_DOUBLE_EQ(moe.flops_per_token, 734208.0 + 122880.0);
}

TEST(Estimate, MemoryComponentsByPrecisionAndZero) {
  const int64_t P = 131392;
  // fp32: weights 4 B, gradients 4 B, AdamW m + v 8 B per parameter.
  const MemoryBreakdown fp32 = estimate_memory(preset("debug-tiny"), 1);
  EXPECT_EQ(fp32.parameters, 4 * P);
  EXPECT_EQ(fp32.gradients, 4 * P);
  EXPECT_EQ(fp32.optimizer_state, 8 * P);
  // Activations, n = b·s = 8·64 = 512 tokens, fp32 (4 B):
  //   per layer: attention n·(2d + (H + 2Hkv)·h + H·h) = 512·(128 + 128 + 64) = 163,840
  //              scores b·H·s² = 8·4·64² = 131,072;  SwiGLU n·(2d + 4·d_ff) = 512·(128 + 768) = 458,752
  //              sum 753,664 elements
  //   head: final norm n·2d·4 = 262,144 B; logits + fp32 log-probs + their gradient n·V·(4+4+4) = 3,145,728 B
  const int64_t head = 262144 + 3145728;
  EXPECT_EQ(fp32.activations_none, 2 * 753664 * 4 + head);                    // 9 MiB
  EXPECT_EQ(fp32.activations_selective, 2 * (753664 - 131072) * 4 + head);    // 8 MiB
  EXPECT_EQ(fp32.activations_full, (2 * 512 * 64 + 753664) * 4 + head);       // inputs + one recomputed layer
  EXPECT_EQ(fp32.activations, fp32.activations_none);
  EXPECT_EQ(fp32.total, 16 * P + fp32.activations_none);
  EXPECT_EQ(fp32.activations_none, 9 * MiB);

  // bf16 autocast: fp32 master (4 B) + 2 B working copy; grads and moments stay fp32; activations 2 B.
  const MemoryBreakdown bf16 = estimate_memory(preset("debug-tiny", {"train.precision=bf16"}), 1);
  EXPECT_EQ(bf16.parameters, 6 * P);
  EXPECT_EQ(bf16.gradients, 4 * P);
  EXPECT_EQ(bf16.optimizer_state, 8 * P);
  // head in bf16: fp32 logits, log-probs and gradient (12 B) + bf16 logits and gradient (4 B)
  EXPECT_EQ(bf16.activations_none, 2 * 753664 * 2 + 512 * 128 * 2 + 512 * 512 * (12 + 4));
  // fused attention (GPU): the b·H·s² scores are not kept
  EXPECT_EQ(estimate_memory(preset("debug-tiny"), 1, true).activations_none, 2 * (753664 - 131072) * 4 + head);

  // ZeRO over 4 ranks: stage 1 shards the optimizer state, stage 2 also the gradients.
  const MemoryBreakdown z1 = estimate_memory(preset("debug-tiny", {"optimizer.zero.stage=1"}), 4);
  EXPECT_EQ(z1.optimizer_state, 8 * P / 4);
  EXPECT_EQ(z1.gradients, 4 * P);
  const MemoryBreakdown z2 = estimate_memory(preset("debug-tiny", {"optimizer.zero.stage=2"}), 4);
  EXPECT_EQ(z2.optimizer_state, 8 * P / 4);
  EXPECT_EQ(z2.gradients, 4 * P / 4);
  EXPECT_EQ(z2.parameters, 4 * P);

  // Checkpointing picks the matching activation figure; activation sharding divides the layers' part.
  EXPECT_EQ(estimate_memory(preset("debug-tiny", {"model.activation_checkpointing=full"}), 1).activations, fp32.activations_full);
  const MemoryBreakdown sharded =
      estimate_memory(preset("debug-tiny", {"model.activation_sharding.enabled=true", "model.activation_sharding.num_shards=2"}), 1);
  EXPECT_EQ(sharded.activations_none, 753664 * 4 + head);
}

TEST(Estimate, LoraTrainsOnlyTheAdapters) {
  // r = 8 on q_proj (64 -> 64) and v_proj (64 -> 32): 8·(64+64) + 8·(64+32) = 1792 per layer, x2 = 3584.
  const RunConfig c = preset("debug-tiny", {"lora.enabled=true", "lora.r=8", "lora.target_modules=[q_proj, v_proj]", "lora.base=/ckpt"});
  const ParamCounts p = count_parameters(c);
  EXPECT_EQ(p.lora, 3584);
  EXPECT_EQ(p.trainable, 3584);
  const MemoryBreakdown m = estimate_memory(c, 1);
  EXPECT_EQ(m.parameters, 3584 * 4 + 131392 * 4);  // adapters fp32 + frozen base fp32
  EXPECT_EQ(m.gradients, 3584 * 4);
  EXPECT_EQ(m.optimizer_state, 3584 * 8);
}

TEST(Estimate, ParseDevices) {
  std::string error;
  auto two = parse_devices("h200:2", &error);
  ASSERT_EQ(two.size(), 2u) << error;
  EXPECT_EQ(two[0].name, "h200");
  EXPECT_EQ(two[0].memory_bytes, 143771 * MiB);
  EXPECT_GT(two[0].peak_flops, 9e14);
  EXPECT_EQ(parse_devices("a100-80g:4, cpu").size(), 5u);
  EXPECT_EQ(parse_devices("v100-32g")[0].memory_bytes, 32768 * MiB);
  EXPECT_EQ(parse_devices("A100")[0].name, "a100-80g");
  EXPECT_EQ(parse_devices("mem=24GiB")[0].memory_bytes, 24ll * 1024 * MiB);
  EXPECT_EQ(parse_devices("mem=80GB:8").size(), 8u);
  EXPECT_EQ(parse_devices("mem=80GB")[0].memory_bytes, 80000000000ll);
  EXPECT_EQ(parse_devices("cpu")[0].name, "cpu");
  EXPECT_GT(parse_devices("cpu")[0].memory_bytes, 0);
  EXPECT_TRUE(parse_devices("h300", &error).empty());
  EXPECT_NE(error.find("did you mean h200"), std::string::npos) << error;
  EXPECT_TRUE(parse_devices("h200:0", &error).empty());
  EXPECT_TRUE(parse_devices("mem=lots", &error).empty());
  EXPECT_TRUE(parse_devices("", &error).empty());
}

TEST(Estimate, VerdictsAndSuggestions) {
  const Estimate fits = estimate(preset("gpt2-124m"), parse_devices("h200"));
  EXPECT_TRUE(fits.fits);
  ASSERT_EQ(fits.devices.size(), 1u);
  EXPECT_EQ(fits.devices[0].usable_bytes, static_cast<int64_t>(143771.0 * MiB * 0.9));
  EXPECT_GT(fits.devices[0].step_seconds, 0);
  EXPECT_TRUE(fits.suggestions.empty());

  // llama-1b at micro-batch 4 x 2048 without checkpointing does not fit 16 GiB.
  const RunConfig big = preset("llama-1b");
  const Estimate no = estimate(big, parse_devices("mem=16GiB"));
  EXPECT_FALSE(no.fits);
  EXPECT_FALSE(no.devices[0].fits);
  ASSERT_FALSE(no.suggestions.empty());
  EXPECT_EQ(no.suggestions[0].overrides, (std::vector<std::string>{"model.activation_checkpointing=full"}));
  for (size_t i = 1; i < no.suggestions.size(); ++i) EXPECT_LE(no.suggestions[i].total_bytes, no.suggestions[i - 1].total_bytes);
  // Suggestions are real: applying their overrides gives the figure they promise.
  std::vector<std::string> sets;
  for (const auto& s : no.suggestions) sets.insert(sets.end(), s.overrides.begin(), s.overrides.end());
  EXPECT_EQ(estimate_memory(preset("llama-1b", sets), 1).total, no.suggestions.back().total_bytes);

  // Several devices: memory sharded over their number.
  const Estimate dp = estimate(preset("llama-1b", {"optimizer.zero.stage=2"}), parse_devices("a100-80g:4"));
  EXPECT_EQ(dp.world_size, 4);
  EXPECT_EQ(dp.memory.optimizer_state, count_parameters(big).trainable * 8 / 4);
  EXPECT_EQ(dp.tokens_per_step, 4 * 4 * 16 * 2048);

  const auto j = nlohmann::json::parse(estimate_to_json(no));
  EXPECT_EQ(j["params"]["total"], count_parameters(big).total);
  EXPECT_EQ(j["fits"], false);
  EXPECT_FALSE(format_estimate(big, no).empty());
}

TEST(Estimate, Units) {
  EXPECT_EQ(format_bytes(1.23 * 1024 * 1024 * 1024), "1.23 GiB");
  EXPECT_EQ(format_bytes(512), "512 B");
  EXPECT_EQ(format_count(124.4e6), "124.4M");
  EXPECT_EQ(format_count(512.4e3), "512.4K");
  EXPECT_EQ(format_count(1.29e9), "1.29B");
  EXPECT_EQ(format_flops(917.5e6), "918 MFLOP");
}

// Against measured peaks: `fathom-engine bench train` on one H200 (LibTorch 2.11, bf16, gradient
// accumulation 1), peak allocated bytes from the CUDA caching allocator, 2026-11-30
// (docs/benchmarks.md). The estimate must be within 15% of what the engine really used.
TEST(Estimate, WithinFifteenPercentOfMeasuredH200Peaks) {
  struct Case { const char* preset; double measured_bytes; };
  for (const Case& k : {Case{"gpt2-124m", 19289504256.0}, Case{"llama-1b", 49297052672.0}}) {
    std::string error;
    auto devices = parse_devices("h200", &error);
    ASSERT_EQ(devices.size(), 1u) << error;
    const Estimate e = estimate(preset(k.preset, {"train.gradient_accumulation_steps=1"}), devices);
    const double ratio = static_cast<double>(e.memory.total) / k.measured_bytes;
    EXPECT_GT(ratio, 0.85) << k.preset;
    EXPECT_LT(ratio, 1.15) << k.preset << ": estimated " << e.memory.total << " B, measured " << k.measured_bytes << " B";
  }
}
