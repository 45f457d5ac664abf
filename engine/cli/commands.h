// Subcommand registry of fathom-engine. Each engine/cli/cmd_<name>.cpp registers itself with
// FATHOM_REGISTER_COMMAND; main.cpp dispatches on argv[1].
#pragma once
#include <string>
#include <vector>

namespace fathom::cli {

// argv[0] is the subcommand name; returns the process exit code.
using CommandFn = int (*)(int argc, char** argv);

struct Command {
  const char* name;
  const char* summary;
  CommandFn fn;
};

bool register_command(const Command& command);

// `bench infer` (cmd_bench_infer.cpp); main.cpp routes `bench infer ...` to it, argv[0] = "infer".
int run_bench_infer(int argc, char** argv);
const std::vector<Command>& commands();

}  // namespace fathom::cli

#define FATHOM_CLI_CONCAT2(a, b) a##b
#define FATHOM_CLI_CONCAT(a, b) FATHOM_CLI_CONCAT2(a, b)
#define FATHOM_REGISTER_COMMAND(name, summary, fn)                                   \
  static const bool FATHOM_CLI_CONCAT(fathom_cli_registered_, __LINE__) =            \
      ::fathom::cli::register_command(::fathom::cli::Command{name, summary, fn})
