// Multi-tensor fused AdamW (issue #10): one launch (per 48 tensors) updates every parameter tensor
// of a step, reading parameter, gradient and both moments once and writing parameter and moments
// once; the _foreach_ composite it replaces makes ~9 passes over them. The update is
// engine/train/optimizer.h's, in fp32 (the engine's master weights and moments):
//   g ← g·grad_scale;  p ← p·(1 − lr·wd) [decay tensors];  m ← β1·m + (1−β1)·g;  v ← β2·v + (1−β2)·g²;
//   p ← p − step_size · m / (sqrt(v) / bias_correction2_sqrt + ε),  step_size = lr / (1 − β1ᵗ).
#pragma once
#include "fathom/kernels/common.h"

namespace fathom::kernels {

struct AdamWTensor {
  float* p = nullptr;        // parameter (updated in place)
  const float* g = nullptr;  // gradient
  float* m = nullptr;        // first moment (in place)
  float* v = nullptr;        // second moment (in place)
  int64_t n = 0;             // elements, all four contiguous
  bool decay = false;        // apply weight decay
  // Mixed precision (a bf16 model with fp32 masters), both set or neither: the gradient is read as
  // bf16 bits from g_bf16 (g unused), and the updated parameter is also written, rounded to bf16
  // (nearest even), to model_bf16, the model's own copy. This replaces a conversion pass each way.
  const uint16_t* g_bf16 = nullptr;
  uint16_t* model_bf16 = nullptr;
};

struct AdamWHyper {
  float lr = 0.f, beta1 = 0.9f, beta2 = 0.95f, eps = 1e-8f, weight_decay = 0.f;
  float step_size = 0.f;              // lr / (1 − β1ᵗ)
  float bias_correction2_sqrt = 1.f;  // sqrt(1 − β2ᵗ)
  float grad_scale = 1.f;             // every gradient is multiplied by this first (the clip coefficient)
  // When set, the multiplier is read from this float in device memory instead (grad_norm_clip's
  // coefficient, so no host round trip comes between the backward pass and the update), and a
  // non-finite value there skips the whole update: nothing is written.
  const float* grad_scale_dev = nullptr;
  // Loads and stores with evict-first cache hints (__ldcs/__stcs): the same arithmetic, the same bits.
  // Off by default; FATHOM_ADAMW_STREAMING=1 turns it on in the engine, for A/B measurements.
  bool streaming = false;
};

void adamw_step(const AdamWTensor* tensors, int count, const AdamWHyper& h, cudaStream_t stream);

// The gradients' global L2 norm and the clip coefficient, computed on the device. One launch per 48
// tensors writes kNormPartials partial sums of squares each into `workspace`; one block then sums
// them (in double) and writes out[0] = norm, out[1] = coefficient: min(1, max_norm / (norm + 1e-6)),
// 1 when max_norm ≤ 0 (torch.nn.utils.clip_grad_norm_'s rule), NaN when the norm or *loss (when
// loss is not null) is not finite, so that an update reading it skips the step.
struct NormTensor {
  const void* p = nullptr;  // fp32, or bf16 when bf16
  int64_t n = 0;
  bool bf16 = false;
};
// Floats of workspace grad_norm_clip needs for `count` tensors.
int64_t grad_norm_clip_workspace(int count);
void grad_norm_clip(const NormTensor* tensors, int count, float* workspace, float max_norm, const float* loss, float* out,
                    cudaStream_t stream);

namespace ref {
void adamw_step(const AdamWTensor* tensors, int count, const AdamWHyper& h);
// Host pointers; `loss` may be null. Sums in double throughout: where the kernel's fp32 partial sums
// would overflow (|g| beyond ~1e19) the kernel reports a non-finite norm and the reference may not.
void grad_norm_clip(const NormTensor* tensors, int count, float max_norm, const float* loss, float* out);
}  // namespace ref

}  // namespace fathom::kernels
