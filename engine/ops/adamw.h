// Multi-tensor fused AdamW on CUDA (kernels/adamw, issue #10) for engine/train/optimizer: every
// parameter of a step updated in one pass (one launch per 48 tensors). Applicable to fp32, dense,
// same-device CUDA tensors with the kernels on; elsewhere the optimizer keeps its other paths.
#pragma once
#include <torch/types.h>

#include <functional>
#include <memory>
#include <vector>

namespace fathom::ops {

struct AdamWStep {
  double lr = 0, beta1 = 0.9, beta2 = 0.95, eps = 1e-8, weight_decay = 0;
  double step_size = 0;              // lr / (1 − β1ᵗ)
  double bias_correction2_sqrt = 1;  // sqrt(1 − β2ᵗ)
};

bool fused_adamw_applicable(const std::vector<torch::Tensor>& params, const std::vector<torch::Tensor>& grads,
                            const std::vector<torch::Tensor>& exp_avg, const std::vector<torch::Tensor>& exp_avg_sq);
// decay[i]: tensor i takes weight decay. grad_scale multiplies every gradient as it is read.
void fused_adamw_step(const std::vector<torch::Tensor>& params, const std::vector<torch::Tensor>& grads,
                      const std::vector<torch::Tensor>& exp_avg, const std::vector<torch::Tensor>& exp_avg_sq,
                      const std::vector<bool>& decay, const AdamWStep& s, double grad_scale = 1.0);

// Mixed precision (a bf16 model trained through fp32 masters): the same update of the fp32 masters
// and moments, reading the model's bf16 gradients (each times grad_scale, the clip coefficient) and
// writing the updated masters, rounded to bf16, into the model's parameters. One pass replaces
// three: gradients to fp32, the update, masters back to the model. CUDA with the kernels on; the
// tensors at index i all have masters[i]'s element count, contiguous, on one device.
bool fused_adamw_mixed_applicable(const std::vector<torch::Tensor>& masters, const std::vector<torch::Tensor>& grads_bf16,
                                  const std::vector<torch::Tensor>& exp_avg, const std::vector<torch::Tensor>& exp_avg_sq,
                                  const std::vector<torch::Tensor>& model_bf16);
// grad_scale_dev (optional): a 1-element fp32 CUDA tensor read by the kernel instead of grad_scale
// (grad_norm_clip's coefficient, element 1 of its result); a non-finite value skips the update.
void fused_adamw_mixed_step(const std::vector<torch::Tensor>& masters, const std::vector<torch::Tensor>& grads_bf16,
                            const std::vector<torch::Tensor>& exp_avg, const std::vector<torch::Tensor>& exp_avg_sq,
                            const std::vector<torch::Tensor>& model_bf16, const std::vector<bool>& decay, const AdamWStep& s,
                            double grad_scale, const torch::Tensor& grad_scale_dev = {});

// The gradients' global L2 norm and the clip coefficient, on the device with no host round trip
// (kernels/adamw's grad_norm_clip): returns a (2) fp32 tensor [norm, coefficient], the coefficient
// min(1, max_norm / (norm + 1e-6)) (1 when max_norm ≤ 0), NaN when the norm or `loss` (a 1-element
// fp32 tensor on the same device, optional) is not finite. Applicable to contiguous fp32/bf16
// tensors on one CUDA device with the kernels on; undefined gradients are skipped.
bool grad_norm_clip_applicable(const std::vector<torch::Tensor>& grads);
torch::Tensor grad_norm_clip(const std::vector<torch::Tensor>& grads, double max_norm, const torch::Tensor& loss = {});

// The update on a side stream, in groups, overlapped with the next step's forward (opt-in:
// FATHOM_OVERLAP_UPDATE=1, engine/train/trainer.cpp). run() queues `body` on the side stream after
// everything queued so far on the current stream; body calls done(g) after queuing group g's update.
// wait(g) makes the current stream wait for group g's update of the last run (the forward calls it
// before the parameters of group g are read); wait_all() for every group (before a checkpoint or an
// evaluation reads them). `side_reads` are tensors the side stream reads that the current stream may
// free meanwhile (the gradients): the allocator keeps them until the side stream is done. CUDA only;
// elsewhere every call is a no-op and run() runs body in place. side_runs(): how many run() calls went
// to the side stream (the trainer reports it, and the GPU test checks the overlap was on).
//
// Two switches for the GPU test only: FATHOM_TEST_OVERLAP_DELAY_CYCLES=N queues a spin of N GPU
// cycles on the side stream before each update (so that a missing wait or a gradient freed too early
// shows in the results instead of hiding behind a fast update); FATHOM_TEST_OVERLAP_SKIP_WAITS=1 makes
// wait(g) a no-op (wait_all() still waits), the negative control that must change the results.
class OverlappedUpdate {
 public:
  OverlappedUpdate(const torch::Device& device, int groups);
  void run(const std::function<void(const std::function<void(int)>& done)>& body, const std::vector<torch::Tensor>& side_reads);
  void wait(int group);
  void wait_all();
  int groups() const { return groups_; }
  int64_t side_runs() const { return side_runs_; }

 private:
  void wait_for(int group);
  int groups_;
  int64_t side_runs_ = 0;
  int64_t test_delay_cycles_ = 0;
  bool test_skip_waits_ = false;
  std::shared_ptr<void> state_;
};

// A few device values read by the host without waiting for work queued after them: the constructor
// queues their copy (into pinned memory) and an event on the current stream; get() waits for that
// event only (so an optimizer update queued after it keeps the GPU busy meanwhile). CPU tensors,
// or a build without CUDA: a plain copy.
class HostRead {
 public:
  explicit HostRead(const torch::Tensor& values);
  torch::Tensor get();  // the values, on the CPU

 private:
  torch::Tensor host_;
  std::shared_ptr<void> event_;
};

}  // namespace fathom::ops
