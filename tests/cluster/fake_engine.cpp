// A stand-in for fathom-engine in the launcher tests (no torch, starts in milliseconds): records its
// argv, working directory and environment in the run directory, writes real protocol records with
// fathom_protocol's Emitter, and ends like the engine does on SIGTERM (exit record "stopped", 0).
// Behaviour knobs come as --set fake.*: fake.exit=<code> exits at once with that code (no exit
// record); fake.exit_rank=<r> limits that to rank r; fake.steps=<n> completes after n steps.
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <csignal>
#include <cstdio>
#include <chrono>
#include <cstdlib>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "engine/protocol/protocol.h"

extern char** environ;

namespace {
std::atomic<bool> g_term{false};
void on_term(int) { g_term = true; }
}  // namespace

int main(int argc, char** argv) {
  if (argc > 1 && std::string(argv[1]) == "--version") {  // what the SSH host probe asks
    printf("fathom-engine 0.0.0-fake (stand-in for tests)\n");
    return 0;
  }
  std::signal(SIGTERM, on_term);
  std::string run_dir, run_id;
  int rank = 0, world = 1, exit_code = -1, exit_rank = -1;
  long steps = 1000000;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--run-dir" && i + 1 < argc) run_dir = argv[++i];
    else if (a == "--run-id" && i + 1 < argc) run_id = argv[++i];
    else if (a == "--set" && i + 1 < argc) {
      const std::string kv = argv[++i];
      const auto eq = kv.find('=');
      const std::string k = kv.substr(0, eq), v = eq == std::string::npos ? "" : kv.substr(eq + 1);
      if (k == "distributed.rank") rank = std::atoi(v.c_str());
      if (k == "distributed.world_size") world = std::atoi(v.c_str());
      if (k == "fake.exit") exit_code = std::atoi(v.c_str());
      if (k == "fake.exit_rank") exit_rank = std::atoi(v.c_str());
      if (k == "fake.steps") steps = std::atol(v.c_str());
    }
  }
  const std::string r = std::to_string(rank);
  {
    // Each file appears whole (written aside, then renamed): tests read them as soon as they exist.
    auto write_whole = [&](const std::string& name, const std::string& text) {
      const std::string path = run_dir + "/" + name, tmp = path + ".part";
      { std::ofstream(tmp) << text; }
      std::rename(tmp.c_str(), path.c_str());
    };
    std::string args, vars;
    for (int i = 0; i < argc; ++i) args += std::string(argv[i]) + "\n";
    for (char** e = environ; *e; ++e) vars += std::string(*e) + "\n";
    char cwd[4096];
    write_whole("cwd." + r + ".txt", std::string(getcwd(cwd, sizeof cwd) ? cwd : "?") + "\n");
    write_whole("env." + r + ".txt", vars);
    write_whole("argv." + r + ".txt", args);  // last: the others wait for it
  }
  fprintf(stderr, "fake engine rank %d started\n", rank);
  fflush(stderr);
  if (exit_code >= 0 && (exit_rank < 0 || exit_rank == rank)) {
    // A real rank fails after the others have started: wait (up to 5 s) until every other rank has
    // written its argv file — which it does after installing its SIGTERM handler — so the launcher's
    // SIGTERM to them is never a race with their start-up (seen on a loaded 2-core CI machine).
    for (int t = 0; exit_rank >= 0 && t < 500; ++t) {
      bool all = true;
      for (int o = 0; o < world; ++o)
        if (o != rank && access((run_dir + "/argv." + std::to_string(o) + ".txt").c_str(), F_OK) != 0) all = false;
      if (all) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    fprintf(stderr, "fake engine rank %d exits with %d\n", rank, exit_code);
    return exit_code;
  }
  namespace proto = fathom::protocol;
  proto::Emitter emitter(run_id, rank, run_dir + "/events.jsonl", false);
  proto::HelloData hello;
  hello.command = "train";
  hello.pid = getpid();
  hello.world_size = world;
  hello.run_dir = run_dir;
  emitter.emit(hello);
  for (long step = 1; step <= steps; ++step) {
    if (g_term) {
      fprintf(stderr, "fake engine rank %d: SIGTERM, stopping\n", rank);
      emitter.emit(proto::ExitData{"stopped", 0, "stop requested"});
      return 0;
    }
    proto::MetricData m;
    m.step = step;
    m.loss = 10.0 / static_cast<double>(step);
    emitter.emit(m);
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  emitter.emit(proto::ExitData{"completed", 0, ""});
  return 0;
}
