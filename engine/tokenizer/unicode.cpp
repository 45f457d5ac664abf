// Character classes and NFC over the generated tables in unicode_tables.cpp.
// NFC follows UAX #15 §1.3 / the Unicode Standard ch. 3.11 (D109-D117), Hangul done algorithmically.
#include "engine/tokenizer/unicode.h"

#include <algorithm>
#include <array>
#include <vector>

#include "engine/tokenizer/unicode_tables.h"

namespace fathom::tok::unicode {
namespace {

bool in_ranges(const CodeRange* r, size_t n, uint32_t cp) {
  const CodeRange* end = r + n;
  const CodeRange* it =
      std::upper_bound(r, end, cp, [](uint32_t v, const CodeRange& x) { return v < x.first; });
  return it != r && cp <= (it - 1)->last;
}

CharClass slow_class(uint32_t cp) {
  if (in_ranges(kLetterRanges, kLetterRangesCount, cp)) return kLetter;
  if (in_ranges(kNumberRanges, kNumberRangesCount, cp)) return kNumber;
  if (in_ranges(kWhiteSpaceRanges, kWhiteSpaceRangesCount, cp)) return kSpace;
  return kOther;
}

// 64 KiB table for the BMP, built once on first use (thread-safe static init).
const std::array<uint8_t, 0x10000>& bmp_classes() {
  static const auto table = [] {
    std::array<uint8_t, 0x10000> t{};
    for (uint32_t cp = 0; cp < 0x10000; ++cp) t[cp] = slow_class(cp);
    return t;
  }();
  return table;
}

// Hangul syllable algorithm constants (Unicode Standard §3.12).
constexpr uint32_t kSBase = 0xAC00, kLBase = 0x1100, kVBase = 0x1161, kTBase = 0x11A7;
constexpr uint32_t kLCount = 19, kVCount = 21, kTCount = 28;
constexpr uint32_t kNCount = kVCount * kTCount, kSCount = kLCount * kNCount;

void decompose(uint32_t cp, std::vector<uint32_t>& out) {
  if (cp >= kSBase && cp < kSBase + kSCount) {
    const uint32_t s = cp - kSBase;
    out.push_back(kLBase + s / kNCount);
    out.push_back(kVBase + (s % kNCount) / kTCount);
    if (s % kTCount != 0) out.push_back(kTBase + s % kTCount);
    return;
  }
  const Decomposition* end = kDecompositions + kDecompositionsCount;
  const Decomposition* it = std::lower_bound(
      kDecompositions, end, cp, [](const Decomposition& d, uint32_t v) { return d.cp < v; });
  if (it == end || it->cp != cp) {
    out.push_back(cp);
    return;
  }
  decompose(it->first, out);  // canonical mappings nest a few levels at most
  if (it->second != 0) decompose(it->second, out);
}

// Primary composite of (first, second), or 0.
uint32_t compose(uint32_t first, uint32_t second) {
  if (first >= kLBase && first < kLBase + kLCount && second >= kVBase &&
      second < kVBase + kVCount) {
    return kSBase + ((first - kLBase) * kVCount + (second - kVBase)) * kTCount;
  }
  if (first >= kSBase && first < kSBase + kSCount && (first - kSBase) % kTCount == 0 &&
      second > kTBase && second < kTBase + kTCount) {
    return first + (second - kTBase);
  }
  const Composition* end = kCompositions + kCompositionsCount;
  const Composition* it =
      std::lower_bound(kCompositions, end, std::make_pair(first, second),
                       [](const Composition& c, const std::pair<uint32_t, uint32_t>& v) {
                         return c.first != v.first ? c.first < v.first : c.second < v.second;
                       });
  return (it != end && it->first == first && it->second == second) ? it->composite : 0;
}

// Normalises one run of valid code points and appends it as UTF-8.
void nfc_run(std::vector<uint32_t>& cps, std::vector<uint32_t>& scratch, std::string& out) {
  // 1. Full canonical decomposition.
  scratch.clear();
  for (uint32_t cp : cps) decompose(cp, scratch);
  // 2. Canonical ordering: stable sort of each run of non-starters by combining class.
  for (size_t i = 0; i < scratch.size();) {
    if (combining_class(scratch[i]) == 0) {
      ++i;
      continue;
    }
    size_t j = i;
    while (j < scratch.size() && combining_class(scratch[j]) != 0) ++j;
    std::stable_sort(scratch.begin() + long(i), scratch.begin() + long(j),
                     [](uint32_t a, uint32_t b) { return combining_class(a) < combining_class(b); });
    i = j;
  }
  // 3. Canonical composition: each character C is combined with the last starter L when C is
  // not blocked from L (no character between them with ccc 0 or ccc >= ccc(C)).
  size_t starter = SIZE_MAX;  // index in the output run of the last starter
  int last_ccc = -1;          // ccc of the last character kept after the starter (-1: none)
  size_t w = 0;
  for (size_t r = 0; r < scratch.size(); ++r) {
    const uint32_t c = scratch[r];
    const int ccc = combining_class(c);
    if (starter != SIZE_MAX && (last_ccc == -1 || (last_ccc != 0 && last_ccc < ccc))) {
      const uint32_t comp = compose(scratch[starter], c);
      if (comp != 0) {
        scratch[starter] = comp;
        continue;  // C is consumed; last_ccc unchanged
      }
    }
    if (ccc == 0) {
      starter = w;
      last_ccc = -1;
    } else {
      last_ccc = ccc;
    }
    scratch[w++] = c;
  }
  scratch.resize(w);
  for (uint32_t cp : scratch) append_utf8(out, cp);
}

}  // namespace

void append_utf8(std::string& out, uint32_t cp) {
  if (cp < 0x80) {
    out.push_back(char(cp));
  } else if (cp < 0x800) {
    out.push_back(char(0xC0 | (cp >> 6)));
    out.push_back(char(0x80 | (cp & 0x3F)));
  } else if (cp < 0x10000) {
    out.push_back(char(0xE0 | (cp >> 12)));
    out.push_back(char(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(char(0x80 | (cp & 0x3F)));
  } else {
    out.push_back(char(0xF0 | (cp >> 18)));
    out.push_back(char(0x80 | ((cp >> 12) & 0x3F)));
    out.push_back(char(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(char(0x80 | (cp & 0x3F)));
  }
}

CharClass char_class(uint32_t cp) {
  if (cp < 0x10000) return CharClass(bmp_classes()[cp]);
  return slow_class(cp);
}

uint8_t combining_class(uint32_t cp) {
  if (cp < 0x300) return 0;
  const CombiningRun* end = kCombiningRuns + kCombiningRunsCount;
  const CombiningRun* it = std::upper_bound(
      kCombiningRuns, end, cp, [](uint32_t v, const CombiningRun& x) { return v < x.first; });
  return (it != kCombiningRuns && cp <= (it - 1)->last) ? (it - 1)->ccc : 0;
}

bool nfc_quick_check(std::string_view text) {
  const char* p = text.data();
  const char* end = p + text.size();
  while (p < end) {
    if (static_cast<uint8_t>(*p) < 0x80) {
      ++p;
      continue;
    }
    const Char c = decode_utf8(p, end);
    p += c.len;
    // Everything below U+0300 is a stable starter that composes with nothing before it.
    if (c.valid && c.cp >= 0x300 && in_ranges(kNfcUnsafeRanges, kNfcUnsafeRangesCount, c.cp)) {
      return false;
    }
  }
  return true;
}

std::string nfc(std::string_view text) {
  if (nfc_quick_check(text)) return std::string(text);
  std::string out;
  out.reserve(text.size() + text.size() / 8);
  std::vector<uint32_t> run, scratch;
  const char* p = text.data();
  const char* end = p + text.size();
  while (p < end) {
    const Char c = decode_utf8(p, end);
    if (c.valid) {
      run.push_back(c.cp);
    } else {
      if (!run.empty()) nfc_run(run, scratch, out);
      run.clear();
      out.push_back(*p);
    }
    p += c.len;
  }
  if (!run.empty()) nfc_run(run, scratch, out);
  return out;
}

}  // namespace fathom::tok::unicode
