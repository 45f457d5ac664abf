// Estimator: parameter counts, training FLOPs per token and memory per rank of a run config, with
// a fits / does-not-fit verdict per device and suggestions. Analytical (no torch): an estimate
// to choose settings before launching, within ~10-20% of what the allocator reports.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "engine/config/config.h"

namespace fathom::config {

struct DeviceSpec {
  std::string name;            // "h200", "cpu", "mem=24GiB"
  int64_t memory_bytes = 0;
  double peak_flops = 0;       // dense bf16/fp16 tensor peak (datasheet); 0 = unknown
  double peak_flops_fp32 = 0;  // dense fp32 (non-tensor-core) peak; 0 = unknown
};

// The GPU table (datasheet memory and dense peaks) plus "cpu" for this machine.
std::vector<DeviceSpec> known_devices();
// "cpu", "h200", "h200:2", "a100-80g:4", "v100-32g", "mem=24GiB", "mem=80GB:8", comma-separated
// lists ("h200:2,cpu"). Sizes: B, K/KiB, M/MiB, G/GiB, T/TiB are binary; KB, MB, GB, TB decimal.
// Returns one entry per device; on error returns {} and sets *error (when given).
std::vector<DeviceSpec> parse_devices(const std::string& text, std::string* error = nullptr);

struct ParamCounts {
  int64_t total = 0;             // every tensor of the model (incl. the MoE bias buffer)
  int64_t embedding = 0;         // token embedding (vocab x d_model)
  int64_t non_embedding = 0;     // total - embedding - untied LM head
  int64_t active_per_token = 0;  // total minus the routed experts a token does not visit
  int64_t trainable = 0;         // total, or the LoRA adapters when lora.enabled
  int64_t attention = 0, feed_forward = 0, router = 0, norms = 0, lm_head = 0;  // lm_head 0 when tied
  int64_t lora = 0;              // adapter parameters (counted even when lora is off)
  int64_t matmul_active = 0;     // N in 6N: weights in matrix products per token, LM head incl.
  int64_t vocab_size = 0;        // used for the count (model.vocab_size or the tokenizer's)
  bool vocab_assumed = false;    // true when vocab_size is a guess (hf tokenizer, vocab_size 0)
};

struct MemoryBreakdown {  // bytes per rank
  int64_t parameters = 0, gradients = 0, optimizer_state = 0;
  int64_t activations = 0;  // for the configured model.activation_checkpointing
  int64_t activations_none = 0, activations_selective = 0, activations_full = 0;
  int64_t total = 0;        // parameters + gradients + optimizer_state + activations
};

struct DeviceVerdict {
  DeviceSpec device;
  int64_t usable_bytes = 0;    // memory_bytes minus the framework headroom
  int64_t required_bytes = 0;
  bool fits = false;
  double step_seconds = 0;     // at the assumed MFU; 0 when the device's peak is unknown
};

struct Suggestion {
  std::string description;                 // "enable activation checkpointing (full)"
  std::vector<std::string> overrides;      // --set arguments that apply it
  int64_t total_bytes = 0;                 // memory per rank after this and the earlier suggestions
  bool fits = false;
};

struct Estimate {
  ParamCounts params;
  double flops_per_token = 0;              // training (fwd + bwd): 6N + attention term
  double attention_flops_per_token = 0;    // the 12·L·d·T (PaLM) part of it
  int64_t tokens_per_step = 0;             // over all ranks
  double flops_per_step = 0;               // over all ranks
  int64_t world_size = 1;                  // ranks the memory is sharded over
  MemoryBreakdown memory;
  std::vector<DeviceVerdict> devices;
  bool fits = true;                        // every device fits
  std::vector<Suggestion> suggestions;     // cumulative, in order, when something does not fit
  std::vector<std::string> notes;          // assumptions worth knowing
  double headroom_fraction = 0.10;
  double assumed_mfu = 0.40;
  double tokens_per_second = 0;            // over all ranks; 0 when unknown
};

ParamCounts count_parameters(const RunConfig& config);
// Memory per rank with the data-parallel group of world_size ranks (ZeRO shards over it).
MemoryBreakdown estimate_memory(const RunConfig& config, int64_t world_size, bool fused_attention = false);
// devices: one entry per rank; with more than one device the world size is their count, else
// distributed.world_size.
Estimate estimate(const RunConfig& config, const std::vector<DeviceSpec>& devices);

std::string format_estimate(const RunConfig& config, const Estimate& estimate);  // readable table
std::string estimate_to_json(const Estimate& estimate);                          // pretty JSON

}  // namespace fathom::config
