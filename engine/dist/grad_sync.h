// Data-parallel gradient synchronisation: the parameters' gradients live in ~25 MB buckets (in
// reverse parameter order, the order backward produces them); each parameter's .grad is a view
// into its bucket, so accumulation over micro-steps happens in place and costs no copy. On the
// last micro-step a hook on every parameter's gradient accumulator marks it ready, and a bucket
// whose parameters are all ready is reduced at once, asynchronously, while backward continues
// (buckets start in index order on every rank, as collectives must match). Nothing is reduced on
// the other micro-steps. Stage 0/1: all-reduce, then every .grad holds the mean over ranks.
// Stage 2: reduce-scatter, and only this rank's chunk of each bucket is kept (grad_shard()).
// ZeRO layout: bucket b is padded to a multiple of the world size and rank r owns chunk r of it;
// with shard_params the parameters themselves become views into one flat buffer of that layout
// so the updated chunks can be all-gathered straight into the model.
#pragma once
#include <torch/torch.h>

#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "engine/dist/world.h"

namespace fathom::dist {

struct GradSyncOptions {
  int64_t bucket_bytes = 25ll << 20;  // FATHOM_DIST_BUCKET_MB overrides (tests use small buckets)
  int zero_stage = 0;
};

struct BucketEntry {
  int param = 0;       // index into the parameter list
  int64_t offset = 0;  // element offset inside the bucket
  int64_t numel = 0;
};

struct Bucket {
  std::vector<BucketEntry> entries;
  int64_t numel = 0;   // used elements
  int64_t padded = 0;  // numel rounded up to a multiple of the world size
  int64_t base = 0;    // offset of the bucket in the flat (ZeRO) layout
  int64_t chunk() const { return padded; }
};

class GradSync {
 public:
  GradSync(std::shared_ptr<World> world, std::vector<torch::Tensor> params, GradSyncOptions options);
  ~GradSync();
  GradSync(const GradSync&) = delete;
  GradSync& operator=(const GradSync&) = delete;

  // Start of an optimizer step: zeroed buckets, every .grad a view of its slice.
  void begin_step();
  // Before each micro-step's backward.
  void set_last_micro(bool last) { last_micro_ = last; }
  // After the last backward: reduce what no hook started, wait for everything, divide by the
  // world size. Returns the seconds this call waited (the sync latency backward did not hide).
  double finish();

  const std::vector<Bucket>& buckets() const { return buckets_; }
  const std::vector<torch::Tensor>& params() const { return params_; }
  int64_t chunk_numel(int b) const { return buckets_[b].padded / world_->size(); }
  // Sum over buckets of the chunk sizes: the length of a ZeRO shard.
  int64_t shard_numel() const { return shard_numel_; }
  // Offset of bucket b's chunk inside the shard.
  int64_t shard_offset(int b) const { return shard_offsets_[b]; }
  // ZeRO: this rank's chunk of every bucket's reduced gradient, concatenated (compute dtype).
  torch::Tensor grad_shard() const { return grad_shard_; }
  // ZeRO: make the parameters views into one flat buffer in bucket layout (call once, before
  // training; values are kept).
  void shard_params();
  // ZeRO: bucket b's slice of the flat parameter buffer (padded), and this rank's chunk of it.
  torch::Tensor param_bucket(int b) const { return param_flat_.narrow(0, buckets_[b].base, buckets_[b].padded); }
  torch::Tensor param_chunk(int b) const {
    return param_flat_.narrow(0, buckets_[b].base + world_->rank() * chunk_numel(b), chunk_numel(b));
  }

  void on_grad_ready(int param);  // from the autograd hooks

 private:
  void launch_ready();
  void launch(int b);

  std::shared_ptr<World> world_;
  std::vector<torch::Tensor> params_;
  GradSyncOptions opt_;
  std::vector<Bucket> buckets_;
  std::vector<int> bucket_of_;
  std::vector<torch::Tensor> flats_;  // per bucket, padded, compute dtype
  std::vector<int64_t> shard_offsets_;
  int64_t shard_numel_ = 0;
  torch::Tensor grad_shard_, param_flat_;
  std::vector<std::shared_ptr<Pending>> pending_;
  std::vector<int> waiting_;  // per bucket: parameters not yet ready
  std::vector<bool> ready_;
  int next_launch_ = 0;
  bool last_micro_ = true;
  std::mutex mu_;
  struct HookRef;
  std::vector<std::shared_ptr<HookRef>> hooks_;
};

}  // namespace fathom::dist
