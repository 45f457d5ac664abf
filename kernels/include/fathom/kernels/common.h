// What every kernel launcher shares: the element types, the stream type (forward-declared so
// this header needs no CUDA headers: the naive references and CPU builds include it too), and
// the runtime switch that turns the fused paths off.
#pragma once
#include <cstddef>
#include <cstdint>

// The same declaration as cuda_runtime_api.h's (a repeated identical typedef is legal C++).
struct CUstream_st;
typedef struct CUstream_st* cudaStream_t;

namespace fathom::kernels {

// Element type of activations and weights; statistics and accumulation are always fp32.
enum class DType { f32, f16, bf16 };

inline const char* dtype_name(DType t) {
  switch (t) {
    case DType::f32: return "fp32";
    case DType::f16: return "fp16";
    case DType::bf16: return "bf16";
  }
  return "?";
}
inline size_t dtype_size(DType t) { return t == DType::f32 ? 4 : 2; }

}  // namespace fathom::kernels
