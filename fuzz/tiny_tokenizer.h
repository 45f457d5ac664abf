// A small byte-level BPE trained once per process, with the special tokens every chat template
// uses, for the harnesses that render and tokenise what they parsed.
#pragma once
#include <string>

#include "engine/tokenizer/tokenizer.h"

namespace fathom::fuzz {

inline const tok::Tokenizer& tiny_tokenizer() {
  static const tok::Tokenizer t = [] {
    tok::BpeTrainOptions o;
    o.vocab_size = 320;
    o.threads = 1;
    o.special_tokens = {"<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|begin_of_text|>",
                        "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"};
    const std::string text =
        "The assistant answers the user. A contract is an agreement between parties; the tenant must keep "
        "the premises in good repair. User: what is a lease? Assistant: a contract to rent property.\n";
    return tok::train_bpe_from_texts({text, text, text}, o);
  }();
  return t;
}

}  // namespace fathom::fuzz
