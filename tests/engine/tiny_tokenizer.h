// A BPE tokenizer of 300 tokens trained on a sentence with multi-byte UTF-8 (umlauts, kanji, an em
// dash), for generation tests that need real detokenisation without the data cache.
#pragma once
#include "engine/tokenizer/tokenizer.h"

namespace fathom::testing {

inline tok::Tokenizer tiny_tokenizer() {
  tok::BpeTrainOptions bo;
  bo.vocab_size = 300;
  bo.threads = 1;
  return tok::train_bpe_from_texts(
      {"The lessee shall keep the premises in good repair. Überall grüßt der Bär — 東京 café naïve résumé. "
       "The Congress shall make no law respecting an establishment of religion."},
      bo);
}

}  // namespace fathom::testing
