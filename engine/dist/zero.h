// ZeRO (Rajbhandari et al. 2020) stages 1 and 2 over GradSync's bucket layout: each rank keeps
// the fp32 master weights and AdamW moments of its chunk of every bucket only, updates them from
// its chunk of the averaged gradient (stage 1: taken from the all-reduced bucket; stage 2: the
// reduce-scatter output, the full gradient is not kept), and all-gathers the updated chunks into
// every rank's parameters. The update is train::AdamW's, element for element, so results equal
// plain data parallelism. Checkpoints hold the full tensors under the same names as an unsharded
// run (gathered, written by rank 0), so a run resumes on any number of ranks and any stage.
#pragma once
#include <torch/torch.h>

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "engine/dist/grad_sync.h"
#include "engine/dist/world.h"
#include "engine/train/optimizer.h"

namespace fathom::dist {

using NamedTensors = std::vector<std::pair<std::string, torch::Tensor>>;

class ZeroAdamW {
 public:
  // masters: the full fp32 weights, in the order of sync.params(), with their checkpoint names;
  // only this rank's slices are kept. sync.shard_params() must have been called.
  ZeroAdamW(std::shared_ptr<World> world, GradSync& sync, const NamedTensors& masters, train::AdamWOptions options);

  // After GradSync::finish(): this rank's gradient chunk in fp32; the global L2 norm (one scalar
  // all-reduce) and clipping exactly as train::clip_grad_norm. Returns the norm before clipping.
  // inv_scale: fp16 loss scaling's 1/scale, applied when the gradient is widened to fp32.
  double clip_grad_norm(double max_norm, double inv_scale = 1.0);
  void step(double lr);
  void drop_grads();
  // Updated chunks → every rank's parameters (all-gather per bucket).
  void publish();

  // Collective (every rank calls); CPU tensors with the unsharded names.
  NamedTensors gather_masters();
  NamedTensors gather_state();  // "<param>.exp_avg", "<param>.exp_avg_sq", "step"
  // From unsharded tensors (a checkpoint of any world size or stage); then call publish().
  void load(const NamedTensors& masters, const NamedTensors& state);
  int64_t local_state_bytes() const;

 private:
  struct Segment {
    int param;
    int bucket;
    int64_t param_offset, length, shard_offset;
  };
  NamedTensors gather(const std::vector<torch::Tensor>& pieces, const std::string& suffix);

  std::shared_ptr<World> world_;
  GradSync& sync_;
  std::vector<std::string> names_;
  std::vector<Segment> segs_;
  NamedTensors pieces_;  // fp32 master slices, one per segment
  std::unique_ptr<train::AdamW> adam_;
  torch::Tensor grad32_;
};

}  // namespace fathom::dist
