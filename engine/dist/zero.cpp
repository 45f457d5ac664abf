// ZeRO-sharded AdamW (see zero.h).
#include "engine/dist/zero.h"

#include <cmath>
#include <map>

namespace fathom::dist {

ZeroAdamW::ZeroAdamW(std::shared_ptr<World> world, GradSync& sync, const NamedTensors& masters, train::AdamWOptions options)
    : world_(std::move(world)), sync_(sync) {
  torch::NoGradGuard ng;
  const auto& params = sync_.params();
  if (masters.size() != params.size()) throw std::invalid_argument("ZeRO: one master tensor per parameter");
  for (const auto& [n, t] : masters) names_.push_back(n);
  const int r = world_->rank();
  std::vector<bool> decay;
  const auto& buckets = sync_.buckets();
  for (int b = 0; b < static_cast<int>(buckets.size()); ++b) {
    const int64_t c = sync_.chunk_numel(b);
    const int64_t lo = r * c, hi = lo + c;
    for (const auto& e : buckets[b].entries) {
      const int64_t s = std::max(lo, e.offset), t = std::min(hi, e.offset + e.numel);
      if (s >= t) continue;
      Segment seg{e.param, b, s - e.offset, t - s, sync_.shard_offset(b) + (s - lo)};
      segs_.push_back(seg);
      const auto& m = masters[e.param].second;
      auto piece = m.detach().reshape({-1}).narrow(0, seg.param_offset, seg.length).to(params[e.param].device(), torch::kFloat32).clone();
      pieces_.emplace_back(names_[e.param] + "@" + std::to_string(seg.param_offset), piece);
      decay.push_back(params[e.param].dim() >= 2);
    }
  }
  adam_ = std::make_unique<train::AdamW>(pieces_, options, decay);
}

double ZeroAdamW::clip_grad_norm(double max_norm, double inv_scale) {
  torch::NoGradGuard ng;
  auto g = sync_.grad_shard();
  grad32_ = g.scalar_type() == torch::kFloat32 ? g : g.to(torch::kFloat32);
  if (inv_scale != 1.0) grad32_ = grad32_.mul(inv_scale);
  // Σ g² over this shard (padding is zero), summed over ranks.
  const double local = grad32_.numel() ? grad32_.norm(2).pow(2).item<double>() : 0.0;
  const double total = std::sqrt(world_->all_reduce_sum(local));
  const double coef = train::clip_coefficient(total, max_norm);
  if (coef < 1.0) grad32_.mul_(coef);
  return total;
}

void ZeroAdamW::step(double lr) {
  for (size_t i = 0; i < segs_.size(); ++i)
    pieces_[i].second.mutable_grad() = grad32_.narrow(0, segs_[i].shard_offset, segs_[i].length);
  adam_->step(lr);
  drop_grads();
}

void ZeroAdamW::drop_grads() {
  for (auto& [n, p] : pieces_) p.mutable_grad() = torch::Tensor();
  grad32_ = torch::Tensor();
}

void ZeroAdamW::publish() {
  torch::NoGradGuard ng;
  for (size_t i = 0; i < segs_.size(); ++i) {
    const auto& s = segs_[i];
    sync_.param_chunk(s.bucket).narrow(0, s.shard_offset - sync_.shard_offset(s.bucket), s.length).copy_(pieces_[i].second);
  }
  std::vector<std::shared_ptr<Pending>> pending;
  for (int b = 0; b < static_cast<int>(sync_.buckets().size()); ++b)
    pending.push_back(world_->all_gather_async(sync_.param_bucket(b), sync_.param_chunk(b)));
  for (auto& p : pending) p->wait();
}

NamedTensors ZeroAdamW::gather(const std::vector<torch::Tensor>& pieces, const std::string& suffix) {
  torch::NoGradGuard ng;
  const auto& params = sync_.params();
  const auto& buckets = sync_.buckets();
  std::vector<torch::Tensor> full(params.size());
  size_t i = 0;
  for (int b = 0; b < static_cast<int>(buckets.size()); ++b) {
    const int64_t c = sync_.chunk_numel(b);
    auto dev = params[buckets[b].entries.front().param].device();
    auto chunk = torch::zeros({c}, torch::TensorOptions().dtype(torch::kFloat32).device(dev));
    for (; i < segs_.size() && segs_[i].bucket == b; ++i)
      chunk.narrow(0, segs_[i].shard_offset - sync_.shard_offset(b), segs_[i].length).copy_(pieces[i]);
    auto out = torch::empty({c * world_->size()}, chunk.options());
    world_->all_gather(out, chunk);
    for (const auto& e : buckets[b].entries) full[e.param] = out.narrow(0, e.offset, e.numel).view(params[e.param].sizes()).cpu();
  }
  NamedTensors named;
  for (size_t p = 0; p < params.size(); ++p) named.emplace_back(names_[p] + suffix, full[p]);
  return named;
}

NamedTensors ZeroAdamW::gather_masters() {
  std::vector<torch::Tensor> m;
  for (auto& [n, t] : pieces_) m.push_back(t);
  return gather(m, "");
}

NamedTensors ZeroAdamW::gather_state() {
  auto a = gather(adam_->exp_avg(), ".exp_avg");
  auto b = gather(adam_->exp_avg_sq(), ".exp_avg_sq");
  NamedTensors out;
  for (size_t p = 0; p < a.size(); ++p) {
    out.push_back(a[p]);
    out.push_back(b[p]);
  }
  out.emplace_back("step", torch::tensor(adam_->steps_taken(), torch::kInt64));
  return out;
}

void ZeroAdamW::load(const NamedTensors& masters, const NamedTensors& state) {
  torch::NoGradGuard ng;
  std::map<std::string, torch::Tensor> m(masters.begin(), masters.end()), s(state.begin(), state.end());
  auto get = [](std::map<std::string, torch::Tensor>& from, const std::string& name, const char* what) {
    auto it = from.find(name);
    if (it == from.end()) throw std::runtime_error(std::string(what) + " has no tensor '" + name + "'");
    return it->second;
  };
  const auto& params = sync_.params();
  for (size_t i = 0; i < segs_.size(); ++i) {
    const auto& seg = segs_[i];
    const std::string& n = names_[seg.param];
    auto slice = [&](torch::Tensor t) {
      if (t.numel() != params[seg.param].numel())
        throw std::runtime_error("checkpoint tensor for '" + n + "' has " + std::to_string(t.numel()) + " elements, the model " +
                                 std::to_string(params[seg.param].numel()));
      return t.reshape({-1}).narrow(0, seg.param_offset, seg.length);
    };
    pieces_[i].second.copy_(slice(get(m, n, "the model weights")));
    adam_->exp_avg()[i].copy_(slice(get(s, n + ".exp_avg", "the optimizer state")));
    adam_->exp_avg_sq()[i].copy_(slice(get(s, n + ".exp_avg_sq", "the optimizer state")));
  }
  adam_->set_steps_taken(get(s, "step", "the optimizer state").item<int64_t>());
}

int64_t ZeroAdamW::local_state_bytes() const {
  int64_t n = 0;
  for (const auto& [k, t] : pieces_) n += t.numel();
  return n * 4 * 3;
}

}  // namespace fathom::dist
