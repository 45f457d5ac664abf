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
};

void adamw_step(const AdamWTensor* tensors, int count, const AdamWHyper& h, cudaStream_t stream);

namespace ref {
void adamw_step(const AdamWTensor* tensors, int count, const AdamWHyper& h);
}  // namespace ref

}  // namespace fathom::kernels
