// LoRA: adapters learn while the base stays bit-identical, merge = base + adapter, unmerge
// restores the base, PEFT files round-trip, int8 base, and packed instruction rows see nothing of
// their neighbours.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <filesystem>
#include <algorithm>
#include <fstream>
#include <unistd.h>
#include <nlohmann/json.hpp>

#include "engine/data/instruct.h"
#include "engine/model/lora.h"
#include "engine/model/transformer.h"
#include "engine/tokenizer/tokenizer.h"

using namespace fathom::model;
namespace fs = std::filesystem;

namespace {

ModelArgs tiny(const std::string& family = "llama") {
  ModelArgs a;
  a.family = family;
  a.vocab_size = 61;
  a.d_model = 32;
  a.n_layers = 2;
  a.n_heads = 4;
  a.n_kv_heads = 2;
  a.d_ff = 64;
  a.max_seq_len = 32;
  return a;
}

std::map<std::string, torch::Tensor> base_snapshot(Transformer& net) {
  std::map<std::string, torch::Tensor> m;
  for (auto& p : net->named_parameters())
    if (p.key().find("lora_") == std::string::npos) m[p.key()] = p.value().detach().clone();
  return m;
}

std::string temp_dir(const std::string& name) {
  auto d = fs::temp_directory_path() / ("fathom-lora-" + name + "-" + std::to_string(::getpid()));
  fs::remove_all(d);
  fs::create_directories(d);
  return d.string();
}

}  // namespace

TEST(Lora, TrainsTheAdaptersOnlyAndTheBaseStaysBitIdentical) {
  torch::manual_seed(0);
  Transformer net(tiny());
  const auto targets = lora_targets(net, {"query_key_value", "o_proj", "gate_proj", "up_proj", "down_proj"});
  EXPECT_EQ(targets.size(), 2u * 7u);
  LoraSpec spec{8, 16.0, 0.0, false};
  const int64_t n = add_lora(net, targets, spec);
  EXPECT_EQ(n, 2 * 8 * ((32 + 32) + (32 + 16) * 2 + (32 + 32) + (32 + 64) * 2 + (64 + 32)));
  freeze_base(net);
  const auto before = base_snapshot(net);
  std::vector<torch::Tensor> trainable;
  for (auto& p : net->parameters())
    if (p.requires_grad()) trainable.push_back(p);
  ASSERT_EQ(static_cast<int64_t>(trainable.size()), 2 * 14);
  torch::optim::Adam opt(trainable, torch::optim::AdamOptions(1e-2));
  auto idx = torch::randint(0, 61, {4, 24}, torch::kInt64);
  auto targets_t = torch::roll(idx, -1, 1);
  net->train();
  double first = 0, last = 0;
  for (int i = 0; i < 150; ++i) {
    opt.zero_grad();
    auto loss = net->loss(idx, targets_t);
    loss.backward();
    opt.step();
    (i == 0 ? first : last) = loss.item<double>();
  }
  // Random targets over a random base: rank-8 adapters cannot memorise it all (full training
  // reaches ~0.02 here) but must clearly learn (measured 4.13 → 3.52).
  EXPECT_LT(last, first - 0.4) << "adapters did not learn: " << first << " → " << last;
  for (auto& [name, t] : base_snapshot(net)) EXPECT_TRUE(torch::equal(t, before.at(name))) << name << " changed";
  for (auto& p : net->named_parameters())
    if (p.key().find("lora_") == std::string::npos) EXPECT_FALSE(p.value().grad().defined()) << p.key() << " has a gradient";
}

TEST(Lora, MergedLogitsEqualBasePlusAdapterAndUnmergeRestoresTheBase) {
  for (bool rslora : {false, true}) {
    torch::manual_seed(1);
    Transformer net(tiny("qwen2"));
    add_lora(net, lora_targets(net, {"q_proj", "v_proj", "down_proj"}), LoraSpec{4, 8.0, 0.0, rslora});
    {
      torch::NoGradGuard ng;
      for (auto& t : lora_tensors(net)) t.second.normal_(0, 0.2);  // B is 0 at init: make it matter
    }
    const auto base = base_snapshot(net);
    net->eval();
    torch::NoGradGuard ng;
    auto idx = torch::randint(0, 61, {2, 16}, torch::kInt64);
    auto with_adapter = net->forward(idx);
    merge_lora(net);
    auto merged = net->forward(idx);
    EXPECT_LT((merged - with_adapter).abs().max().item<double>(), 1e-5);
    unmerge_lora(net);
    for (auto& [name, t] : base_snapshot(net)) EXPECT_TRUE(torch::allclose(t, base.at(name), 0, 1e-6)) << name;
    auto again = net->forward(idx);
    EXPECT_LT((again - with_adapter).abs().max().item<double>(), 1e-5);
  }
}

TEST(Lora, PeftFilesRoundTrip) {
  torch::manual_seed(2);
  Transformer net(tiny());
  const auto targets = lora_targets(net, {"q_proj", "v_proj"});
  LoraSpec spec{4, 8.0, 0.05, true};
  add_lora(net, targets, spec);
  {
    torch::NoGradGuard ng;
    for (auto& t : lora_tensors(net)) t.second.normal_(0, 0.1);
  }
  const auto dir = temp_dir("peft");
  save_peft_adapter(dir, lora_tensors(net), spec, targets, "/models/base");
  std::ifstream f(fs::path(dir) / "adapter_config.json");
  auto cfg = nlohmann::json::parse(f);
  EXPECT_EQ(cfg["peft_type"], "LORA");
  EXPECT_EQ(cfg["task_type"], "CAUSAL_LM");
  EXPECT_EQ(cfg["r"], 4);
  EXPECT_EQ(cfg["lora_alpha"], 8.0);
  EXPECT_EQ(cfg["use_rslora"], true);
  EXPECT_EQ(cfg["target_modules"], nlohmann::json::array({"q_proj", "v_proj"}));
  auto loaded = load_peft_adapter(dir);
  EXPECT_EQ(loaded.spec.r, 4);
  EXPECT_TRUE(loaded.spec.rslora);
  EXPECT_EQ(adapted_modules(loaded.tensors), targets);
  // Into a fresh model: same logits.
  torch::manual_seed(2);
  Transformer other(tiny());
  add_lora(other, adapted_modules(loaded.tensors), loaded.spec);
  {
    torch::NoGradGuard ng;
    std::map<std::string, torch::Tensor> by_name(loaded.tensors.begin(), loaded.tensors.end());
    for (auto& [n, t] : lora_tensors(other)) t.copy_(by_name.at(n));
  }
  net->eval();
  other->eval();
  torch::NoGradGuard ng;
  auto idx = torch::randint(0, 61, {1, 12}, torch::kInt64);
  EXPECT_TRUE(torch::equal(net->forward(idx), other->forward(idx)));
  // Unknown target names are an error that says what the model has.
  try {
    lora_targets(net, {"query"});
    FAIL() << "no error";
  } catch (const std::exception& e) {
    EXPECT_NE(std::string(e.what()).find("q_proj"), std::string::npos) << e.what();
  }
}

TEST(Lora, Int8BaseHalvesBf16WeightsAndStaysClose) {
  torch::manual_seed(3);
  Transformer net(tiny());
  add_lora(net, lora_targets(net, {"q_proj", "v_proj"}), LoraSpec{4, 8.0, 0.0, false});
  freeze_base(net);
  net->eval();
  torch::NoGradGuard ng;
  auto idx = torch::randint(0, 61, {2, 16}, torch::kInt64);
  auto exact = net->forward(idx);
  const auto [before, after] = quantize_base_int8(net);
  EXPECT_LT(after * 3, before) << "fp32 → int8 should be about 4× smaller (2× against bf16)";
  auto q = net->forward(idx);
  const double rel = ((q - exact).norm() / exact.norm()).item<double>();
  EXPECT_LT(rel, 0.02) << "int8 base changed the logits by " << rel;
  for (auto& p : net->named_parameters()) EXPECT_EQ(p.key().find("self_attn.q_proj.weight"), std::string::npos) << "fp32 weight left";
}

TEST(Instruct, PackedExamplesDoNotSeeEachOther) {
  torch::manual_seed(4);
  Transformer net(tiny());
  net->eval();
  torch::NoGradGuard ng;
  // Two "examples" of 10 and 14 tokens packed into one row of 24, vs each alone.
  auto a = torch::randint(0, 61, {1, 10}, torch::kInt64);
  auto b = torch::randint(0, 61, {1, 14}, torch::kInt64);
  auto packed = torch::cat({a, b}, 1);
  auto segments = torch::cat({torch::zeros({1, 10}, torch::kInt64), torch::ones({1, 14}, torch::kInt64)}, 1);
  auto positions = torch::cat({torch::arange(10).unsqueeze(0), torch::arange(14).unsqueeze(0)}, 1);
  auto targets = torch::full({1, 24}, -100, torch::kInt64);
  targets.narrow(1, 10, 13).copy_(b.narrow(1, 1, 13));  // the loss of b alone
  auto loss_packed = net->loss(packed, targets, segments, positions);
  auto tb = torch::full({1, 14}, -100, torch::kInt64);
  tb.narrow(1, 0, 13).copy_(b.narrow(1, 1, 13));
  auto loss_alone = net->loss(b, tb);
  EXPECT_NEAR(loss_packed.item<double>(), loss_alone.item<double>(), 1e-5) << "the second example saw the first";
}

TEST(Instruct, TemplateMasksAndPacking) {
  fathom::tok::BpeTrainOptions bo;
  bo.vocab_size = 300;
  auto tokenizer = fathom::tok::train_bpe_from_texts({"hello world. the lessee shall keep the premises in repair."}, bo);
  fathom::data::InstructExample ex;
  ex.turns = {{"user", "hello"}, {"assistant", "world"}};
  auto pieces = fathom::data::render_example(ex, "plain", tokenizer);
  auto enc = fathom::data::encode_example(pieces, tokenizer, 1000);
  ASSERT_EQ(enc.ids.size(), enc.train.size());
  // Trained tokens decode to the completion (and the end-of-text token).
  std::vector<uint32_t> trained;
  for (size_t i = 0; i < enc.ids.size(); ++i)
    if (enc.train[i]) trained.push_back(static_cast<uint32_t>(enc.ids[i]));
  EXPECT_EQ(tokenizer.decode(trained), "world<|endoftext|>");
  // User text cannot inject special tokens: "<|endoftext|>" in content is plain text.
  ex.turns[0].content = "<|endoftext|>";
  auto inj = fathom::data::encode_example(fathom::data::render_example(ex, "plain", tokenizer), tokenizer, 1000);
  const auto eos = static_cast<int64_t>(*tokenizer.eos_id());
  EXPECT_EQ(std::count(inj.ids.begin(), inj.ids.end(), eos), 1) << "only the template's end-of-text is the special token";
  // Packing: 3 copies of a 12-token example into rows of 30 → 2 per row; targets never cross.
  auto e12 = enc;
  e12.ids.resize(12);
  e12.train.assign(12, 1);
  auto rows = fathom::data::pack_examples({e12, e12, e12}, 29, true, 0);
  EXPECT_EQ(rows.rows(), 2);
  EXPECT_EQ(rows.segments[11], 0);
  EXPECT_EQ(rows.segments[12], 1);
  EXPECT_EQ(rows.positions[12], 0);
  EXPECT_EQ(rows.targets[11], -100) << "the last token of example 0 must not predict example 1";
  EXPECT_EQ(rows.targets[24], -100) << "padding";
  EXPECT_EQ(rows.trained_tokens, 3 * 11);
  auto unpacked = fathom::data::pack_examples({e12, e12, e12}, 29, false, 0);
  EXPECT_EQ(unpacked.rows(), 3);
}

TEST(Instruct, BadLinesNameFileAndLine) {
  const auto dir = temp_dir("jsonl");
  const auto path = dir + "/bad.jsonl";
  std::ofstream(path) << "{\"prompt\": \"a\", \"completion\": \"b\"}\n{\"prompt\": 3, \"completion\": \"b\"}\n";
  try {
    fathom::data::read_instruct_jsonl(path);
    FAIL() << "no error";
  } catch (const std::exception& e) {
    EXPECT_NE(std::string(e.what()).find("bad.jsonl:2"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("prompt"), std::string::npos) << e.what();
  }
  std::ofstream(path) << "{\"messages\": [{\"role\": \"user\", \"content\": \"hi\"}]}\n";
  EXPECT_THROW(fathom::data::read_instruct_jsonl(path), std::runtime_error);  // no assistant turn
}
