// `fathom-engine train CONFIG` and `fathom-engine bench train CONFIG`.
#include <CLI/CLI.hpp>

#include <unistd.h>

#include <iostream>

#include "engine/cli/commands.h"
#include "engine/train/trainer.h"

namespace {

int cmd_train(int argc, char** argv) {
  CLI::App app{"Train a model from a run config. Protocol records go to stdout (JSON lines) and to "
               "<run_dir>/events.jsonl; logs and a progress line go to stderr.",
               "fathom-engine train"};
  fathom::train::TrainInvocation inv;
  app.add_option("config", inv.config_path, "run config (YAML)")->required();
  app.add_option("--set", inv.overrides, "override a key: --set train.max_steps=100 (repeatable)");
  app.add_option("--run-dir", inv.run_dir, "run directory (default <workspace>/runs/<run-id>)");
  app.add_option("--run-id", inv.run_id, "run id (default <run.name>-<UTC time>)");
  app.add_option("--resume", inv.resume, "auto (newest whole checkpoint of the run dir, if any) or a checkpoint dir");
  app.add_option("--control-fifo", inv.control_fifo, "also read control lines from this FIFO (created if missing)");
  app.add_option("--dump-initial-weights", inv.dump_initial_weights,
                 "write the initial fp32 weights to this .safetensors file (for reference checks)");
  bool quiet = false;
  app.add_flag("--no-stdout", quiet, "do not write protocol records to stdout (events.jsonl only)");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  inv.to_stdout = !quiet;
  return fathom::train::run_training(inv);
}

int cmd_bench(int argc, char** argv) {
  CLI::App app{"Benchmarks. `bench train CONFIG`: tokens/s, MFU and peak memory of training steps "
               "(no checkpoints, evals or samples; the first --warmup steps are not timed).",
               "fathom-engine bench"};
  app.require_subcommand(1);
  auto* train = app.add_subcommand("train", "training throughput of a config");
  fathom::train::TrainInvocation inv;
  inv.command = "bench";
  inv.bench = true;
  int64_t steps = 20;
  train->add_option("config", inv.config_path, "run config (YAML)")->required();
  train->add_option("--set", inv.overrides, "override a key (repeatable)");
  train->add_option("--steps", steps, "timed steps (default 20)");
  train->add_option("--warmup", inv.bench_warmup_steps, "untimed warm-up steps (default 3)");
  train->add_option("--run-dir", inv.run_dir, "scratch run directory");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  inv.overrides.push_back("train.max_steps=" + std::to_string(steps + inv.bench_warmup_steps));
  inv.overrides.push_back("train.eval_interval=0");
  inv.overrides.push_back("train.sample_interval=0");
  inv.overrides.push_back("checkpoint.save_every_steps=0");
  inv.overrides.push_back("checkpoint.save_interval=0");
  inv.overrides.push_back("train.log_interval=" + std::to_string(steps + inv.bench_warmup_steps));
  if (inv.run_dir.empty()) inv.run_id = "bench-" + std::to_string(::getpid());
  inv.to_stdout = false;
  return fathom::train::run_training(inv);
}

}  // namespace

FATHOM_REGISTER_COMMAND("train", "train a model from a run config", cmd_train);
FATHOM_REGISTER_COMMAND("bench", "benchmarks: bench train CONFIG", cmd_bench);
