// safetensors files (checkpoints, Hugging Face weights): the input is a whole file. parse_header
// on its header bytes (against the input's own size and a few others), then the real reader
// (SafetensorsFile: length prefix, mmap, header, data()) on an in-memory file.
#include <cstring>
#include <string>

#include "engine/checkpoint/safetensors.h"
#include "fuzz/fuzz_util.h"

using namespace fathom::ckpt;

namespace {

void check(const SafetensorsHeader& h, uint64_t file_bytes) {
  // A header that parsed is self-consistent: contiguous tensors that end where the file ends.
  uint64_t at = 0;
  for (const auto& t : h.tensors) {
    if (t.begin != at || t.end < t.begin) fathom::fuzz::fail("accepted header has a hole/overlap");
    if (t.numel() * dtype_size(t.dtype) != t.nbytes()) fathom::fuzz::fail("accepted tensor size mismatch", t.name);
    at = t.end;
  }
  if (h.data_start() + h.data_bytes != file_bytes) fathom::fuzz::fail("accepted header does not cover the file");
  validate_header(h, "fuzz");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size >= 8) {
    uint64_t n;
    std::memcpy(&n, data, 8);
    if (n <= size - 8) {
      const char* json = reinterpret_cast<const char*>(data + 8);
      for (uint64_t file_bytes : {static_cast<uint64_t>(size), 8 + n, ~uint64_t{0}}) {
        try {
          check(parse_header(json, n, file_bytes, "fuzz"), file_bytes);
        } catch (const SafetensorsError&) {
        }
      }
    }
  }
  fathom::fuzz::MemFile file(data, size, "model.safetensors");
  try {
    SafetensorsFile f(file.path());
    check(f.header(), size);
    for (const auto& t : f.tensors()) {
      const auto b = f.data(t);
      if (b.size != t.nbytes()) fathom::fuzz::fail("data() size differs from the header", t.name);
      // Touch first and last byte: ASan reports reads outside the map.
      if (b.size) {
        volatile uint8_t x = b.data[0];
        x = b.data[b.size - 1];
        (void)x;
      }
      if (!f.contains(t.name)) fathom::fuzz::fail("contains() misses a listed tensor", t.name);
    }
    f.validate();
    (void)SafetensorsFile::read_header_only(file.path());
  } catch (const SafetensorsError&) {
  }
  return 0;
}
