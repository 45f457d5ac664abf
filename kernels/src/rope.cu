// Rotary embedding apply, forward and backward (see fathom/kernels/rope.h). One thread per
// (row, VP consecutive rotation pairs): it loads VP elements of each half (one vector load each
// where alignment allows), the fp32 cos/sin of its position (shared by all heads: cache hits),
// and writes both halves. Rows are enumerated head-fastest, matching the (B, T, H, hd) memory
// of the model's transposed q/k views so that neighbouring threads touch neighbouring bytes.
#include <algorithm>

#include "device_util.cuh"
#include "fathom/kernels/rope.h"

namespace fathom::kernels {
namespace {
using namespace detail;

template <typename T, int VP>
struct alignas(sizeof(T) * VP) Vec {
  T v[VP];
};

template <typename T, int VP>
__global__ void rope_kernel(RopeArgs a, int64_t total) {
  using V = Vec<T, VP>;
  const int64_t half = a.hd / 2;
  const int64_t groups = half / VP;
  const int64_t idx = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (idx >= total) return;
  const int64_t g = idx % groups;
  const int64_t row = idx / groups;
  const int64_t h = row % a.H;
  const int64_t t = (row / a.H) % a.T;
  const int64_t b = row / (a.H * a.T);
  const int64_t pos = a.positions != nullptr ? a.positions[b * a.T + t] : a.offset + t;
  const int64_t i0 = g * VP;
  const T* xr = static_cast<const T*>(a.x) + b * a.x_sb + h * a.x_sh + t * a.x_st;
  T* yr = static_cast<T*>(a.y) + b * a.y_sb + h * a.y_sh + t * a.y_st;
  const float* c = a.cos + pos * a.hd;
  const float* s = a.sin + pos * a.hd;
  const V x1 = *reinterpret_cast<const V*>(xr + i0);
  const V x2 = *reinterpret_cast<const V*>(xr + i0 + half);
  V y1, y2;
#pragma unroll
  for (int j = 0; j < VP; ++j) {
    const int64_t i = i0 + j;
    const float a1 = to_f32(x1.v[j]), a2 = to_f32(x2.v[j]);
    const float c1 = c[i], c2 = c[i + half], s1 = s[i], s2 = s[i + half];
    if (!a.backward) {
      y1.v[j] = from_f32<T>(a1 * c1 - a2 * s1);
      y2.v[j] = from_f32<T>(a2 * c2 + a1 * s2);
    } else {
      y1.v[j] = from_f32<T>(a1 * c1 + a2 * s2);
      y2.v[j] = from_f32<T>(a2 * c2 - a1 * s1);
    }
  }
  *reinterpret_cast<V*>(yr + i0) = y1;
  *reinterpret_cast<V*>(yr + i0 + half) = y2;
}

// The widest vector (≤ 16 bytes) that every row start and half offset allows.
int pick_vp(const RopeArgs& a, size_t elem) {
  for (int vp = static_cast<int>(16 / elem); vp > 1; vp /= 2) {
    const size_t bytes = static_cast<size_t>(vp) * elem;
    const bool ok = (a.hd / 2) % vp == 0 && a.x_sb % vp == 0 && a.x_sh % vp == 0 && a.x_st % vp == 0 && a.y_sb % vp == 0 &&
                    a.y_sh % vp == 0 && a.y_st % vp == 0 && reinterpret_cast<uintptr_t>(a.x) % bytes == 0 &&
                    reinterpret_cast<uintptr_t>(a.y) % bytes == 0;
    if (ok) return vp;
  }
  return 1;
}

template <typename T, int VP>
void launch(const RopeArgs& a, cudaStream_t stream) {
  const int64_t total = a.B * a.H * a.T * (a.hd / 2 / VP);
  constexpr int threads = 256;
  rope_kernel<T, VP><<<static_cast<unsigned>(ceil_div(total, threads)), threads, 0, stream>>>(a, total);
}

}  // namespace

void rope_apply(DType dt, const RopeArgs& a, cudaStream_t stream) {
  if (a.hd % 2 != 0) throw std::invalid_argument("rope_apply: odd head width " + std::to_string(a.hd));
  if (a.B * a.H * a.T == 0 || a.hd == 0) return;
  const int vp = pick_vp(a, dtype_size(dt));
  FATHOM_DISPATCH_DTYPE(dt, {
    switch (vp) {
      case 8: launch<T, 8>(a, stream); break;
      case 4: launch<T, 4>(a, stream); break;
      case 2: launch<T, 2>(a, stream); break;
      default: launch<T, 1>(a, stream); break;
    }
  });
  check_launch("rope_apply");
}

}  // namespace fathom::kernels
