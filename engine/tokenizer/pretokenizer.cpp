// Scanners for the pre-tokenizer patterns. Each alternative of a pattern is tried in order at the
// current position, exactly as a backtracking regex engine would (leftmost alternative wins, not
// the longest), so the pieces equal Oniguruma's / Python regex's matches. \s is the Unicode
// White_Space property, \p{L} and \p{N} the general categories L* and N*.
#include "engine/tokenizer/pretokenizer.h"

#include "engine/tokenizer/unicode.h"

namespace fathom::tok {
namespace {

using unicode::Char;
using unicode::CharClass;

struct Scan {
  const char* s;
  size_t n;

  Char at(size_t i) const {
    const auto b = static_cast<uint8_t>(s[i]);
    if (b < 0x80) return {b, 1, true};
    return unicode::decode_utf8(s + i, s + n);
  }
  CharClass cls(size_t i) const { return unicode::char_class(at(i)); }

  // End of the maximal run of characters of class `c` starting at i.
  size_t run(size_t i, CharClass c) const {
    while (i < n) {
      const Char ch = at(i);
      if (unicode::char_class(ch) != c) break;
      i += ch.len;
    }
    return i;
  }
  // Like run(), stopping after `max_count` characters.
  size_t run_max(size_t i, CharClass c, int max_count) const {
    for (int k = 0; k < max_count && i < n; ++k) {
      const Char ch = at(i);
      if (unicode::char_class(ch) != c) break;
      i += ch.len;
    }
    return i;
  }

  // 's|'t|'re|'ve|'m|'ll|'d at i (s[i] == '\''). Returns the end or 0. Case-insensitive matching
  // follows Unicode simple case folding, where U+017F LATIN SMALL LETTER LONG S folds to 's'.
  size_t contraction(size_t i, bool ignore_case) const {
    if (i + 1 >= n) return 0;
    auto lower = [&](char c) -> char {
      return (ignore_case && c >= 'A' && c <= 'Z') ? char(c - 'A' + 'a') : c;
    };
    const char c1 = lower(s[i + 1]);
    if (c1 == 's' || c1 == 't' || c1 == 'm' || c1 == 'd') return i + 2;
    if (ignore_case && c1 == '\xC5' && i + 2 < n && s[i + 2] == '\xBF') return i + 3;  // 'ſ
    if (i + 2 >= n) return 0;
    const char c2 = lower(s[i + 2]);
    if ((c1 == 'r' && c2 == 'e') || (c1 == 'v' && c2 == 'e') || (c1 == 'l' && c2 == 'l')) {
      return i + 3;
    }
    return 0;
  }

  // Shared tail of both patterns once the character at i is white space:
  // \s+(?!\S)|\s+ : a run followed by end of text is taken whole; a longer run followed by a
  // non-space gives back its last character (which then prefixes the next piece); a single
  // white-space character before a non-space stands alone.
  size_t whitespace_tail(size_t i) const {
    size_t end = i, last_start = i;
    while (end < n) {
      const Char ch = at(end);
      if (unicode::char_class(ch) != unicode::kSpace) break;
      last_start = end;
      end += ch.len;
    }
    if (end == n) return end;
    return last_start > i ? last_start : end;
  }
};

size_t gpt2_next(const Scan& sc, size_t i) {
  const Char c = sc.at(i);
  // 's|'t|'re|'ve|'m|'ll|'d
  if (c.cp == '\'' && c.valid) {
    if (size_t e = sc.contraction(i, false)) return e;
  }
  const CharClass cc = unicode::char_class(c);
  // ' ?' then \p{L}+ | \p{N}+ | [^\s\p{L}\p{N}]+
  size_t j = i;
  CharClass target = cc;
  if (c.cp == ' ' && i + 1 < sc.n) {
    const CharClass next = sc.cls(i + 1);
    if (next != unicode::kSpace) {
      j = i + 1;
      target = next;
    }
  }
  if (target != unicode::kSpace) return sc.run(j, target);
  // \s+(?!\S)|\s+
  return sc.whitespace_tail(i);
}

size_t qwen_next(const Scan& sc, size_t i, int max_digits) {
  const Char c = sc.at(i);
  // (?i:'s|'t|'re|'ve|'m|'ll|'d)
  if (c.cp == '\'' && c.valid) {
    if (size_t e = sc.contraction(i, true)) return e;
  }
  const CharClass cc = unicode::char_class(c);
  // [^\r\n\p{L}\p{N}]?\p{L}+
  if (cc == unicode::kLetter) return sc.run(i, unicode::kLetter);
  const bool is_newline = c.valid && (c.cp == '\r' || c.cp == '\n');
  if (cc != unicode::kNumber && !is_newline && i + c.len < sc.n &&
      sc.cls(i + c.len) == unicode::kLetter) {
    return sc.run(i + c.len, unicode::kLetter);
  }
  // \p{N} (Llama 3: \p{N}{1,3})
  if (cc == unicode::kNumber) return sc.run_max(i, unicode::kNumber, max_digits);
  //  ?[^\s\p{L}\p{N}]+[\r\n]*
  size_t j = SIZE_MAX;
  if (cc == unicode::kOther) {
    j = i;
  } else if (c.cp == ' ' && i + 1 < sc.n && sc.cls(i + 1) == unicode::kOther) {
    j = i + 1;
  }
  if (j != SIZE_MAX) {
    size_t e = sc.run(j, unicode::kOther);
    while (e < sc.n && (sc.s[e] == '\r' || sc.s[e] == '\n')) ++e;
    return e;
  }
  // Here c is white space. \s*[\r\n]+ : the run up to and including its last \r or \n.
  size_t end = i, last_newline_end = 0;
  while (end < sc.n) {
    const Char ch = sc.at(end);
    if (unicode::char_class(ch) != unicode::kSpace) break;
    end += ch.len;
    if (ch.cp == '\r' || ch.cp == '\n') last_newline_end = end;
  }
  if (last_newline_end != 0) return last_newline_end;
  // \s+(?!\S)|\s+
  return sc.whitespace_tail(i);
}

const std::string kGpt2Regex =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";
const std::string kQwen2Regex =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
const std::string kLlama3Regex =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";

}  // namespace

const std::string& pretokenizer_regex(PreTokenizerKind kind) {
  switch (kind) {
    case PreTokenizerKind::kGpt2: return kGpt2Regex;
    case PreTokenizerKind::kQwen2: return kQwen2Regex;
    case PreTokenizerKind::kLlama3: return kLlama3Regex;
  }
  return kGpt2Regex;
}

std::optional<PreTokenizerKind> pretokenizer_from_regex(std::string_view regex) {
  if (regex == kGpt2Regex) return PreTokenizerKind::kGpt2;
  if (regex == kQwen2Regex) return PreTokenizerKind::kQwen2;
  if (regex == kLlama3Regex) return PreTokenizerKind::kLlama3;
  return std::nullopt;
}

const char* pretokenizer_name(PreTokenizerKind kind) {
  switch (kind) {
    case PreTokenizerKind::kGpt2: return "gpt2";
    case PreTokenizerKind::kQwen2: return "qwen2";
    case PreTokenizerKind::kLlama3: return "llama3";
  }
  return "?";
}

size_t pretokenize_next(PreTokenizerKind kind, std::string_view text, size_t pos) {
  const Scan sc{text.data(), text.size()};
  switch (kind) {
    case PreTokenizerKind::kGpt2: return gpt2_next(sc, pos);
    case PreTokenizerKind::kQwen2: return qwen_next(sc, pos, 1);
    case PreTokenizerKind::kLlama3: return qwen_next(sc, pos, 3);
  }
  return text.size();
}

}  // namespace fathom::tok
