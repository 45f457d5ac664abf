// fathom-engine: headless entry point. Subcommands register themselves (engine/cli/cmd_*.cpp);
// this file only dispatches. stdout is reserved for protocol JSON lines; human text goes to stderr
// except for commands whose output is the product (--version, --help, validate, estimate, ...).
#include <algorithm>
#include <cstring>
#include <iostream>
#include <string>

#include "engine/cli/commands.h"
#include "engine/engine_version.h"

namespace fathom::cli {

static std::vector<Command>& registry() {
  static std::vector<Command> r;
  return r;
}

bool register_command(const Command& command) {
  registry().push_back(command);
  return true;
}

const std::vector<Command>& commands() { return registry(); }

}  // namespace fathom::cli

static void print_usage(std::ostream& out) {
  auto cmds = fathom::cli::commands();
  std::sort(cmds.begin(), cmds.end(), [](auto& a, auto& b) { return std::strcmp(a.name, b.name) < 0; });
  out << "usage: fathom-engine <command> [options]\n       fathom-engine --version\n\ncommands:\n";
  for (const auto& c : cmds) {
    std::string name = c.name;
    name.resize(std::max<size_t>(name.size(), 12), ' ');
    out << "  " << name << "  " << c.summary << "\n";
  }
  out << "\n`fathom-engine <command> --help` describes each command.\n";
}

int main(int argc, char** argv) {
  if (argc < 2) {
    print_usage(std::cerr);
    return 2;
  }
  const std::string first = argv[1];
  if (first == "--version" || first == "version") {
    std::cout << "fathom-engine " << fathom::engine_version() << " (torch " << fathom::torch_version()
              << (fathom::engine_built_with_cuda() ? ", cuda" : ", cpu") << ")\n";
    return 0;
  }
  if (first == "--help" || first == "-h" || first == "help") {
    print_usage(std::cout);
    return 0;
  }
  if (first == "bench" && argc >= 3 && std::string(argv[2]) == "infer") {
    try {
      return fathom::cli::run_bench_infer(argc - 2, argv + 2);
    } catch (const std::exception& e) {
      std::cerr << "fathom-engine bench infer: error: " << e.what() << "\n";
      return 1;
    }
  }
  for (const auto& c : fathom::cli::commands()) {
    if (first == c.name) {
      try {
        return c.fn(argc - 1, argv + 1);
      } catch (const std::exception& e) {
        std::cerr << "fathom-engine " << c.name << ": error: " << e.what() << "\n";
        return 1;
      }
    }
  }
  std::cerr << "fathom-engine: unknown command '" << first << "'\n\n";
  print_usage(std::cerr);
  return 2;
}
