// `fathom-engine train` / `finetune`: the whole training run (config → data → model → steps → checkpoints),
// reporting through the protocol. Torch-free header so the CLI stays cheap to compile.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace fathom::train {

struct TrainInvocation {
  std::string config_path;
  std::vector<std::string> overrides;  // --set key.path=value
  std::string run_dir;                 // "" = <workspace>/runs/<run_id>
  std::string run_id;                  // "" = <run.name>-<UTC timestamp>, or run_dir's basename
  std::string resume;                  // "" (fresh), "auto" (newest whole checkpoint, if any), or a checkpoint dir
  bool to_stdout = true;               // protocol records on stdout
  std::string control_fifo;            // also read control lines from this FIFO (created if missing)
  std::string command = "train";
  // Write the freshly initialised fp32 weights here (safetensors) before the first step: lets
  // tests replay the run in an independent implementation.
  std::string dump_initial_weights;
  // bench mode: no checkpoints, evals or samples; reports speed and peak memory at the end.
  bool bench = false;
  // finetune --preview: print the instruction data as the model sees it (JSON) and exit.
  bool preview = false;
  int preview_examples = 5;
  int64_t bench_warmup_steps = 3;
  // bench train --profile: Kineto profile of the timed steps; the Chrome trace goes here and a
  // summary (where the step's time goes) to stderr and into the JSON line (engine/train/profile.h).
  std::string bench_profile;
};

// Returns the process exit code: 0 completed or stopped on request, 1 failed, 2 invalid config.
int run_training(const TrainInvocation& invocation);

// Default workspace: $FATHOM_WORKSPACE, else $XDG_DATA_HOME/fathom, else ~/.local/share/fathom.
std::string default_workspace();

}  // namespace fathom::train
