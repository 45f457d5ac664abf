// Mixture-of-experts token permutation for engine/model/moe.cpp. A routing sorts the N·k
// (token, expert) assignments by expert once; dispatch gathers the tokens into one buffer whose
// rows are grouped by expert (each expert then reads a contiguous slice, no copies), and combine
// gathers every token's expert outputs back, weighted, summing in fp32. On CUDA with the kernels
// on: kernels/moe (gathers only, deterministic; their backward passes are the same gathers);
// elsewhere the composite (index_select, and a weighted sum over k).
#pragma once
#include <torch/types.h>

#include <vector>

namespace fathom::ops {

struct MoeRouting {
  int64_t tokens = 0, top_k = 0;
  torch::Tensor src;          // (P) int64: the token of each permuted row
  torch::Tensor assign;       // (P) int64: its assignment t·k + i
  torch::Tensor pos;          // (N, k) int64: the permuted row of assignment (t, i), −1 when dropped
  std::vector<int64_t> rows;  // per expert, the rows kept; expert e owns [Σ_{e'<e} rows, + rows[e])
  torch::Tensor counts;       // (E) int64 on the CPU: assignments routed to each expert, dropped included
  int64_t dropped = 0;        // assignments over the capacity limit
  int64_t kept() const { return src.defined() ? src.size(0) : 0; }
};

// topk_idx (N, k): each token's experts. capacity: the most assignments an expert keeps, in token
// order (the later ones are dropped). Stable: rows of one expert keep token order. One
// device-to-host copy (the per-expert counts).
MoeRouting moe_route(const torch::Tensor& topk_idx, int64_t n_experts, int64_t capacity);

// x (N, C) → (P, C): row j is x[src[j]].
torch::Tensor moe_permute(const torch::Tensor& x, const MoeRouting& r);
// y (P, C), w (N, k) fp32 → (N, C) in y's dtype: Σ_i w[t,i] · y[pos[t,i]] over the kept i.
torch::Tensor moe_unpermute(const torch::Tensor& y, const torch::Tensor& w, const MoeRouting& r);

namespace composite {
torch::Tensor moe_permute(const torch::Tensor& x, const MoeRouting& r);
torch::Tensor moe_unpermute(const torch::Tensor& y, const torch::Tensor& w, const MoeRouting& r);
}  // namespace composite

}  // namespace fathom::ops
