// Gradient buckets and their asynchronous reduction (see grad_sync.h).
#include "engine/dist/grad_sync.h"

#include <torch/csrc/autograd/function.h>
#include <torch/csrc/autograd/function_hook.h>
#include <torch/csrc/autograd/variable.h>

#include <chrono>
#include <cstdlib>

namespace fathom::dist {

namespace {
// Runs after AccumulateGrad has added this micro-step's gradient into the parameter's .grad.
struct ReadyHook : torch::autograd::FunctionPostHook {
  ReadyHook(GradSync* s, int i) : sync(s), index(i) {}
  torch::autograd::variable_list operator()(const torch::autograd::variable_list& outputs,
                                            const torch::autograd::variable_list&) override {
    sync->on_grad_ready(index);
    return outputs;
  }
  GradSync* sync;
  int index;
};
}  // namespace

struct GradSync::HookRef {
  std::shared_ptr<torch::autograd::Node> accumulator;  // kept alive: the parameter holds it weakly
  uintptr_t key = 0;
};

GradSync::GradSync(std::shared_ptr<World> world, std::vector<torch::Tensor> params, GradSyncOptions options)
    : world_(std::move(world)), params_(std::move(params)), opt_(options) {
  if (const char* mb = std::getenv("FATHOM_DIST_BUCKET_MB"); mb && *mb)
    opt_.bucket_bytes = std::max<int64_t>(1, static_cast<int64_t>(std::atof(mb) * (1 << 20)));
  const int W = world_->size();
  // Buckets in reverse parameter order (backward's order), closed when full.
  bucket_of_.assign(params_.size(), -1);
  Bucket cur;
  auto close = [&] {
    if (cur.entries.empty()) return;
    cur.padded = (cur.numel + W - 1) / W * W;
    buckets_.push_back(cur);
    cur = Bucket();
  };
  for (int i = static_cast<int>(params_.size()) - 1; i >= 0; --i) {
    const auto& p = params_[i];
    const int64_t n = p.numel();
    if (!cur.entries.empty() && (cur.numel + n) * p.element_size() > opt_.bucket_bytes) close();
    if (!cur.entries.empty() && params_[cur.entries.front().param].scalar_type() != p.scalar_type()) close();
    cur.entries.push_back({i, cur.numel, n});
    cur.numel += n;
  }
  close();
  int64_t base = 0;
  for (size_t b = 0; b < buckets_.size(); ++b) {
    buckets_[b].base = base;
    base += buckets_[b].padded;
    shard_offsets_.push_back(shard_numel_);
    shard_numel_ += buckets_[b].padded / W;
    for (const auto& e : buckets_[b].entries) bucket_of_[e.param] = static_cast<int>(b);
  }
  if (opt_.zero_stage > 0 && !params_.empty())
    grad_shard_ = torch::zeros({shard_numel_}, params_.front().options().requires_grad(false));
  for (int i = 0; i < static_cast<int>(params_.size()); ++i) {
    auto ref = std::make_shared<HookRef>();
    ref->accumulator = torch::autograd::impl::grad_accumulator(params_[i]);
    if (!ref->accumulator) throw std::runtime_error("data parallelism: a trainable parameter has no gradient accumulator");
    ref->key = ref->accumulator->add_post_hook(std::make_unique<ReadyHook>(this, i));
    hooks_.push_back(ref);
  }
}

GradSync::~GradSync() {
  for (auto& h : hooks_) h->accumulator->del_post_hook(h->key);
}

void GradSync::shard_params() {
  torch::NoGradGuard ng;
  if (params_.empty()) return;
  const auto& last = buckets_.back();
  param_flat_ = torch::zeros({last.base + last.padded}, params_.front().options().requires_grad(false));
  for (const auto& b : buckets_)
    for (const auto& e : b.entries) {
      auto view = param_flat_.narrow(0, b.base + e.offset, e.numel).view(params_[e.param].sizes());
      view.copy_(params_[e.param]);
      params_[e.param].set_data(view);
    }
}

void GradSync::begin_step() {
  torch::NoGradGuard ng;
  flats_.resize(buckets_.size());
  for (size_t b = 0; b < buckets_.size(); ++b) {
    const auto& bk = buckets_[b];
    if (!flats_[b].defined()) flats_[b] = torch::empty({bk.padded}, params_[bk.entries.front().param].options().requires_grad(false));
    flats_[b].zero_();
    for (const auto& e : bk.entries) params_[e.param].mutable_grad() = flats_[b].narrow(0, e.offset, e.numel).view(params_[e.param].sizes());
  }
  pending_.assign(buckets_.size(), nullptr);
  waiting_.resize(buckets_.size());
  for (size_t b = 0; b < buckets_.size(); ++b) waiting_[b] = static_cast<int>(buckets_[b].entries.size());
  ready_.assign(params_.size(), false);
  next_launch_ = 0;
  last_micro_ = true;
}

void GradSync::on_grad_ready(int i) {
  if (!last_micro_) return;
  std::lock_guard<std::mutex> g(mu_);
  if (ready_.empty()) return;  // outside a training step (no begin_step yet)
  if (ready_[i])
    throw std::runtime_error("data parallelism: parameter #" + std::to_string(i) +
                             " received its gradient twice in one backward (a parameter shared between checkpointed "
                             "blocks?); its bucket was already being reduced");
  ready_[i] = true;
  if (--waiting_[bucket_of_[i]] == 0) launch_ready();
}

void GradSync::launch_ready() {
  while (next_launch_ < static_cast<int>(buckets_.size()) && waiting_[next_launch_] == 0) launch(next_launch_++);
}

void GradSync::launch(int b) {
  if (opt_.zero_stage >= 2) {
    pending_[b] = world_->reduce_scatter_async(grad_shard_.narrow(0, shard_offsets_[b], chunk_numel(b)), flats_[b]);
  } else {
    pending_[b] = world_->all_reduce_async(flats_[b]);
  }
}

double GradSync::finish() {
  const auto t0 = std::chrono::steady_clock::now();
  {
    std::lock_guard<std::mutex> g(mu_);
    // Parameters whose hook never fired on this micro-step (unused this time): reduce anyway, in order.
    while (next_launch_ < static_cast<int>(buckets_.size())) launch(next_launch_++);
  }
  torch::NoGradGuard ng;
  const double inv = 1.0 / world_->size();
  for (size_t b = 0; b < buckets_.size(); ++b) {
    pending_[b]->wait();
    if (opt_.zero_stage >= 2) {
      grad_shard_.narrow(0, shard_offsets_[b], chunk_numel(b)).mul_(inv);
    } else {
      flats_[b].mul_(inv);
      if (opt_.zero_stage == 1)
        grad_shard_.narrow(0, shard_offsets_[b], chunk_numel(b))
            .copy_(flats_[b].narrow(0, world_->rank() * chunk_numel(b), chunk_numel(b)));
    }
  }
  pending_.assign(buckets_.size(), nullptr);
  ready_.clear();
  if (opt_.zero_stage >= 2) {
    // Only the shard is kept: the full gradients are released until the next step.
    for (auto& p : params_) p.mutable_grad() = torch::Tensor();
    flats_.assign(buckets_.size(), torch::Tensor());
  }
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

}  // namespace fathom::dist
