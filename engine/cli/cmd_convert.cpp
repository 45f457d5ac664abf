// `fathom-engine convert SRC --to hf|fathom --out DIR`: Fathom checkpoint -> Hugging Face model
// directory, or Hugging Face model directory -> a Fathom run directory (config.yaml + step-0
// checkpoint) that `fathom-engine train RUN_DIR/config.yaml` fine-tunes from. Progress on stderr;
// with --json one result object on stdout.
#include <CLI/CLI.hpp>

#include <iostream>
#include <nlohmann/json.hpp>

#include "engine/checkpoint/hf.h"
#include "engine/cli/commands.h"

namespace {

int cmd_convert(int argc, char** argv) {
  CLI::App app{
      "Convert between Fathom checkpoints and Hugging Face model directories (LlamaForCausalLM, Qwen2ForCausalLM, "
      "DeepseekV3ForCausalLM).\n"
      "  convert CHECKPOINT --to hf --out DIR [--dtype fp32|bf16|fp16] [--config RUN_CONFIG] [--max-shard-size 2GB]\n"
      "  convert HF_DIR --to fathom --out RUN_DIR",
      "fathom-engine convert"};
  std::string src, to, out, dtype = "fp32", run_config, max_shard, name;
  bool overwrite = false, as_json = false;
  app.add_option("source", src,
                 "--to hf: a checkpoint (…/checkpoints/step-N; a checkpoints/ or run directory means its latest); "
                 "--to fathom: a Hugging Face model directory")
      ->required();
  app.add_option("--to", to, "target format")->required()->check(CLI::IsMember({"hf", "fathom"}));
  app.add_option("--out", out, "output directory (created; must not exist or be empty unless --overwrite)")->required();
  app.add_option("--dtype", dtype, "--to hf: tensor dtype written")->check(CLI::IsMember({"fp32", "bf16", "fp16"}));
  app.add_option("--config", run_config, "--to hf: the run's config.yaml (default: two levels above the checkpoint)");
  app.add_option("--max-shard-size", max_shard,
                 "--to hf: split model.safetensors into shards of at most this size, with an index (e.g. 2GB, 500MB)");
  app.add_option("--name", name, "--to fathom: run.name in the new config (default: the source directory's name)");
  app.add_flag("--overwrite", overwrite, "--to hf: replace a non-empty output directory");
  app.add_flag("--json", as_json, "print one JSON object describing the result on stdout");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  auto progress = [](const std::string& line) { std::cerr << "convert: " << line << std::endl; };

  nlohmann::json result;
  if (to == "hf") {
    fathom::ckpt::HfExportOptions o;
    o.checkpoint_dir = src;
    o.run_config = run_config;
    o.out_dir = out;
    o.dtype = dtype;
    o.overwrite = overwrite;
    if (!max_shard.empty()) o.max_shard_bytes = fathom::ckpt::parse_byte_size(max_shard);
    o.progress = progress;
    const auto r = fathom::ckpt::export_checkpoint_to_hf(o);
    for (const auto& w : r.warnings) std::cerr << "convert: warning: " << w << "\n";
    std::cerr << "convert: wrote " << r.out_dir << " (" << r.tensors << " tensors, " << r.bytes << " bytes of weights, "
              << r.files.size() << " files)\n";
    result = {{"to", "hf"}, {"out", r.out_dir}, {"files", r.files}, {"warnings", r.warnings}, {"tensors", r.tensors},
              {"bytes", r.bytes}};
  } else {
    if (!run_config.empty() || dtype != "fp32" || !max_shard.empty() || overwrite) {
      std::cerr << "fathom-engine convert: --config, --dtype, --max-shard-size and --overwrite apply to --to hf only\n";
      return 2;
    }
    fathom::ckpt::HfImportOptions o;
    o.hf_dir = src;
    o.run_dir = out;
    o.run_name = name;
    o.progress = progress;
    const std::string ck = fathom::ckpt::import_hf_to_run(o);
    std::cerr << "convert: done; fine-tune with: fathom-engine train " << out << "/config.yaml --set data.train=[...]\n";
    result = {{"to", "fathom"}, {"out", out}, {"checkpoint", ck}, {"config", out + "/config.yaml"}};
  }
  if (as_json) std::cout << result.dump() << "\n";
  return 0;
}

}  // namespace

FATHOM_REGISTER_COMMAND("convert", "Hugging Face <-> Fathom checkpoints (--to hf | --to fathom)", cmd_convert);
