// Hugging Face config.json (convert --to fathom, model.init_from): JSON -> read_hf_config (the
// model config, token ids, dtype), which may only throw HfError (any other exception, or UB such as an overflowing size product, is
// a finding).
#include <string>

#include <nlohmann/json.hpp>

#include "engine/checkpoint/hf_config.h"
#include "fuzz/fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const auto j = nlohmann::json::parse(data, data + size, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return 0;
  try {
    const fathom::ckpt::HfConfigInfo info = fathom::ckpt::read_hf_config(j, "config.json");
    if (info.model.vocab_size <= 0 || info.model.d_model <= 0 || info.model.n_layers <= 0 || info.model.n_heads <= 0)
      fathom::fuzz::fail("read_hf_config accepted a non-positive size");
  } catch (const fathom::ckpt::HfError&) {
  }
  return 0;
}
