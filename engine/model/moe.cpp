// DeepSeekMoE feed-forward (see moe.h). N tokens, E routed experts, k = top_k, G groups.
#include "engine/model/moe.h"

#include <algorithm>
#include <cmath>

#include "engine/model/checkpointing.h"
#include "engine/model/fp8.h"
#include "engine/ops/grouped_linear.h"
#include "engine/ops/moe.h"
#include "engine/ops/swiglu.h"

namespace fathom::model {

MoeGateImpl::MoeGateImpl(int64_t n_experts, int64_t d_model) {
  weight = register_parameter("weight", torch::randn({n_experts, d_model}) * 0.02);  // TransformerImpl::init_weights re-draws it
  e_score_correction_bias = register_buffer("e_score_correction_bias", torch::zeros({n_experts}));
}

MoeImpl::MoeImpl(const ModelArgs& args) : a_(args.moe) {
  const int64_t E = a_.n_routed_experts;
  gate = register_module("gate", MoeGate(E, args.d_model));
  experts = register_module("experts", torch::nn::ModuleList());
  for (int64_t e = 0; e < E; ++e) experts->push_back(Mlp(args.d_model, a_.d_expert));
  if (a_.n_shared_experts > 0)
    shared_experts = register_module("shared_experts", Mlp(args.d_model, a_.n_shared_experts * a_.d_expert));
  step_counts_ = torch::zeros({E}, torch::kFloat64);
  stat_counts_ = torch::zeros({E}, torch::kFloat64);
}

torch::Tensor MoeImpl::forward(const torch::Tensor& x, torch::Tensor* aux) {
  const int64_t C = x.size(-1), E = a_.n_routed_experts, k = a_.top_k;
  auto h = x.reshape({-1, C});
  const int64_t N = h.size(0);

  // ---- routing, in fp32 ------------------------------------------------------------------
  auto logits = torch::matmul(h.to(torch::kFloat32), gate->weight.to(torch::kFloat32).t());  // (N, E)
  auto scores = a_.gate == "sigmoid" ? logits.sigmoid() : logits.softmax(-1);
  auto choice = scores + gate->e_score_correction_bias.to(torch::kFloat32);
  {
    torch::NoGradGuard no_grad;  // selection only: weights come from `scores` below
    choice = choice.detach();
    if (a_.n_group > 1) {
      const int64_t per = E / a_.n_group;
      auto grouped = choice.view({N, a_.n_group, per});
      auto group_scores = a_.gate == "sigmoid" ? std::get<0>(grouped.topk(std::min<int64_t>(2, per), -1)).sum(-1)
                                               : std::get<0>(grouped.max(-1));
      auto best_groups = std::get<1>(group_scores.topk(a_.topk_group, -1));                     // (N, topk_group)
      auto group_mask = torch::zeros({N, a_.n_group}, choice.options()).scatter_(1, best_groups, 1.0);
      auto score_mask = group_mask.unsqueeze(-1).expand({N, a_.n_group, per}).reshape({N, E});
      choice = choice.masked_fill(score_mask == 0, 0.0);  // as DeepseekV3TopkRouter does
    }
  }
  auto topk_idx = std::get<1>(choice.topk(k, -1, /*largest=*/true, /*sorted=*/false));          // (N, k)
  auto topk_w = scores.gather(1, topk_idx);
  if (a_.norm_topk_prob) topk_w = topk_w / (topk_w.sum(-1, /*keepdim=*/true) + 1e-20);
  topk_w = topk_w * a_.routed_scaling_factor;

  // ---- dispatch: one buffer of rows grouped by expert, each expert on its slice, combine -----
  const int64_t capacity =
      a_.capacity_factor > 0 ? static_cast<int64_t>(std::ceil(a_.capacity_factor * N * k / static_cast<double>(E))) : N * k;
  const auto routing = ops::moe_route(topk_idx, E, capacity);
  const auto& counts = routing.counts;
  const int64_t dropped = routing.dropped;
  auto xp = ops::moe_permute(h, routing);  // (P, C)
  auto yp = routed_experts(xp, routing.rows);
  auto y = ops::moe_unpermute(yp, topk_w.to(torch::kFloat32), routing);
  if (a_.n_shared_experts > 0) y = y + shared_experts(h);

  // ---- balance and statistics (training forwards only, once per forward) ----------------
  if (is_training() && !checkpoint_recomputing()) {
    auto c64 = counts.to(torch::kFloat64);
    step_counts_ += c64;
    stat_counts_ += c64;
    stat_dropped_ += dropped;
    stat_assigned_ += N * k;
    ++stat_forwards_;
  }
  if (is_training() && aux && a_.balance == "aux_loss" && a_.aux_loss_coef > 0) {
    // α·Σ_i f_i·P_i, f_i = E/(k·N)·count_i (a constant), P_i = mean normalised score.
    auto norm_scores = a_.gate == "sigmoid" ? scores / (scores.sum(-1, true) + 1e-20) : scores;
    auto P = norm_scores.mean(0);                                                             // (E)
    auto f = counts.to(P.device(), torch::kFloat32) * (static_cast<double>(E) / static_cast<double>(k * N));
    *aux = (f * P).sum() * a_.aux_loss_coef;
    if (!checkpoint_recomputing()) stat_aux_ += aux->detach().item<double>();
  }
  return y.view(x.sizes());
}

torch::Tensor MoeImpl::routed_experts(const torch::Tensor& xp, const std::vector<int64_t>& rows) {
  // The experts that got rows, and whether all of them are plain SwiGLUs (no adapter, no int8, no
  // bias) that the grouped GEMM can take: then three grouped products (gate, up, down) for all.
  std::vector<int64_t> active_rows;
  std::vector<torch::Tensor> gate_w, up_w, down_w;
  bool plain = xp.is_cuda() && !(fp8::enabled() && is_training());
  int64_t most = 0;
  for (size_t e = 0; e < rows.size(); ++e) {
    if (rows[e] == 0) continue;
    active_rows.push_back(rows[e]);
    most = std::max(most, rows[e]);
    if (!plain) continue;
    auto* m = experts[e]->as<MlpImpl>();
    for (auto* lin : {m->gate_proj.get(), m->up_proj.get(), m->down_proj.get()}) {
      auto d = lin->decode_weight();
      if (!d || d->scale.defined() || d->bias.defined()) plain = false;
    }
    if (plain) {
      gate_w.push_back(m->gate_proj->weight);
      up_w.push_back(m->up_proj->weight);
      down_w.push_back(m->down_proj->weight);
    }
  }
  if (active_rows.empty()) return xp;  // no rows at all: (0, C)
  // Decoding (a few rows per expert, not training): each expert's own decode kernels. The choice
  // does not depend on grad mode, so a checkpointed block recomputes exactly what its forward did.
  if (plain && (most > 8 || is_training()) && ops::grouped_linear_fusable(xp, gate_w) &&
      ops::grouped_linear_fusable(xp, up_w) &&
      ops::grouped_weights_fusable(down_w, gate_w[0].size(0), xp.scalar_type(), xp.device())) {
    auto act = ops::swiglu(ops::grouped_linear(xp, gate_w, active_rows), ops::grouped_linear(xp, up_w, active_rows));
    return ops::grouped_linear(act, down_w, active_rows);
  }
  std::vector<torch::Tensor> parts;
  int64_t offset = 0;
  for (size_t e = 0; e < rows.size(); ++e) {
    if (rows[e] > 0) parts.push_back(experts[e]->as<MlpImpl>()->forward(xp.narrow(0, offset, rows[e])));
    offset += rows[e];
  }
  return parts.size() == 1 ? parts[0] : torch::cat(parts, 0);
}

void MoeImpl::update_bias(bool apply) {
  if (apply && a_.balance == "bias_update" && a_.bias_update_rate > 0 && step_counts_.sum().item<double>() > 0) {
    torch::NoGradGuard no_grad;
    auto load = step_counts_;
    auto delta = (load.mean() - load).sign() * a_.bias_update_rate;  // under-loaded experts rise
    auto& b = gate->e_score_correction_bias;
    b.add_(delta.to(b.device(), b.scalar_type()));
  }
  step_counts_.zero_();
}

MoeStats MoeImpl::take_stats() {
  MoeStats s;
  const double total = stat_counts_.sum().item<double>();
  s.load.resize(static_cast<size_t>(stat_counts_.size(0)));
  const double* c = stat_counts_.data_ptr<double>();
  for (size_t e = 0; e < s.load.size(); ++e) s.load[e] = total > 0 ? c[e] / total : 0.0;
  s.assignments = stat_assigned_;
  s.dropped_frac = stat_assigned_ > 0 ? static_cast<double>(stat_dropped_) / static_cast<double>(stat_assigned_) : 0.0;
  s.aux_loss = stat_forwards_ > 0 ? stat_aux_ / static_cast<double>(stat_forwards_) : 0.0;
  stat_counts_.zero_();
  stat_dropped_ = stat_assigned_ = stat_forwards_ = 0;
  stat_aux_ = 0;
  return s;
}

}  // namespace fathom::model
