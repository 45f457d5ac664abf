// `fathom-engine bench comm`: bus bandwidth of all-reduce / reduce-scatter / all-gather over message
// sizes, run under N ranks with torchrun's environment (RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT,
// LOCAL_RANK). nccl-tests conventions: size = the whole buffer, algbw = size / time,
// busbw = algbw × 2(n−1)/n (all-reduce) or (n−1)/n (reduce-scatter, all-gather).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace fathom::dist {

struct BenchCommOptions {
  std::string sizes = "1K..64M";  // MIN..MAX (×factor steps) or a list "1K,1M"
  int factor = 4;
  std::vector<std::string> ops{"all_reduce", "reduce_scatter", "all_gather"};
  std::string backend;  // "" = nccl on CUDA, gloo on CPU
  std::string device = "auto";  // cpu | cuda | auto
  std::string dtype = "fp32";   // fp32 | bf16
  int iters = 10, warmup = 2;
  int64_t timeout_s = 300;
  bool json = false;
};

// Returns the exit code. Rank 0 prints the table (or one JSON object with --json) on stdout.
int run_bench_comm(const BenchCommOptions& options);

// "1K" → 1024, "256M" → 268435456, "2G"; throws on anything else.
int64_t parse_size(const std::string& s);

}  // namespace fathom::dist
