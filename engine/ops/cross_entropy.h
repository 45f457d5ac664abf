// Fused linear + cross-entropy for the LM head: the summed next-token loss of h · Wᵀ without the
// (N, V) logits. On CUDA with the kernels on, by default in chunks of rows (see LinearCeMode below):
// each chunk's logits from cuBLAS, turned into dlogits in place by kernels/cross_entropy, then dH and
// dW from them in the forward. Or in chunks of ~16K vocabulary columns, each chunk's logits and an
// online log-sum-exp kernel; the backward recomputes each chunk's logits, turns them into dlogits in
// place, and accumulates dH (fp32) and writes dW's rows of that chunk. Either saves the logits, their
// fp32 copy, the log-softmax and its gradient (several N × V buffers).
// Elsewhere: the composite F::cross_entropy(h · Wᵀ in fp32, reduction sum).
#pragma once
#include <torch/types.h>

namespace fathom::ops {

// How the fused path chunks (see the top of this file):
//  vocab: chunks of the vocabulary, logits recomputed in the backward (four h·Wᵀ-sized products,
//         nothing held between forward and backward but h, W and lse);
//  rows:  chunks of rows over the whole vocabulary, dH and dW computed in the forward when
//         gradients are wanted (three products, as Liger-Kernel does; holds dH and dW, W-sized,
//         until the backward, and accumulates dW in W's dtype across row chunks).
//  automatic: FATHOM_CE=rows|vocab from the environment, rows when unset (+4.3% tokens/s on
//             llama-1b's training step, H200, against vocab).
enum class LinearCeMode { automatic, vocab, rows };

// True when linear_cross_entropy_sum takes the fused path for these tensors.
bool linear_cross_entropy_fusable(const torch::Tensor& h, const torch::Tensor& w, const torch::Tensor& targets);
// Σ over rows with targets != ignore_index of −log softmax(h · Wᵀ)[target], fp32 scalar.
// h (N, C), w (V, C) of one dtype, targets (N) int64. chunk: vocabulary columns (vocab) or rows
// (rows) per step; 0: auto.
torch::Tensor linear_cross_entropy_sum(const torch::Tensor& h, const torch::Tensor& w, const torch::Tensor& targets,
                                       int64_t ignore_index = -100, int64_t chunk = 0,
                                       LinearCeMode mode = LinearCeMode::automatic);

namespace composite {
torch::Tensor linear_cross_entropy_sum(const torch::Tensor& h, const torch::Tensor& w, const torch::Tensor& targets,
                                       int64_t ignore_index = -100);
}

}  // namespace fathom::ops
