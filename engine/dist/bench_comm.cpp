// Collective bandwidth sweep (see bench_comm.h).
#include "engine/dist/bench_comm.h"

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <nlohmann/json.hpp>

#include "engine/dist/world.h"

namespace fathom::dist {

int64_t parse_size(const std::string& s) {
  if (s.empty()) throw std::invalid_argument("empty size");
  size_t used = 0;
  const double v = std::stod(s, &used);
  std::string unit = s.substr(used);
  int64_t mul = 1;
  if (unit == "K" || unit == "KB" || unit == "KiB" || unit == "k") mul = 1ll << 10;
  else if (unit == "M" || unit == "MB" || unit == "MiB") mul = 1ll << 20;
  else if (unit == "G" || unit == "GB" || unit == "GiB") mul = 1ll << 30;
  else if (!unit.empty() && unit != "B") throw std::invalid_argument("size '" + s + "': use a number with K, M or G (1K, 256M)");
  return static_cast<int64_t>(v * static_cast<double>(mul));
}

namespace {

std::vector<int64_t> size_list(const std::string& spec, int factor) {
  std::vector<int64_t> out;
  const auto dots = spec.find("..");
  if (dots != std::string::npos) {
    const int64_t lo = parse_size(spec.substr(0, dots)), hi = parse_size(spec.substr(dots + 2));
    if (lo <= 0 || hi < lo || factor < 2) throw std::invalid_argument("--sizes MIN..MAX needs 0 < MIN <= MAX and --factor >= 2");
    for (int64_t s = lo; s <= hi; s *= factor) out.push_back(s);
  } else {
    size_t start = 0;
    while (start <= spec.size()) {
      const auto comma = spec.find(',', start);
      out.push_back(parse_size(spec.substr(start, comma == std::string::npos ? std::string::npos : comma - start)));
      if (comma == std::string::npos) break;
      start = comma + 1;
    }
  }
  return out;
}

std::string human(int64_t b) {
  char buf[32];
  if (b >= (1ll << 30)) std::snprintf(buf, sizeof buf, "%gG", b / double(1ll << 30));
  else if (b >= (1 << 20)) std::snprintf(buf, sizeof buf, "%gM", b / double(1 << 20));
  else if (b >= 1024) std::snprintf(buf, sizeof buf, "%gK", b / 1024.0);
  else std::snprintf(buf, sizeof buf, "%lld", static_cast<long long>(b));
  return buf;
}

}  // namespace

int run_bench_comm(const BenchCommOptions& o) {
  torch::set_num_threads(1);
  bool cuda = o.device == "cuda" || (o.device == "auto" && torch::cuda::is_available());
  if (cuda && !torch::cuda::is_available()) {
    std::cerr << "bench comm: --device cuda but no CUDA device is visible\n";
    return 2;
  }
  const char* lr = std::getenv("LOCAL_RANK");
  const torch::Device device = cuda ? torch::Device(torch::kCUDA, lr ? std::atoi(lr) : 0) : torch::Device(torch::kCPU);
  const std::string backend = !o.backend.empty() ? o.backend : cuda ? "nccl" : "gloo";
  const auto wopt = world_options(backend, "env://", 0, 1, o.timeout_s, device);
  if (wopt.world_size < 2) std::cerr << "bench comm: WORLD_SIZE is 1: start it under N ranks (torchrun-style RANK/WORLD_SIZE/MASTER_ADDR/MASTER_PORT) to measure anything\n";
  auto world = World::create(wopt);
  world->set_exact_timing(true);
  const int W = world->size();
  const auto dtype = o.dtype == "bf16" ? torch::kBFloat16 : torch::kFloat32;
  const int64_t elem = o.dtype == "bf16" ? 2 : 4;
  const auto topt = torch::TensorOptions().dtype(dtype).device(device);
  nlohmann::json results = nlohmann::json::array();
  if (world->is_root() && !o.json) {
    std::printf("# fathom-engine bench comm: %d ranks, %s, %s, %s\n", W, backend.c_str(), device.str().c_str(), o.dtype.c_str());
    std::printf("%-16s %10s %12s %12s %12s  %s\n", "op", "size", "time_us", "algbw_GB/s", "busbw_GB/s", "algorithm");
    std::fflush(stdout);
  }
  for (const auto& op : o.ops) {
    if (op != "all_reduce" && op != "reduce_scatter" && op != "all_gather") {
      std::cerr << "bench comm: unknown op '" << op << "' (all_reduce, reduce_scatter, all_gather)\n";
      return 2;
    }
    for (int64_t size : size_list(o.sizes, o.factor)) {
      const int64_t n = std::max<int64_t>(W, size / elem / W * W);  // whole chunks
      const int64_t bytes = n * elem;
      auto big = torch::ones({n}, topt);
      auto small = torch::ones({n / W}, topt);
      auto run_once = [&] {
        if (op == "all_reduce") return world->all_reduce_async(big);
        if (op == "reduce_scatter") return world->reduce_scatter_async(small, big);
        return world->all_gather_async(big, small);
      };
      for (int i = 0; i < o.warmup; ++i) run_once()->wait();
      world->barrier();
      world->take_stats();
      const auto t0 = std::chrono::steady_clock::now();
      for (int i = 0; i < o.iters; ++i) run_once()->wait();
      if (cuda) torch::cuda::synchronize(device.index());
      double t = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() / std::max(1, o.iters);
      t = world->all_reduce_sum(t) / W;  // mean over ranks
      std::string algorithm = backend;
      for (const auto& s : world->take_stats())
        if (s.op == op) algorithm = s.algorithm;
      const double algbw = t > 0 ? bytes / t / 1e9 : 0.0;
      const double busbw = algbw * bus_factor(op, W);
      if (world->is_root()) {
        results.push_back({{"op", op}, {"bytes", bytes}, {"time_us", t * 1e6}, {"algbw_gbps", algbw}, {"busbw_gbps", busbw},
                           {"algorithm", algorithm}});
        if (!o.json) {
          std::printf("%-16s %10s %12.1f %12.3f %12.3f  %s\n", op.c_str(), human(bytes).c_str(), t * 1e6, algbw, busbw,
                      algorithm.c_str());
          std::fflush(stdout);
        }
      }
    }
  }
  world->barrier();
  if (world->is_root() && o.json)
    std::cout << nlohmann::json{{"world_size", W}, {"backend", backend}, {"device", device.str()}, {"dtype", o.dtype},
                                {"iters", o.iters}, {"results", results}}
                     .dump()
              << std::endl;
  return 0;
}

}  // namespace fathom::dist
