// Byte-level BPE tokenizers: GPT-2 (encoder.json + vocab.bpe), Hugging Face tokenizer.json
// (GPT-2-like, Qwen2/Qwen3, Llama 3 byte-level BPE) and our own, trained by train_bpe().
// Plain C++17 + nlohmann-json: no torch, no Qt, no regex engine, no ICU.
//
// Encoding pipeline (same order as Hugging Face `tokenizers`):
//   split out added tokens -> NFC (when the tokenizer.json asks for it) -> pre-tokenizer scanner
//   (GPT-2 / Qwen2 / Llama 3 pattern) -> byte-level BPE per piece, merges applied by rank.
// A tokenizer is immutable after loading and cheap to copy (shared state); every const method
// may be called from many threads at once.
#pragma once
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace fathom::tok {

// Thrown for every problem a user can cause: missing or malformed files, unsupported
// tokenizer.json components, bad options. what() names the file, the problem and a fix.
class TokenizerError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// An entry of tokenizer.json "added_tokens" (special or not).
struct AddedToken {
  uint32_t id = 0;
  std::string content;       // raw bytes, matched literally in the input
  bool special = true;       // special tokens are only recognised by encode_with_special()
  bool lstrip = false;       // the match swallows white space on its left
  bool rstrip = false;       // ... and on its right
  bool single_word = false;  // only matched when not inside a word
  bool normalized = false;   // kept for save(); matching is always on the raw input
};

class Tokenizer {
 public:
  Tokenizer();  // empty: vocab_size() == 0, encode/decode throw TokenizerError

  // A tokenizer.json file; or a directory holding tokenizer.json (Hugging Face, tokenizer_config.json
  // beside it is read for eos) or encoder.json + vocab.bpe (GPT-2).
  static Tokenizer load(const std::string& path);
  static Tokenizer load_gpt2(const std::string& encoder_json, const std::string& vocab_bpe);
  static Tokenizer load_hf(const std::string& tokenizer_json);

  // Writes a Hugging Face tokenizer.json (model.type BPE, byte-level pre-tokenizer and decoder,
  // added_tokens) that `tokenizers`/`transformers` load. Written to <path>.tmp, then renamed.
  void save(const std::string& path) const;

  // Added tokens that are not special (e.g. Qwen's <think>) are matched, as Hugging Face does;
  // special tokens such as <|endoftext|> are encoded as the plain text they spell.
  std::vector<uint32_t> encode(std::string_view text) const;
  // Special tokens too (<|endoftext|>, <|im_start|>, ...): for trusted text such as chat templates.
  std::vector<uint32_t> encode_with_special(std::string_view text) const;
  // Appending variants for hot loops (no allocation of the result vector).
  void encode_append(std::string_view text, std::vector<uint32_t>& out) const;
  void encode_with_special_append(std::string_view text, std::vector<uint32_t>& out) const;

  // Exact bytes: decode(encode(x)) == x for any byte string, invalid UTF-8 included, unless the
  // tokenizer normalises (NFC: Qwen2/3) and x is not already in NFC.
  // Throws TokenizerError for an id that is not in the vocabulary.
  std::string decode(const std::vector<uint32_t>& ids) const;
  // Raw bytes of one token (may be part of a UTF-8 sequence; see Utf8StreamDecoder).
  const std::string& token_bytes(uint32_t id) const;

  size_t vocab_size() const;  // including added tokens: max id + 1
  // Id of a token given as its raw bytes (" the", "<|endoftext|>"), not in the Ġ-spelling.
  std::optional<uint32_t> token_id(std::string_view token) const;
  // <|endoftext|> for GPT-2 and ours; for tokenizer.json the eos_token of tokenizer_config.json
  // beside it, else the first present of <|endoftext|>, <|im_end|>, </s>, <|end_of_text|>.
  std::optional<uint32_t> eos_id() const;
  std::string kind() const;  // "bpe" (ours) | "gpt2" | "hf"

  const std::vector<AddedToken>& added_tokens() const;
  bool is_special(uint32_t id) const;  // an added token with special == true
  size_t merges_count() const;
  // One line for logs: kind, vocab size, merges, pre-tokenizer, normaliser.
  std::string summary() const;

 private:
  struct Impl;
  friend struct TokenizerBuilder;
  std::shared_ptr<const Impl> impl_;
  const Impl& impl() const;
};

// Turns a stream of token ids into text pieces that never split a UTF-8 character, for printing
// tokens as they are generated. Invalid sequences are passed through as soon as they are known
// to be invalid, so concatenating every push() and finish() gives exactly decode(ids).
class Utf8StreamDecoder {
 public:
  explicit Utf8StreamDecoder(const Tokenizer& tokenizer) : tokenizer_(&tokenizer) {}
  std::string push(uint32_t id);  // the newly completed text (possibly empty)
  std::string finish();           // whatever is still pending (an incomplete tail)

 private:
  const Tokenizer* tokenizer_;
  std::string pending_;
};

struct BpeTrainOptions {
  size_t vocab_size = 4096;  // total, including the 256 byte tokens and special tokens
  size_t max_bytes = 0;      // train on at most this many input bytes (0: all)
  std::vector<std::string> special_tokens = {"<|endoftext|>"};
  int threads = 0;           // 0: all hardware threads
  std::function<void(double fraction, const std::string& stage)> progress;
};

// Trains a byte-level BPE with the GPT-2 pre-tokenizer on the files (read as raw bytes) or texts.
// Deterministic for given inputs and options, whatever `threads` is. The vocabulary can end up
// smaller than vocab_size when the corpus has no more pairs to merge.
Tokenizer train_bpe(const std::vector<std::string>& files, const BpeTrainOptions& options);
Tokenizer train_bpe_from_texts(const std::vector<std::string>& texts, const BpeTrainOptions& options);

}  // namespace fathom::tok
