// fathom-engine: headless entry point. Subcommands are registered by engine/cli/*.cpp.
#include <iostream>
#include <string>

#include "engine/engine_version.h"

int main(int argc, char** argv) {
  if (argc > 1 && std::string(argv[1]) == "--version") {
    std::cout << "fathom-engine " << fathom::engine_version() << " (torch " << fathom::torch_version()
              << (fathom::engine_built_with_cuda() ? ", cuda" : ", cpu") << ")\n";
    return 0;
  }
  std::cerr << "usage: fathom-engine --version\n";
  return 2;
}
