// torch::Tensor <-> safetensors files. Saving streams one tensor at a time (GPU tensors are
// staged to host memory one by one); loading returns owning CPU tensors copied out of the map.
#pragma once
#include <torch/types.h>

#include <map>
#include <string>
#include <utility>
#include <vector>

#include "engine/checkpoint/safetensors.h"

namespace fathom::ckpt {

using NamedTensors = std::vector<std::pair<std::string, torch::Tensor>>;

// bool, uint8, int8, int16, int32, int64, float16, bfloat16, float32, float64 (and, on LibTorch
// >= 2.1, float8_e4m3fn/float8_e5m2; >= 2.3, uint16/32/64). Throws std::invalid_argument naming
// the torch type for anything else (complex, quantized, ...).
DType dtype_from_torch(c10::ScalarType type);
// Throws SafetensorsError(DTYPE) when this LibTorch has no such type (e.g. U32 on 1.13).
c10::ScalarType torch_from_dtype(DType dtype);
bool torch_supports(DType dtype);

// Writes `tensors` (any device, any strides; sparse is refused) to path. Tensors that are CPU and
// contiguous are written from their memory; others are copied to host one at a time while
// writing. The byte layout is the reference one (see SafetensorsWriter). Throws SafetensorsError
// or std::invalid_argument with the path and tensor name.
WriteResult save_tensors(const std::string& path, const NamedTensors& tensors,
                         const std::map<std::string, std::string>& metadata = {},
                         const WriteOptions& options = {});

// Loads every tensor as an owning, contiguous CPU tensor (the map is released on return), in
// file order (by offset; the writer orders by dtype then name, not by insertion).
NamedTensors load_tensors(const std::string& path);
std::map<std::string, torch::Tensor> load_tensors_map(const std::string& path);

// Copies one tensor out of an open file.
torch::Tensor tensor_from_file(const SafetensorsFile& file, const TensorInfo& info);

}  // namespace fathom::ckpt
