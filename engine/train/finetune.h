// Fine-tuning support for the trainer: taking the model and tokenizer from the base being adapted,
// instruction data (render, tokenise, pack, split, batch), and `finetune --preview`.
#pragma once
#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "engine/config/config.h"
#include "engine/data/batch_loader.h"
#include "engine/data/instruct.h"
#include "engine/tokenizer/tokenizer.h"

namespace fathom::train {

// The base a fine-tune adapts: lora.base, else model.init_from ("" when neither).
std::string base_of(const config::RunConfig& cfg);

// Replaces cfg.model's shape and cfg.tokenizer with the base's — a Fathom checkpoint (its run's
// config.yaml and the tokenizer its state.json names) or a Hugging Face directory (config.json,
// tokenizer.json) — keeping the run's own activation_checkpointing and MoE balancing settings.
// Returns lines for the log. Throws std::runtime_error when the base cannot be read.
std::vector<std::string> adopt_base_model(config::RunConfig& cfg);

struct InstructSet {
  std::string chat_template;
  std::vector<data::InstructExample> examples;     // all, in file order
  std::vector<data::EncodedExample> encoded;       // same order
  data::PackedRows train, val;
};
// Reads data.train, renders with the resolved template, encodes (truncating to seq_len + 1),
// holds out data.validation_fraction of the examples (by a hash of their position and the seed)
// and packs both parts.
InstructSet prepare_instruct(const config::RunConfig& cfg, const tok::Tokenizer& tokenizer);

// Rows of (step, micro) for this rank: epochs over the rows in a seeded order per epoch, so the
// batch of a step is a pure function of the step (exact resume).
data::Batch instruct_batch(const data::PackedRows& rows, int64_t step, int micro, int accum, int64_t batch_size, int rank,
                           int world, uint64_t seed);

// `finetune CONFIG --preview`: the first `n` examples as the model sees them (segments of text
// with train flags), token-length histogram, truncation and parameter counts.
nlohmann::json instruct_preview(const config::RunConfig& cfg, const InstructSet& set, const tok::Tokenizer& tokenizer,
                                int n);

}  // namespace fathom::train
