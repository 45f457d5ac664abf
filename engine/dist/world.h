// The set of ranks a run trains on: rendezvous (env:// or tcp:// through a TCPStore that rank 0
// hosts, file:// through a FileStore), a c10d process group (Gloo, or NCCL where LibTorch has it)
// and the collectives the trainer needs, each one timed and counted for telemetry and watched by a
// watchdog that names the stuck collective and the ranks that never reached it. No transport of
// our own: c10d's. A world of size 1 has no process group and every collective is a no-op.
#pragma once
#include <torch/torch.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

namespace fathom::dist {

// A collective failed (a peer died, the connection broke, a timeout): the message names the peer
// rank where it can be told. The caller should report and exit; the process group is unusable.
struct CommError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

struct WorldOptions {
  std::string backend = "gloo";       // gloo | nccl
  std::string init_method = "env://"; // env:// | tcp://host:port | file:///path
  int rank = 0;
  int world_size = 1;
  double timeout_s = 300;             // rendezvous, and the collective watchdog
  torch::Device device = torch::kCPU; // where the trainer's tensors live (NCCL: this CUDA device)
  std::string master_addr = "127.0.0.1";
  int master_port = 29500;
};

// The options a config asks for, with torchrun's environment taking precedence: RANK, WORLD_SIZE,
// MASTER_ADDR, MASTER_PORT (LOCAL_RANK picks the CUDA device elsewhere). Throws with a clear
// message when the environment contradicts itself (RANK >= WORLD_SIZE, a non-numeric value).
WorldOptions world_options(const std::string& backend, const std::string& init_method, int64_t rank, int64_t world_size,
                           int64_t timeout_s, torch::Device device);

// Per-op totals since the last take_stats(), nccl-tests conventions: bytes is the whole buffer
// (all_reduce: the tensor; reduce_scatter: the input of all ranks' chunks; all_gather: the output).
struct OpStats {
  std::string op;
  std::string algorithm;  // "gloo", "nccl", or how it was emulated ("gloo:all_reduce+slice")
  int64_t count = 0;
  int64_t bytes = 0;
  // Wall time during which at least one call of this op was in flight (issue → completion; the
  // union of the calls' intervals, so queued and overlapping calls are not counted twice).
  double time_s = 0;
  // algbw = bytes / time; busbw = algbw × 2(n−1)/n (all_reduce) or (n−1)/n (reduce_scatter,
  // all_gather); broadcast and barrier: algbw.
  double algbw_gbps(int world) const;
  double busbw_gbps(int world) const;
};
double bus_factor(const std::string& op, int world);

class World;

// An issued asynchronous collective. wait() blocks until it is done (NCCL: until the current CUDA
// stream waits for it) and throws CommError when it failed.
class Pending {
 public:
  virtual ~Pending() = default;
  virtual void wait() = 0;
};

class World {
 public:
  // Rendezvous and process group; blocks up to options.timeout_s for all ranks to arrive and then
  // throws std::runtime_error naming the ranks that did not. Size 1: returns at once.
  static std::shared_ptr<World> create(const WorldOptions& options);
  virtual ~World() = default;

  int rank() const { return rank_; }
  int size() const { return size_; }
  bool is_root() const { return rank_ == 0; }
  const std::string& backend() const { return backend_; }

  // Sum over the ranks, in place.
  virtual std::shared_ptr<Pending> all_reduce_async(torch::Tensor t) = 0;
  // input: size() equal chunks; output: this rank's chunk of the sum over ranks (numel = input/size).
  virtual std::shared_ptr<Pending> reduce_scatter_async(torch::Tensor output, torch::Tensor input) = 0;
  // output: size() equal chunks, chunk r = rank r's input. input may be output's own chunk.
  virtual std::shared_ptr<Pending> all_gather_async(torch::Tensor output, torch::Tensor input) = 0;
  virtual std::shared_ptr<Pending> broadcast_async(torch::Tensor t, int root) = 0;
  virtual void barrier() = 0;

  void all_reduce(torch::Tensor t) { all_reduce_async(std::move(t))->wait(); }
  void reduce_scatter(torch::Tensor out, torch::Tensor in) { reduce_scatter_async(std::move(out), std::move(in))->wait(); }
  void all_gather(torch::Tensor out, torch::Tensor in) { all_gather_async(std::move(out), std::move(in))->wait(); }
  void broadcast(torch::Tensor t, int root = 0) { broadcast_async(std::move(t), root)->wait(); }
  // Small host values, through the collectives (device tensors for NCCL).
  double all_reduce_sum(double v);
  std::vector<double> all_reduce_sum(std::vector<double> v);
  std::vector<int64_t> broadcast_ints(std::vector<int64_t> v, int root = 0);

  // Collective totals since the last call, one entry per op that ran; busy_s (optional): the wall
  // time any collective was in flight. take_wait_s: the host time spent blocked in wait() since
  // the last call (the communication the step could not hide).
  virtual std::vector<OpStats> take_stats(double* busy_s = nullptr) = 0;
  virtual double take_wait_s() = 0;
  // Measure each collective to its end on the device (synchronises CUDA; for benchmarks and the
  // logged steps). Gloo ops are always measured to their end.
  virtual void set_exact_timing(bool on) = 0;

  // Called (from the watchdog thread) before the process exits because a collective hung:
  // code, message, hint. The trainer emits its error/exit records here.
  virtual void set_fatal_handler(std::function<void(const std::string&, const std::string&, const std::string&)> f) = 0;

  // Rendezvous store, for small coordination values ("which checkpoint", "prepared data").
  virtual void store_set(const std::string& key, const std::string& value) = 0;
  // Waits up to the world's timeout for the key.
  virtual std::string store_get(const std::string& key) = 0;
  // Waits as long as it takes for the key (rank 0 preparing data); throws CommError when the
  // store (rank 0) goes away meanwhile.
  virtual void store_wait(const std::string& key) = 0;

  // A rank leaving because a peer is gone calls this before it exits: it marks itself as left in
  // the store, and rank 0, whose process hosts the store, waits (at most ~10 s) until every other
  // rank has left or stopped beating, so that those still diagnosing can read who is gone.
  virtual void leave_after_failure() {}

 protected:
  int rank_ = 0;
  int size_ = 1;
  std::string backend_ = "none";
  torch::Device device_ = torch::kCPU;
};

}  // namespace fathom::dist
