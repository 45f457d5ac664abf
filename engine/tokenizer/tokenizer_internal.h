// Internal to fathom_tokenizer: the parts every loader and the trainer hand to one builder, which
// validates them and produces the immutable Tokenizer state. Not for use outside engine/tokenizer.
#pragma once
#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "engine/tokenizer/pretokenizer.h"
#include "engine/tokenizer/tokenizer.h"

namespace fathom::tok {

struct TokenizerParts {
  std::string kind;    // "bpe" | "gpt2" | "hf"
  std::string source;  // file it came from, for error messages ("" when trained)
  std::vector<std::pair<uint32_t, std::string>> vocab;    // model vocabulary: id, raw bytes
  std::vector<std::pair<uint32_t, uint32_t>> merges;      // by rank: left id, right id
  std::vector<AddedToken> added;
  PreTokenizerKind pretokenizer = PreTokenizerKind::kGpt2;
  bool add_prefix_space = false;
  bool nfc = false;
  bool ignore_merges = false;
  std::optional<std::string> eos_token;  // content of the eos token, when known
};

struct TokenizerBuilder {
  // Throws TokenizerError (naming parts.source) when the parts are inconsistent.
  static Tokenizer build(TokenizerParts parts);
  // The parts back (for save()); build(parts_of(t)) encodes exactly as t.
  static TokenizerParts parts_of(const Tokenizer& tokenizer);
};

// GPT-2's reversible byte <-> printable-character mapping (bytes_to_unicode in encoder.py):
// printable Latin-1 bytes map to themselves, the other 68 to U+0100.. in byte order.
const std::array<uint32_t, 256>& byte_to_unicode();
// Byte-level spelling of raw bytes ("Ġthe" for " the").
std::string bytes_to_byte_level(std::string_view bytes);
// Inverse; nullopt when a character is outside the 256-character alphabet.
std::optional<std::string> byte_level_to_bytes(std::string_view text);

// Leftmost-longest matcher for added tokens (Hugging Face uses Aho-Corasick in the same mode).
class AddedTokenMatcher {
 public:
  struct Match {
    size_t text_end;   // where the plain text before the match ends (lstrip moves it left)
    size_t match_end;  // where the text after the match resumes (rstrip moves it right)
    uint32_t id;
  };
  AddedTokenMatcher() = default;
  explicit AddedTokenMatcher(const std::vector<const AddedToken*>& tokens);
  bool empty() const { return tokens_.empty(); }
  // The first match at or after `pos`, or nullopt.
  std::optional<Match> find(std::string_view text, size_t pos) const;

 private:
  std::vector<const AddedToken*> tokens_;  // longest first
  std::array<bool, 256> first_byte_{};
};

}  // namespace fathom::tok
