// `fathom-engine lora merge|unmerge`: fold a LoRA adapter into its base (W += s·B·A) and write the
// merged model as a Fathom run directory or a Hugging Face model directory; or take an adapter
// back out of a merged model (W -= s·B·A).
#include <CLI/CLI.hpp>

#include <filesystem>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "engine/checkpoint/fs_posix.h"
#include "engine/checkpoint/hf.h"
#include "engine/checkpoint/manager.h"
#include "engine/cli/commands.h"
#include "engine/config/config.h"
#include "engine/infer/load.h"
#include "engine/model/lora.h"

namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

std::string read_file(const fs::path& p) {
  std::ifstream f(p);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

int run(const std::string& model_dir, const std::string& adapter_dir, const std::string& out, const std::string& to,
        const std::string& dtype, bool unmerge) {
  using namespace fathom;
  auto adapter = model::load_peft_adapter(adapter_dir);
  std::string base = model_dir.empty() ? infer::adapter_base(adapter_dir) : model_dir;
  if (base.empty() || !fs::exists(base))
    throw std::runtime_error("the base model of " + adapter_dir + " is unknown or missing ('" + base + "'); pass --base DIR");
  std::cerr << "loading " << base << "\n";
  auto loaded = infer::load_base(base);
  auto& net = loaded.net;
  const auto& cfg = loaded.config;
  const auto modules = model::adapted_modules(adapter.tensors);
  model::add_lora(net, modules, adapter.spec);
  {
    torch::NoGradGuard ng;
    std::map<std::string, torch::Tensor> ad(adapter.tensors.begin(), adapter.tensors.end());
    for (auto& [n, t] : model::lora_tensors(net)) {
      auto it = ad.find(n);
      if (it == ad.end()) throw std::runtime_error(adapter_dir + " has no tensor " + n);
      // W - s·B·A is a merge of the negated B.
      t.copy_(unmerge && n.find(".lora_B.") != std::string::npos ? -it->second : it->second);
    }
  }
  model::merge_lora(net);
  std::cerr << (unmerge ? "unmerged " : "merged ") << modules.size() << " adapted layers (r " << adapter.spec.r << ")\n";

  // A Fathom run directory: config.yaml + checkpoints/step-0.
  const fs::path run_dir = to == "hf" ? fs::path(out + ".fathom.tmp") : fs::path(out);
  if (to == "hf" && fs::exists(out) && !fs::is_empty(out)) throw std::runtime_error(out + " exists and is not empty");
  if (to == "hf") ckpt::posix::remove_tree(run_dir.string());  // left by a killed merge
  if (fs::exists(run_dir) && !fs::is_empty(run_dir)) throw std::runtime_error(run_dir.string() + " exists and is not empty");
  fs::create_directories(run_dir);
  // Whatever fails from here leaves no half-written output behind.
  struct Cleanup {
    std::string path;
    bool armed = true;
    ~Cleanup() {
      if (armed) ckpt::posix::remove_tree(path);
    }
  } cleanup{run_dir.string()};
  const fs::path ckpt_dir = run_dir / "checkpoints" / "step-0";
  if (fs::exists(fs::path(base) / "config.json")) {
    auto info = ckpt::read_hf_model_dir(base);
    std::ofstream(run_dir / "config.yaml") << ckpt::hf_run_config_yaml(info, ckpt_dir.string(), info.tokenizer_json,
                                                                       run_dir.filename().string());
  } else {
    // The base run's own config (the shape is the same).
    const auto cfg_path = fs::path(base).parent_path().parent_path() / "config.yaml";
    std::string text = "\n" + read_file(cfg_path);
    // run.name of the merged run: the output directory's name, not the base's.
    const auto run_at = text.find("\nrun:\n");
    const auto name_at = run_at == std::string::npos ? std::string::npos : text.find("\n  name: ", run_at);
    if (name_at != std::string::npos) {
      const auto eol = text.find('\n', name_at + 1);
      text.replace(name_at, eol - name_at, "\n  name: \"" + run_dir.filename().string() + "\"");
    }
    std::ofstream(run_dir / "config.yaml") << text.substr(1);
  }
  ckpt::CheckpointPolicy policy;
  policy.save_dir = (run_dir / "checkpoints").string();
  policy.async = false;
  policy.keep_n_latest = 0;
  ckpt::CheckpointManager manager(policy);
  ckpt::CheckpointPayload payload;
  payload.step = 0;
  for (auto& p : net->named_parameters())
    if (p.key().find(".lora_") == std::string::npos) payload.model.emplace_back(p.key(), p.value().detach());
  for (auto& b : net->named_buffers())
    if (b.key().find("e_score_correction_bias") != std::string::npos) payload.model.emplace_back(b.key(), b.value().detach());
  payload.state = json{{"tokens", 0},
                       {unmerge ? "unmerged_from" : "merged_from", fs::absolute(adapter_dir).string()},
                       {"parent_checkpoint", fs::absolute(base).string()},
                       {"tokenizer", cfg.tokenizer.path}};
  manager.save(std::move(payload));
  manager.wait();
  std::cerr << "wrote " << ckpt_dir.string() << "\n";
  if (to == "hf") {
    ckpt::HfExportOptions eo;
    eo.checkpoint_dir = ckpt_dir.string();
    eo.run_config = (run_dir / "config.yaml").string();
    eo.out_dir = out;
    eo.dtype = dtype;
    eo.progress = [](const std::string& line) { std::cerr << line << "\n"; };
    auto result = ckpt::export_checkpoint_to_hf(eo);
    for (const auto& w : result.warnings) std::cerr << "warning: " << w << "\n";
    std::cerr << "exported the merged model to " << out << "\n";  // the temporary run goes with `cleanup`
  } else {
    cleanup.armed = false;
  }
  return 0;
}

int cmd_lora(int argc, char** argv) {
  CLI::App app{"LoRA adapters: merge into the base and export the merged model, or unmerge.", "fathom-engine lora"};
  app.require_subcommand(1);
  std::string adapter, base, out, to = "fathom", dtype = "fp32", merged;
  auto* merge = app.add_subcommand("merge", "W += s·B·A: write base + adapter as one model");
  merge->add_option("adapter", adapter, "a fine-tune checkpoint (…/checkpoints/step-N) or a PEFT adapter directory")->required();
  merge->add_option("--base", base, "the base model (default: the one the adapter records)");
  merge->add_option("--out", out, "output: a Fathom run directory (--to fathom) or a Hugging Face model directory (--to hf)")
      ->required();
  merge->add_option("--to", to, "fathom | hf")->check(CLI::IsMember({"fathom", "hf"}));
  merge->add_option("--dtype", dtype, "--to hf: fp32 | bf16 | fp16")->check(CLI::IsMember({"fp32", "bf16", "fp16"}));
  auto* unmerge = app.add_subcommand("unmerge", "W -= s·B·A: recover the base from a merged model and its adapter");
  unmerge->add_option("merged", merged, "the merged model: a Fathom checkpoint or a Hugging Face directory")->required();
  unmerge->add_option("--adapter", adapter, "the adapter that was merged into it")->required();
  unmerge->add_option("--out", out, "output Fathom run directory")->required();
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? 0 : 2;
  }
  try {
    if (*merge) return run(base, adapter, out, to, dtype, false);
    return run(merged, adapter, out, "fathom", dtype, true);
  } catch (const std::exception& e) {
    std::cerr << "error: " << e.what() << "\n";
    return 1;
  }
}

}  // namespace

FATHOM_REGISTER_COMMAND("lora", "LoRA adapters: merge into the base (and export), unmerge", cmd_lora);
