// Hand-written scanners equivalent to the pre-tokenizer regexes of GPT-2, Qwen2/Qwen3 and Llama 3
// (no regex engine: the GPU machine has neither pcre2 nor ICU, and a scanner is several times
// faster). Only these exact patterns are supported; pretokenizer_from_regex() names the others.
#pragma once
#include <cstddef>
#include <optional>
#include <string>
#include <string_view>

namespace fathom::tok {

enum class PreTokenizerKind {
  // 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
  kGpt2,
  // (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+
  kQwen2,
  // As kQwen2 with \p{N}{1,3} (Llama 3 / tiktoken cl100k style digit groups).
  kLlama3,
};

// The regex source text of a kind, exactly as it appears in a tokenizer.json.
const std::string& pretokenizer_regex(PreTokenizerKind kind);
// Maps a Split pre-tokenizer regex from a tokenizer.json to a kind we implement.
std::optional<PreTokenizerKind> pretokenizer_from_regex(std::string_view regex);
const char* pretokenizer_name(PreTokenizerKind kind);  // "gpt2" | "qwen2" | "llama3"

// End (exclusive byte offset) of the piece that starts at `pos` (< text.size()). Pieces tile the
// text: calling this repeatedly from 0 visits every byte exactly once, in order.
size_t pretokenize_next(PreTokenizerKind kind, std::string_view text, size_t pos);

// Calls fn(std::string_view piece) for each piece of `text`.
template <class Fn>
void pretokenize(PreTokenizerKind kind, std::string_view text, Fn&& fn) {
  size_t pos = 0;
  while (pos < text.size()) {
    const size_t end = pretokenize_next(kind, text, pos);
    fn(text.substr(pos, end - pos));
    pos = end;
  }
}

}  // namespace fathom::tok
