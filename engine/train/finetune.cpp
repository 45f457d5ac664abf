// Fine-tuning support (see finetune.h).
#include "engine/train/finetune.h"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <numeric>
#include <random>
#include <stdexcept>

#include "engine/checkpoint/hf.h"
#include "engine/config/estimate.h"

namespace fathom::train {

namespace fs = std::filesystem;
using json = nlohmann::json;

std::string base_of(const config::RunConfig& cfg) { return !cfg.lora.base.empty() ? cfg.lora.base : cfg.model.init_from; }

namespace {

// Keep what the fine-tune itself decides; take the architecture from the base.
void take_shape(config::ModelConfig& dst, const config::ModelConfig& base) {
  const auto ckpt = dst.activation_checkpointing;
  const auto balance = dst.moe.balance;
  const auto init = dst.init_from;
  dst = base;
  dst.activation_checkpointing = ckpt;
  dst.moe.balance = balance;
  dst.init_from = init;
}

// step-N → its checkpoints/ dir's `latest` when given a run or checkpoints directory.
std::string checkpoint_dir_of(const std::string& path) {
  if (fs::exists(fs::path(path) / "MANIFEST.json")) return path;
  for (const auto& d : {fs::path(path), fs::path(path) / "checkpoints"}) {
    std::ifstream latest(d / "latest");
    std::string name;
    if (latest && std::getline(latest, name) && !name.empty() && fs::exists(d / name / "MANIFEST.json")) return (d / name).string();
  }
  return "";
}

}  // namespace

std::vector<std::string> adopt_base_model(config::RunConfig& cfg) {
  std::vector<std::string> notes;
  const std::string base = base_of(cfg);
  if (base.empty()) return notes;
  if (fs::exists(fs::path(base) / "config.json")) {
    const auto info = ckpt::read_hf_model_dir(base);
    take_shape(cfg.model, info.model);
    if (!info.tokenizer_json.empty()) {
      cfg.tokenizer.kind = "hf";
      cfg.tokenizer.path = info.tokenizer_json;
    }
    notes.push_back("base: " + info.architecture + " from " + base);
    return notes;
  }
  const std::string ckpt_dir = checkpoint_dir_of(base);
  if (ckpt_dir.empty())
    throw std::runtime_error("the base '" + base + "' is neither a Hugging Face model directory (config.json) nor a Fathom "
                             "checkpoint (…/checkpoints/step-N with MANIFEST.json)");
  const auto run_config = fs::path(ckpt_dir).parent_path().parent_path() / "config.yaml";
  if (!fs::exists(run_config))
    throw std::runtime_error("the base checkpoint " + ckpt_dir + " has no run config at " + run_config.string() +
                             " to take the model shape from");
  config::LoadOptions lo;
  lo.check_paths = false;
  auto loaded = config::load_config_file(run_config.string(), lo);
  if (!loaded.ok()) throw std::runtime_error(run_config.string() + ": " + loaded.errors.front().message());
  take_shape(cfg.model, loaded.config.model);
  // The tokenizer the base was trained with: state.json records the file it used.
  std::ifstream sf(fs::path(ckpt_dir) / "state.json");
  json state = json::parse(sf, nullptr, false);
  if (state.is_object() && state.contains("tokenizer") && state["tokenizer"].is_string()) {
    cfg.tokenizer = loaded.config.tokenizer;
    cfg.tokenizer.path = state["tokenizer"].get<std::string>();
  } else {
    cfg.tokenizer = loaded.config.tokenizer;
  }
  if (cfg.model.vocab_size == 0 && state.is_object()) {
    // bpe-trained bases: the model's vocabulary is the tokenizer's (filled when the tokenizer loads).
  }
  notes.push_back("base: " + ckpt_dir + " (model and tokenizer of " + run_config.string() + ")");
  return notes;
}

InstructSet prepare_instruct(const config::RunConfig& cfg, const tok::Tokenizer& tokenizer) {
  InstructSet set;
  std::vector<std::string> files;
  for (const auto& p : cfg.data.train) {
    if (fs::is_directory(p)) {
      for (const auto& e : fs::directory_iterator(p))
        if (e.path().extension() == ".jsonl") files.push_back(e.path().string());
    } else {
      files.push_back(p);
    }
  }
  std::sort(files.begin(), files.end());
  if (files.empty()) throw std::runtime_error("data.task is instruct but data.train names no .jsonl file");
  set.examples = data::read_instruct_files(files);
  set.chat_template = data::resolve_chat_template(cfg.data.chat_template, cfg.model.family, tokenizer);
  const int64_t width = cfg.data.seq_len + 1;
  std::vector<data::EncodedExample> train, val;
  const uint64_t seed = static_cast<uint64_t>(cfg.run.seed);
  for (size_t i = 0; i < set.examples.size(); ++i) {
    auto enc = data::encode_example(data::render_example(set.examples[i], set.chat_template, tokenizer), tokenizer, width);
    set.encoded.push_back(enc);
    // splitmix64 of (seed, index) → uniform [0, 1): held out below validation_fraction.
    uint64_t z = seed * 0x9E3779B97F4A7C15ull + i + 1;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    z ^= z >> 31;
    const double u = static_cast<double>(z >> 11) / 9007199254740992.0;
    (u < cfg.data.validation_fraction && set.examples.size() > 1 ? val : train).push_back(std::move(enc));
  }
  const int64_t pad = tokenizer.eos_id().value_or(0);
  set.train = data::pack_examples(train, cfg.data.seq_len, cfg.data.packing, pad);
  set.val = data::pack_examples(val, cfg.data.seq_len, cfg.data.packing, pad);
  if (set.train.rows() == 0)
    throw std::runtime_error("no training example has a completion token left after truncation to data.seq_len " +
                             std::to_string(cfg.data.seq_len) + "; raise data.seq_len");
  return set;
}

data::Batch instruct_batch(const data::PackedRows& rows, int64_t step, int micro, int accum, int64_t batch_size, int rank,
                           int world, uint64_t seed) {
  const int64_t R = rows.rows(), T = rows.seq_len;
  data::Batch b;
  b.step = step;
  b.micro = micro;
  auto opts = torch::TensorOptions().dtype(torch::kInt64);
  b.inputs = torch::empty({batch_size, T}, opts);
  b.targets = torch::empty({batch_size, T}, opts);
  b.segments = torch::empty({batch_size, T}, opts);
  b.positions = torch::empty({batch_size, T}, opts);
  int64_t cached_epoch = -1;
  std::vector<int64_t> perm;
  for (int64_t r = 0; r < batch_size; ++r) {
    const int64_t g = ((step * accum + micro) * world + rank) * batch_size + r;
    const int64_t epoch = g / R;
    if (epoch != cached_epoch) {
      perm.resize(static_cast<size_t>(R));
      std::iota(perm.begin(), perm.end(), 0);
      std::mt19937_64 rng(seed * 1000003ull + static_cast<uint64_t>(epoch));
      std::shuffle(perm.begin(), perm.end(), rng);
      cached_epoch = epoch;
    }
    const int64_t row = perm[static_cast<size_t>(g % R)];
    const size_t off = static_cast<size_t>(row * T);
    std::copy_n(rows.tokens.begin() + off, T, b.inputs[r].data_ptr<int64_t>());
    std::copy_n(rows.targets.begin() + off, T, b.targets[r].data_ptr<int64_t>());
    std::copy_n(rows.segments.begin() + off, T, b.segments[r].data_ptr<int64_t>());
    std::copy_n(rows.positions.begin() + off, T, b.positions[r].data_ptr<int64_t>());
  }
  return b;
}

json instruct_preview(const config::RunConfig& cfg, const InstructSet& set, const tok::Tokenizer& tokenizer, int n) {
  json out;
  out["seq_len"] = cfg.data.seq_len;
  out["template"] = set.chat_template;
  out["count"] = set.examples.size();
  int64_t truncated = 0, longest = 0;
  for (const auto& e : set.encoded) {
    truncated += e.truncated;
    longest = std::max(longest, e.full_length);
  }
  out["truncated"] = truncated;
  out["train_rows"] = set.train.rows();
  out["val_rows"] = set.val.rows();
  out["trained_tokens"] = set.train.trained_tokens;
  json examples = json::array();
  for (int i = 0; i < n && i < static_cast<int>(set.examples.size()); ++i) {
    json segs = json::array();
    for (const auto& p : data::render_example(set.examples[static_cast<size_t>(i)], set.chat_template, tokenizer))
      segs.push_back({{"text", p.text}, {"train", p.train}});
    examples.push_back({{"index", i},
                        {"source", set.examples[static_cast<size_t>(i)].source},
                        {"tokens", set.encoded[static_cast<size_t>(i)].full_length},
                        {"truncated", set.encoded[static_cast<size_t>(i)].truncated},
                        {"segments", segs}});
  }
  out["examples"] = examples;
  // Histogram of full token lengths: 16 equal bins up to max(longest, seq_len + 1).
  const int64_t top = std::max<int64_t>(longest, cfg.data.seq_len + 1);
  const int64_t bins = 16, width = std::max<int64_t>(1, (top + bins - 1) / bins);
  json edges = json::array(), counts = json::array();
  std::vector<int64_t> c(static_cast<size_t>(bins), 0);
  for (const auto& e : set.encoded) c[static_cast<size_t>(std::min<int64_t>(bins - 1, e.full_length / width))]++;
  for (int64_t b = 0; b <= bins; ++b) edges.push_back(b * width);
  for (auto v : c) counts.push_back(v);
  out["histogram"] = {{"edges", edges}, {"counts", counts}};
  config::RunConfig counted = cfg;
  if (counted.model.vocab_size == 0) counted.model.vocab_size = static_cast<int64_t>(tokenizer.vocab_size());
  const auto params = config::count_parameters(counted);
  out["trainable_params"] = params.lora;
  out["base_params"] = params.total;
  return out;
}

}  // namespace fathom::train
