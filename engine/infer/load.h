// Loading a model for inference (generate, serve, lora merge): a Fathom checkpoint (or its run
// or checkpoints directory: the latest), a Hugging Face directory, or a LoRA adapter (a fine-tune
// checkpoint or a PEFT directory: its base is loaded and the adapter merged in).
#pragma once
#include <torch/torch.h>

#include <string>
#include <vector>

#include "engine/config/config.h"
#include "engine/model/transformer.h"
#include "engine/tokenizer/tokenizer.h"

namespace fathom::infer {

struct LoadedModel {
  model::Transformer net{nullptr};
  tok::Tokenizer tokenizer;
  config::RunConfig config;  // model and tokenizer sections as loaded
  std::string base;          // the weights' directory
  std::string adapter;       // merged adapter directory ("" = none)
};

// The base model alone, in fp32 on the CPU, with its weights (and MoE routing biases).
LoadedModel load_base(const std::string& base);

// True when `dir` holds adapter_config.json (a PEFT adapter or a Fathom fine-tune checkpoint).
bool is_adapter_dir(const std::string& dir);
// The base an adapter was trained on: the checkpoint's state.json "base", else PEFT's
// base_model_name_or_path ("" when neither names one).
std::string adapter_base(const std::string& adapter_dir);

// Any of the forms above, ready to run: adapters merged, converted to dtype and moved to device.
LoadedModel load_for_inference(const std::string& path, const torch::Device& device, torch::ScalarType dtype,
                               const std::string& base_override = "");

// `--device auto|cpu|cuda` and `--precision fp32|bf16|fp16` of generate / serve / bench infer, and
// the process setting inference wants: one intra-op thread (on the CPU OpenBLAS's own threads do
// the GEMMs; on a GPU the host only samples).
struct InferenceTarget {
  torch::Device device{torch::kCPU};
  torch::ScalarType dtype = torch::kFloat32;
};
InferenceTarget inference_target(const std::string& device, const std::string& precision);

// Serving several LoRA adapters over one base without merging them: each adapter directory (a PEFT
// adapter or a Fathom fine-tune checkpoint) is loaded into the adapter banks of the base's linear
// layers (model::AdapterRows picks one per request). Adapter g = adapter_dirs[g]. Refuses an
// adapter whose layers the base lacks or whose shapes differ, and adapters on MoE experts.
// Call after the model reached its dtype and device, before quantize_for_serving.
void install_adapter_bank(LoadedModel& m, const std::vector<std::string>& adapter_dirs);

// Weight quantisation for serving: "none", "int8" (weight-only, per output channel; dequantised
// in the matmul) or "dynamic_int8" (activations quantised per row too; integer matmul where the
// device has one — see model::LinearImpl::quantize_dynamic_int8). The LM head stays exact.
// Returns a one-line summary (layers, bytes before → after, kernel).
std::string quantize_for_serving(LoadedModel& m, const std::string& mode);

}  // namespace fathom::infer
