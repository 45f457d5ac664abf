// DeepSeekMoE feed-forward (Dai et al. 2024; DeepSeek-V3 routing, 2024): n_shared always-active
// experts plus n_routed fine-grained experts of which each token uses top_k. Hugging Face
// DeepseekV3MoE names: mlp.gate.weight (E, C), mlp.gate.e_score_correction_bias (E),
// mlp.experts.J.{gate,up,down}_proj, mlp.shared_experts.{gate,up,down}_proj.
//
// Routing per token t: s = softmax(x·Wgᵀ) or sigmoid(x·Wgᵀ); experts are chosen by s + b (b the
// correction bias; only group-limited to the topk_group best of n_group groups), weighted by s
// (renormalised over the chosen when norm_topk_prob) × routed_scaling_factor.
//
// Balance: aux_loss adds α·Σ_i f_i·P_i (f_i = E/(k·N)·tokens routed to i, P_i = mean normalised
// score of i; DeepSeekMoE eq. 12); bias_update (Wang et al. 2024, auxiliary-loss-free) moves b_i by
// ±rate towards even load after every optimizer step. capacity_factor > 0 caps each expert at
// ceil(cf·N·k/E) assignments per forward, dropping the later tokens (their other experts and
// the shared experts still apply), and counts them.
#pragma once
#include <torch/torch.h>

#include <vector>

#include "engine/model/transformer.h"

namespace fathom::model {

class MoeGateImpl : public torch::nn::Module {
 public:
  MoeGateImpl(int64_t n_experts, int64_t d_model);
  torch::Tensor weight;                   // (E, C)
  torch::Tensor e_score_correction_bias;  // (E) buffer, fp32
};
TORCH_MODULE(MoeGate);

// What the router did since the last take_stats(): for the Monitor's expert-load charts.
struct MoeStats {
  std::vector<double> load;  // share of routed assignments per expert (sums to 1)
  double dropped_frac = 0;   // assignments dropped by the capacity limit / all assignments
  double aux_loss = 0;       // mean over forwards of α·Σ f_i P_i (0 unless balance is aux_loss)
  int64_t assignments = 0;
};

class MoeImpl : public torch::nn::Module {
 public:
  explicit MoeImpl(const ModelArgs& args);
  // x: (B, T, C) → (B, T, C). In training with balance aux_loss, *aux receives the loss term.
  torch::Tensor forward(const torch::Tensor& x, torch::Tensor* aux = nullptr);

  // Auxiliary-loss-free balancing: b_i += rate · sign(mean load − load_i) over the assignments
  // counted since the last call (every optimizer step); no-op unless balance is bias_update.
  void update_bias(bool apply = true);
  MoeStats take_stats();

  MoeGate gate{nullptr};
  torch::nn::ModuleList experts{nullptr};
  Mlp shared_experts{nullptr};

 private:
  // The routed experts over xp's rows, grouped by expert (rows[e] each, in expert order).
  torch::Tensor routed_experts(const torch::Tensor& xp, const std::vector<int64_t>& rows);
  MoeArgs a_;
  torch::Tensor step_counts_;  // (E) fp64, CPU: assignments since update_bias()
  torch::Tensor stat_counts_;  // (E) fp64, CPU: since take_stats()
  int64_t stat_dropped_ = 0, stat_assigned_ = 0, stat_forwards_ = 0;
  double stat_aux_ = 0;
};

}  // namespace fathom::model
