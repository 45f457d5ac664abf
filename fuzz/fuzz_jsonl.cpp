// JSONL instruction datasets (data.task: instruct): read_instruct_jsonl on the input, which may only
// throw std::runtime_error; every example it returns is rendered with each chat template, tokenised
// (with truncation) and packed, checking the shapes the trainer relies on.
#include <stdexcept>
#include <string>
#include <vector>

#include "engine/data/instruct.h"
#include "fuzz/fuzz_util.h"
#include "fuzz/tiny_tokenizer.h"

using namespace fathom::data;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const auto& tok = fathom::fuzz::tiny_tokenizer();
  fathom::fuzz::MemFile file(data, size, "train.jsonl");
  std::vector<InstructExample> examples;
  try {
    examples = read_instruct_jsonl(file.path());
  } catch (const std::runtime_error&) {
    return 0;
  }
  if (examples.empty()) fathom::fuzz::fail("read_instruct_jsonl returned no examples without an error");
  if (examples.size() > 8) examples.resize(8);
  for (const char* tmpl : {"plain", "chatml", "llama3", "deepseek"}) {
    std::vector<EncodedExample> encoded;
    for (const auto& ex : examples) {
      if (ex.turns.empty()) fathom::fuzz::fail("an example without turns");
      const auto pieces = render_example(ex, tmpl, tok);
      EncodedExample e = encode_example(pieces, tok, 48);
      if (e.ids.size() != e.train.size()) fathom::fuzz::fail("ids and train mask differ in length");
      if (static_cast<int64_t>(e.ids.size()) > 48) fathom::fuzz::fail("encode_example ignored max_tokens");
      for (int64_t id : e.ids)
        if (id < 0 || static_cast<size_t>(id) >= tok.vocab_size()) fathom::fuzz::fail("token id out of range");
      encoded.push_back(std::move(e));
    }
    for (bool packing : {true, false}) {
      const PackedRows rows = pack_examples(encoded, 16, packing, 0);
      const size_t n = static_cast<size_t>(rows.rows()) * 16;
      if (rows.tokens.size() != n || rows.targets.size() != n || rows.segments.size() != n || rows.positions.size() != n)
        fathom::fuzz::fail("packed rows have inconsistent sizes");
      for (size_t i = 0; i < n; ++i) {
        if (rows.targets[i] != -100 && (rows.targets[i] < 0 || static_cast<size_t>(rows.targets[i]) >= tok.vocab_size()))
          fathom::fuzz::fail("packed target out of range");
        if (rows.positions[i] < 0 || rows.positions[i] >= 16) fathom::fuzz::fail("packed position out of range");
      }
    }
  }
  return 0;
}
