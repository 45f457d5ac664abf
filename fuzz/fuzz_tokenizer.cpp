// tokenizer.json (Hugging Face; also our own BPE files): Tokenizer::load_hf on the input, or, when
// the input holds a "\n#vocab.bpe\n" line, GPT-2's encoder.json (before it) + vocab.bpe (after it)
// through Tokenizer::load_gpt2. Loading may only throw TokenizerError; a tokenizer that loads must encode text (the input itself) and give
// the bytes back: decode(encode(x)) == x unless it normalises (NFC) or has added tokens that strip
// white space (lstrip/rstrip swallow it, as in Hugging Face), and the streaming decoder must agree.
#include <string>
#include <string_view>
#include <vector>

#include "engine/tokenizer/tokenizer.h"
#include "fuzz/fuzz_util.h"

using fathom::tok::Tokenizer;
using fathom::tok::TokenizerError;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view input(reinterpret_cast<const char*>(data), size);
  static constexpr std::string_view kSplit = "\n#vocab.bpe\n";
  const size_t split = input.find(kSplit);
  Tokenizer t;
  try {
    if (split == std::string_view::npos) {
      fathom::fuzz::MemFile file(data, size, "tokenizer.json");
      t = Tokenizer::load_hf(file.path());
    } else {
      fathom::fuzz::MemFile encoder(data, split, "encoder.json");
      const std::string_view merges = input.substr(split + kSplit.size());
      fathom::fuzz::MemFile bpe(merges.data(), merges.size(), "vocab.bpe");
      t = Tokenizer::load_gpt2(encoder.path(), bpe.path());
    }
  } catch (const TokenizerError&) {
    return 0;
  }
  bool exact = t.summary().find(", NFC") == std::string::npos;
  for (const auto& a : t.added_tokens()) exact &= !a.lstrip && !a.rstrip;
  const std::string_view text(reinterpret_cast<const char*>(data), size < 512 ? size : 512);
  const std::string samples[] = {std::string(text), "Hello, world! It's 2026 \xc3\xa9t\xc3\xa9 <|endoftext|>  \n\t x", "\xff\xfe\x80"};
  for (const std::string& s : samples) {
    const auto ids = t.encode(s);
    const auto special = t.encode_with_special(s);
    for (uint32_t id : ids)
      if (id >= t.vocab_size()) fathom::fuzz::fail("encode gave an id outside the vocabulary");
    const std::string back = t.decode(ids);
    if (exact && back != s)
      fathom::fuzz::fail("decode(encode(x)) != x:", s + " -> " + back);
    (void)t.decode(special);
    fathom::tok::Utf8StreamDecoder stream(t);
    std::string streamed;
    for (uint32_t id : ids) streamed += stream.push(id);
    streamed += stream.finish();
    if (streamed != back) fathom::fuzz::fail("streamed decode differs from decode");
  }
  return 0;
}
