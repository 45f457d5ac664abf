// Activation checkpointing (Chen et al. 2016) for LibTorch C++, which lacks torch.utils.checkpoint:
// the wrapped function runs without saving activations; backward re-runs it with autograd on and
// back-propagates through the recomputed graph. Inputs must be tensors; the function must be
// deterministic (no dropout RNG here).
#pragma once
#include <torch/torch.h>

#include <functional>

namespace fathom::model {

using CheckpointedFn = std::function<torch::autograd::variable_list(const torch::autograd::variable_list&)>;

// Returns fn(inputs), recomputing fn during backward instead of keeping its activations.
// Parameters used inside fn receive their gradients as usual.
torch::autograd::variable_list checkpoint(CheckpointedFn fn, const torch::autograd::variable_list& inputs);

// True while backward re-runs a checkpointed function on this thread: code with side effects
// (MoE load counters) skips them so each forward counts once.
bool checkpoint_recomputing();

}  // namespace fathom::model
