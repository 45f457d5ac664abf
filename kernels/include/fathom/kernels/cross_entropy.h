// The softmax part of a fused linear + cross-entropy that never holds the full logits: the caller
// (engine/ops/cross_entropy.cpp) computes one vocabulary chunk of logits z = h · W[v0:v0+Vc]ᵀ at a
// time with cuBLAS, and these kernels
//   forward:  keep a running max m and sum s = Σ exp(z − m) per row (online logsumexp, Milakov &
//             Gimelshein 2018) and pick the target's logit zt when it falls in the chunk;
//   finish:   lse = m + log s, loss = lse − zt per row (0 where target == ignore_index);
//   backward: dz = (exp(z − lse) − [v0 + j == target]) · scale, 0 on ignored rows (in place allowed).
// Logits chunks: (rows, Vc) with row stride ld elements, of one element type; m, s, zt, lse, loss
// fp32 (rows); targets int64 (rows). Targets outside [0, V) other than ignore_index are not checked.
#pragma once
#include "fathom/kernels/common.h"

namespace fathom::kernels {

// Vc and ld multiples of 16 bytes' worth of elements, logits 16-byte aligned.
bool ce_chunk_supported(DType dt, int64_t Vc, int64_t ld);
// m must start at -inf, s and zt at 0 (ce_init does that).
void ce_init(int64_t rows, float* m, float* s, float* zt, cudaStream_t stream);
void ce_chunk_forward(DType dt, const void* logits, int64_t ld, int64_t rows, int64_t Vc, int64_t v0, const int64_t* targets,
                      float* m, float* s, float* zt, cudaStream_t stream);
void ce_finish(int64_t rows, const int64_t* targets, int64_t ignore_index, const float* m, const float* s, const float* zt,
               float* lse, float* loss, cudaStream_t stream);
// scale: one fp32 value on the device (the loss's incoming gradient), read by the kernel.
void ce_chunk_backward(DType dt, const void* logits, int64_t ld, void* dlogits, int64_t ld_out, int64_t rows, int64_t Vc,
                       int64_t v0, const int64_t* targets, int64_t ignore_index, const float* lse, const float* scale,
                       cudaStream_t stream);
// x[0:n) *= *scale in place (x of element type dt, scale one fp32 value on the device): the row-chunked
// linear + cross-entropy makes its gradients in the forward for a unit loss gradient, and applies the
// real one here, in one vectorised pass (any alignment; 16-byte packs where x is 16-byte aligned).
void ce_scale(DType dt, void* x, int64_t n, const float* scale, cudaStream_t stream);

namespace ref {
// Whole rows at once: logits (rows, V) fp32 → lse, loss (0 on ignored rows) and dlogits for scale.
void cross_entropy(const float* logits, int64_t rows, int64_t V, const int64_t* targets, int64_t ignore_index, float scale,
                   float* lse, float* loss, float* dlogits);
}  // namespace ref

}  // namespace fathom::kernels
