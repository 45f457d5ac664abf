// `fathom-engine prepare CONFIG`: tokenize a config's training data into memory-mapped token
// shards (training a BPE tokenizer first when the config asks for one). Reused when unchanged.
#include <CLI/CLI.hpp>

#include <filesystem>
#include <iostream>

#include "engine/cli/commands.h"
#include "engine/config/config.h"
#include "engine/data/prepare.h"
#include "engine/train/session_util.h"
#include "engine/train/trainer.h"

namespace {

int cmd_prepare(int argc, char** argv) {
  CLI::App app{"Tokenize a run config's data into token shards (train.bin / val.bin + manifest.json).",
               "fathom-engine prepare"};
  std::string config_path;
  std::vector<std::string> overrides;
  app.add_option("config", config_path, "run config (YAML)")->required();
  app.add_option("--set", overrides, "override a key (repeatable)");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? 0 : 2;  // usage errors exit 2, like every other command
  }
  fathom::config::LoadOptions lo;
  lo.overrides = overrides;
  auto loaded = fathom::config::load_config_file(config_path, lo);
  if (!loaded.ok()) {
    for (const auto& e : loaded.errors) std::cerr << e.message() << "\n";
    return 2;
  }
  const auto& cfg = loaded.config;
  const std::string workspace = cfg.run.workspace.empty() ? fathom::train::default_workspace() : cfg.run.workspace;
  fathom::data::PrepareOptions prep = fathom::train::prepare_options(cfg, workspace);
  fathom::train::ProgressLine progress("prepare");
  prep.progress = [&](double f, const std::string& stage) { progress.update(f, stage); };
  const auto r = fathom::data::prepare_dataset(prep);
  progress.done();
  std::cout << (r.reused ? "reused " : "prepared ") << r.out_dir << "\n  documents " << r.documents << ", train tokens "
            << r.train_tokens << ", validation tokens " << r.val_tokens << ", vocabulary " << r.vocab_size
            << "\n  tokenizer " << r.tokenizer_path << "\n";
  return 0;
}

}  // namespace

FATHOM_REGISTER_COMMAND("prepare", "tokenize a config's data into token shards", cmd_prepare);
