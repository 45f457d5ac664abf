// UTF-8 decoding that never fails, character classes for the pre-tokenizer regexes, and Unicode
// NFC. Invalid UTF-8 is carried through byte by byte, so every byte string survives a round trip.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace fathom::tok::unicode {

// The classes the GPT-2 / Qwen / Llama 3 patterns distinguish. An invalid UTF-8 byte is kOther
// (it is neither a letter, a number nor white space), which keeps it inside ` ?[^\s\p{L}\p{N}]+`.
enum CharClass : uint8_t { kOther = 0, kLetter = 1, kNumber = 2, kSpace = 3 };

struct Char {
  uint32_t cp;   // code point, or the raw byte value when !valid
  uint8_t len;   // bytes consumed, 1..4
  bool valid;
};

// Decodes one code point at p (p < end). Overlong forms, surrogates, values above U+10FFFF and
// truncated sequences yield {byte, 1, false}.
inline Char decode_utf8(const char* p, const char* end) {
  const auto b0 = static_cast<uint8_t>(p[0]);
  if (b0 < 0x80) return {b0, 1, true};
  auto cont = [&](int i) -> int {
    if (p + i >= end) return -1;
    const auto b = static_cast<uint8_t>(p[i]);
    return (b & 0xC0) == 0x80 ? (b & 0x3F) : -1;
  };
  if (b0 >= 0xC2 && b0 <= 0xDF) {
    const int c1 = cont(1);
    if (c1 >= 0) return {((b0 & 0x1Fu) << 6) | uint32_t(c1), 2, true};
  } else if (b0 >= 0xE0 && b0 <= 0xEF) {
    const int c1 = cont(1), c2 = c1 >= 0 ? cont(2) : -1;
    if (c2 >= 0) {
      const uint32_t cp = ((b0 & 0x0Fu) << 12) | (uint32_t(c1) << 6) | uint32_t(c2);
      if (cp >= 0x800 && (cp < 0xD800 || cp > 0xDFFF)) return {cp, 3, true};
    }
  } else if (b0 >= 0xF0 && b0 <= 0xF4) {
    const int c1 = cont(1), c2 = c1 >= 0 ? cont(2) : -1, c3 = c2 >= 0 ? cont(3) : -1;
    if (c3 >= 0) {
      const uint32_t cp =
          ((b0 & 0x07u) << 18) | (uint32_t(c1) << 12) | (uint32_t(c2) << 6) | uint32_t(c3);
      if (cp >= 0x10000 && cp <= 0x10FFFF) return {cp, 4, true};
    }
  }
  return {b0, 1, false};
}

// Offset of the first byte of `s` that is not strict UTF-8 (as decode_utf8 judges it), or npos.
inline size_t invalid_utf8_at(std::string_view s) {
  const char* const begin = s.data();
  const char* const end = begin + s.size();
  for (const char* p = begin; p < end;) {
    const Char c = decode_utf8(p, end);
    if (!c.valid) return static_cast<size_t>(p - begin);
    p += c.len;
  }
  return std::string_view::npos;
}

void append_utf8(std::string& out, uint32_t cp);

// Class of a valid code point; O(1) in the BMP, binary search above it.
CharClass char_class(uint32_t cp);
inline CharClass char_class(const Char& c) { return c.valid ? char_class(c.cp) : kOther; }

uint8_t combining_class(uint32_t cp);

// True when NFC leaves `text` unchanged for certain (the common case: ASCII, most Latin/CJK
// text); false means "run nfc()". Invalid bytes are left alone by nfc() and do not matter here.
bool nfc_quick_check(std::string_view text);

// Unicode Normalization Form C (UAX #15): canonical decomposition, canonical ordering, canonical
// composition. Maximal runs of valid UTF-8 are normalised independently; invalid bytes are
// copied unchanged and block composition across them.
std::string nfc(std::string_view text);

}  // namespace fathom::tok::unicode
