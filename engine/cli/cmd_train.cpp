// `fathom-engine train CONFIG` and `fathom-engine bench train CONFIG`.
#include <CLI/CLI.hpp>

#include <unistd.h>

#include <filesystem>
#include <iostream>

#include "engine/checkpoint/fs_posix.h"
#include "engine/cli/commands.h"
#include "engine/dist/bench_comm.h"
#include "engine/train/trainer.h"

namespace {

int run_command(int argc, char** argv, bool finetune) {
  CLI::App app{finetune ? "Fine-tune a base model (lora.base: a Fathom checkpoint or a Hugging Face directory) with LoRA "
                          "adapters on instruction data (data.task: instruct) or plain text. Same protocol and run "
                          "directory as train; each checkpoint directory is also a PEFT adapter directory."
                        : "Train a model from a run config. Protocol records go to stdout (JSON lines) and to "
                          "<run_dir>/events.jsonl; logs and a progress line go to stderr.",
               finetune ? "fathom-engine finetune" : "fathom-engine train"};
  fathom::train::TrainInvocation inv;
  inv.command = finetune ? "finetune" : "train";
  app.add_option("config", inv.config_path, "run config (YAML)")->required();
  app.add_option("--set", inv.overrides, "override a key: --set train.max_steps=100 (repeatable)");
  app.add_option("--run-dir", inv.run_dir, "run directory (default <workspace>/runs/<run-id>)");
  app.add_option("--run-id", inv.run_id, "run id (default <run.name>-<UTC time>)");
  app.add_option("--resume", inv.resume, "auto (newest whole checkpoint of the run dir, if any) or a checkpoint dir");
  app.add_option("--control-fifo", inv.control_fifo, "also read control lines from this FIFO (created if missing)");
  if (finetune) {
    app.add_flag("--preview", inv.preview,
                 "print the instruction data as the model will see it (one JSON object: examples with trained "
                 "segments, token-length histogram, truncation, parameter counts) and exit");
    app.add_option("--examples", inv.preview_examples, "examples shown by --preview (default 5)");
  } else {
    app.add_option("--dump-initial-weights", inv.dump_initial_weights,
                   "write the initial fp32 weights to this .safetensors file (for reference checks)");
  }
  bool quiet = false;
  app.add_flag("--no-stdout", quiet, "do not write protocol records to stdout (events.jsonl only)");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? 0 : 2;  // usage errors exit 2, like every other command
  }
  inv.to_stdout = !quiet;
  return fathom::train::run_training(inv);
}

int cmd_train(int argc, char** argv) { return run_command(argc, argv, false); }
int cmd_finetune(int argc, char** argv) { return run_command(argc, argv, true); }

int cmd_bench(int argc, char** argv) {
  CLI::App app{"Benchmarks. `bench train CONFIG`: tokens/s, MFU (0 on CPU: no known peak) and peak memory "
               "(CUDA allocator, or process RSS on CPU) of training steps, as one JSON line on stdout "
               "(no checkpoints, evals or samples; the first --warmup steps are not timed). `bench comm`: "
               "all-reduce / reduce-scatter / all-gather bus bandwidth over message sizes.",
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
  train->add_option("--profile", inv.bench_profile,
                    "profile the timed steps (LibTorch's Kineto profiler): write the Chrome trace to this file, print "
                    "where a step's time goes (GPU kernels by category and the top ones; CPU operators by self time) "
                    "to stderr and add it to the JSON line. The profiler slows the steps it records.");
  auto* comm = app.add_subcommand("comm", "collective bus bandwidth across message sizes; run it under N ranks with "
                                          "torchrun's environment (RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT, LOCAL_RANK)");
  fathom::dist::BenchCommOptions copt;
  std::string ops = "all_reduce,reduce_scatter,all_gather";
  comm->add_option("--sizes", copt.sizes, "MIN..MAX in bytes stepping by --factor, or a list (default 1K..64M)");
  comm->add_option("--factor", copt.factor, "size step of MIN..MAX (default 4)");
  comm->add_option("--ops", ops, "comma-separated: all_reduce, reduce_scatter, all_gather (default all three)");
  comm->add_option("--backend", copt.backend, "gloo | nccl (default nccl on CUDA, gloo on CPU)");
  comm->add_option("--device", copt.device, "cpu | cuda | auto (default auto)");
  comm->add_option("--dtype", copt.dtype, "fp32 | bf16 (default fp32)");
  comm->add_option("--iters", copt.iters, "timed iterations per size (default 10)");
  comm->add_option("--warmup", copt.warmup, "untimed iterations per size (default 2)");
  comm->add_option("--timeout", copt.timeout_s, "rendezvous and collective timeout in seconds (default 300)");
  comm->add_flag("--json", copt.json, "one JSON object on stdout instead of the table");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? 0 : 2;  // usage errors exit 2, like every other command
  }
  if (comm->parsed()) {
    copt.ops.clear();
    for (size_t start = 0; start <= ops.size();) {
      const auto comma = ops.find(',', start);
      copt.ops.push_back(ops.substr(start, comma == std::string::npos ? std::string::npos : comma - start));
      if (comma == std::string::npos) break;
      start = comma + 1;
    }
    try {
      return fathom::dist::run_bench_comm(copt);
    } catch (const std::exception& e) {
      std::cerr << "fathom-engine bench comm: error: " << e.what() << "\n";
      return 1;
    }
  }
  if (steps < 1 || inv.bench_warmup_steps < 0) {
    std::cerr << "fathom-engine bench train: --steps must be >= 1 and --warmup >= 0\n";
    return 2;
  }
  inv.overrides.push_back("train.max_steps=" + std::to_string(steps + inv.bench_warmup_steps));
  inv.overrides.push_back("optimizer.warmup_steps=0");
  inv.overrides.push_back("train.eval_interval=0");
  inv.overrides.push_back("train.sample_interval=0");
  inv.overrides.push_back("checkpoint.save_every_steps=0");
  inv.overrides.push_back("checkpoint.save_interval=0");
  inv.overrides.push_back("train.log_interval=" + std::to_string(steps + inv.bench_warmup_steps));
  // A scratch run directory, removed afterwards unless the user named one.
  const bool scratch = inv.run_dir.empty();
  if (scratch) {
    std::string tmpl = (std::filesystem::temp_directory_path() / "fathom-bench-XXXXXX").string();
    if (!::mkdtemp(tmpl.data())) throw std::runtime_error("cannot create a scratch directory in " + tmpl);
    inv.run_dir = tmpl;
  }
  inv.to_stdout = false;
  const int rc = fathom::train::run_training(inv);
  if (scratch) {
    fathom::ckpt::posix::remove_tree(inv.run_dir);  // not remove_all: broken under LibTorch 2.x (fs_posix.h)
  }
  return rc;
}

}  // namespace

FATHOM_REGISTER_COMMAND("train", "train a model from a run config", cmd_train);
FATHOM_REGISTER_COMMAND("finetune", "LoRA fine-tune a base model (instruction data, PEFT adapters)", cmd_finetune);
FATHOM_REGISTER_COMMAND("bench", "benchmarks: bench train CONFIG | bench comm (under N ranks)", cmd_bench);
