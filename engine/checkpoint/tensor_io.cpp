// torch::Tensor <-> safetensors; see tensor_io.h.
#include "engine/checkpoint/tensor_io.h"

#include <torch/version.h>

#include <cstring>
#include <stdexcept>

// Element types LibTorch gained after 1.13 (the version on Debian 12); the GPU machines run 2.x.
#if TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 1)
#define FATHOM_TORCH_HAS_FLOAT8 1
#endif
#if TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 3)
#define FATHOM_TORCH_HAS_UINT 1
#endif

namespace fathom::ckpt {

namespace {

struct Mapping {
  DType dtype;
  c10::ScalarType type;
};

const std::vector<Mapping>& mappings() {
  static const std::vector<Mapping> m = {
      {DType::DTYPE_BOOL, c10::ScalarType::Bool},    {DType::DTYPE_U8, c10::ScalarType::Byte},
      {DType::DTYPE_I8, c10::ScalarType::Char},      {DType::DTYPE_I16, c10::ScalarType::Short},
      {DType::DTYPE_I32, c10::ScalarType::Int},      {DType::DTYPE_I64, c10::ScalarType::Long},
      {DType::DTYPE_F16, c10::ScalarType::Half},     {DType::DTYPE_BF16, c10::ScalarType::BFloat16},
      {DType::DTYPE_F32, c10::ScalarType::Float},    {DType::DTYPE_F64, c10::ScalarType::Double},
#ifdef FATHOM_TORCH_HAS_FLOAT8
      {DType::DTYPE_F8_E4M3, c10::ScalarType::Float8_e4m3fn}, {DType::DTYPE_F8_E5M2, c10::ScalarType::Float8_e5m2},
#endif
#ifdef FATHOM_TORCH_HAS_UINT
      {DType::DTYPE_U16, c10::ScalarType::UInt16},   {DType::DTYPE_U32, c10::ScalarType::UInt32},
      {DType::DTYPE_U64, c10::ScalarType::UInt64},
#endif
  };
  return m;
}

std::vector<int64_t> shape_of(const torch::Tensor& t) { return t.sizes().vec(); }

}  // namespace

DType dtype_from_torch(c10::ScalarType type) {
  for (const auto& m : mappings())
    if (m.type == type) return m.dtype;
  throw std::invalid_argument(std::string("torch dtype ") + c10::toString(type) +
                              " has no safetensors equivalent in this build; convert the tensor (e.g. to float32) "
                              "before saving.");
}

bool torch_supports(DType dtype) {
  for (const auto& m : mappings())
    if (m.dtype == dtype) return true;
  return false;
}

c10::ScalarType torch_from_dtype(DType dtype) {
  for (const auto& m : mappings())
    if (m.dtype == dtype) return m.type;
  throw SafetensorsError(SafetensorsErrc::SAFETENSORS_ERRC_DTYPE,
                         std::string("safetensors dtype ") + dtype_name(dtype) + " has no tensor type in LibTorch " +
                             TORCH_VERSION + "; use a LibTorch with it (float8 needs >= 2.1, uint16/32/64 >= 2.3) or "
                             "convert the file.");
}

WriteResult save_tensors(const std::string& path, const NamedTensors& tensors,
                         const std::map<std::string, std::string>& metadata, const WriteOptions& options) {
  SafetensorsWriter writer;
  std::vector<torch::Tensor> keep_alive;  // the writer borrows pointers until write() returns
  keep_alive.reserve(tensors.size());
  for (const auto& [name, t] : tensors) {
    const std::string where = path + ": tensor '" + name + "'";
    if (!t.defined()) throw std::invalid_argument(where + " is undefined (an empty torch::Tensor()).");
    if (t.layout() != c10::kStrided) {
      throw std::invalid_argument(where + " has a " + c10::str(t.layout()) +
                                  " layout; safetensors stores dense tensors: call .to_dense() first.");
    }
    if (t.is_quantized()) throw std::invalid_argument(where + " is quantized; dequantize it or store its int_repr().");
    DType dtype;
    try {
      dtype = dtype_from_torch(t.scalar_type());
    } catch (const std::invalid_argument& e) {
      throw std::invalid_argument(where + ": " + e.what());
    }
    const uint64_t nbytes = static_cast<uint64_t>(t.numel()) * t.element_size();
    torch::Tensor cpu = t.detach();
    if (cpu.is_cpu() && cpu.is_contiguous()) {
      keep_alive.push_back(cpu);
      writer.add(name, dtype, shape_of(cpu), nbytes ? cpu.data_ptr() : nullptr, nbytes);
    } else {
      // Staged when the writer reaches it, so at most one such copy is alive at a time.
      writer.add_streamed(name, dtype, shape_of(cpu), nbytes, [cpu](const SafetensorsWriter::Emit& emit) {
        const torch::Tensor host = cpu.to(c10::kCPU).contiguous();
        emit(host.numel() ? host.data_ptr() : nullptr, static_cast<uint64_t>(host.numel()) * host.element_size());
      });
    }
  }
  writer.set_metadata(metadata);
  return writer.write(path, options);
}

torch::Tensor tensor_from_file(const SafetensorsFile& file, const TensorInfo& info) {
  const c10::ScalarType type = [&] {
    try {
      return torch_from_dtype(info.dtype);
    } catch (const SafetensorsError& e) {
      throw SafetensorsError(e.code(), file.path() + ": tensor '" + info.name + "': " + e.what());
    }
  }();
  torch::Tensor t = torch::empty(info.shape, torch::TensorOptions().dtype(type).device(c10::kCPU));
  const auto bytes = file.data(info);
  if (bytes.size) std::memcpy(t.data_ptr(), bytes.data, bytes.size);
  if (info.dtype == DType::DTYPE_BOOL) {
    // torch assumes bool bytes are 0 or 1; anything else is undefined behaviour downstream.
    for (uint64_t i = 0; i < bytes.size; ++i) {
      if (bytes.data[i] > 1) {
        throw SafetensorsError(SafetensorsErrc::SAFETENSORS_ERRC_INVALID_DATA,
                               file.path() + ": BOOL tensor '" + info.name + "' holds byte " +
                                   std::to_string(bytes.data[i]) + " at element " + std::to_string(i) +
                                   "; booleans must be 0 or 1. The file is damaged.");
      }
    }
  }
  return t;
}

NamedTensors load_tensors(const std::string& path) {
  SafetensorsFile file(path);
  NamedTensors out;
  out.reserve(file.tensors().size());
  for (const auto& info : file.tensors()) out.emplace_back(info.name, tensor_from_file(file, info));
  return out;
}

std::map<std::string, torch::Tensor> load_tensors_map(const std::string& path) {
  std::map<std::string, torch::Tensor> out;
  for (auto& [name, t] : load_tensors(path)) out.emplace(std::move(name), std::move(t));
  return out;
}

}  // namespace fathom::ckpt
