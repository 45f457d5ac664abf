// Weight-only int8 GEMV (see fathom/kernels/int8_gemv.h): the one-segment case of the decode gemv
// (fathom/kernels/decode.h), which streams the int8 rows with 16-byte loads and applies each
// channel's scale once to its fp32 sum.
#include <stdexcept>

#include "fathom/kernels/decode.h"
#include "fathom/kernels/int8_gemv.h"

namespace fathom::kernels {

bool int8_gemv_supported(DType dt, int64_t B, int64_t K) { return B >= 1 && B <= 8 && K > 0 && K % 16 == 0; }

void int8_gemv(DType dt, const void* x, const int8_t* q, const void* scale, void* y, int64_t B, int64_t N, int64_t K,
               cudaStream_t stream) {
  if (!int8_gemv_supported(dt, B, K)) throw std::invalid_argument("int8_gemv: needs 1 <= B <= 8 and K % 16 == 0");
  if (N <= 0) return;
  GemvArgs a;
  a.x = x;
  a.y = y;
  a.B = B;
  a.K = K;
  a.seg[0] = GemvSegment{q, scale, nullptr, N};
  a.segments = 1;
  a.int8 = true;
  gemv(dt, a, stream);
}

}  // namespace fathom::kernels
