// `fathom-engine inspect FILE_OR_CHECKPOINT_DIR [--json] [--quick]`: tensors of a .safetensors
// file (from its header only, so multi-GB files answer at once), or a checkpoint's state,
// manifest verification and files, or the list of checkpoints in a run's checkpoints/ directory.
#include <CLI/CLI.hpp>

#include <iostream>
#include <nlohmann/json.hpp>

#include "engine/checkpoint/inspect.h"
#include "engine/cli/commands.h"

namespace {

int cmd_inspect(int argc, char** argv) {
  CLI::App app{
      "Describe a .safetensors file, a checkpoint (step-<N> directory: state, manifest verification, files) or a "
      "checkpoints/ directory (all checkpoints, sizes checked). Tensor data is not loaded.",
      "fathom-engine inspect"};
  std::string path;
  bool as_json = false;
  bool quick = false;
  app.add_option("path", path, "a .safetensors file, a step-<N> checkpoint directory or a checkpoints/ directory")
      ->required();
  app.add_flag("--json", as_json, "print one JSON object instead of text");
  app.add_flag("--quick", quick, "for a checkpoint, check file sizes only instead of hashing every file (sha256)");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  fathom::ckpt::InspectOptions options;
  options.verify_sha256 = !quick;
  const nlohmann::json report = fathom::ckpt::inspect_path(path, options);  // errors: main prints them, exit 1
  if (as_json) {
    // Tensor and metadata names come from files; replace invalid UTF-8 rather than abort.
    std::cout << report.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) << "\n";
  } else {
    std::cout << fathom::ckpt::format_inspect_report(report);
  }
  return fathom::ckpt::inspect_exit_code(report);
}

}  // namespace

FATHOM_REGISTER_COMMAND("inspect", "describe a .safetensors file or a checkpoint (--json for tools)", cmd_inspect);
