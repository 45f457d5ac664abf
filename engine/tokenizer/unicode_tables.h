// Unicode property tables for the pre-tokenizer scanners and the NFC normaliser, generated from
// Python's unicodedata by tools/gen_unicode_tables.py (see unicode_tables.cpp for the version).
#pragma once
#include <cstddef>
#include <cstdint>

namespace fathom::tok::unicode {

struct CodeRange { uint32_t first, last; };                      // inclusive
struct CombiningRun { uint32_t first, last; uint8_t ccc; };      // non-zero classes only
struct Decomposition { uint32_t cp, first, second; };           // second == 0: singleton
struct Composition { uint32_t first, second, composite; };     // primary composites

extern const char* const kUnicodeVersion;
extern const CodeRange kLetterRanges[];      // \p{L}: Lu Ll Lt Lm Lo
extern const size_t kLetterRangesCount;
extern const CodeRange kNumberRanges[];      // \p{N}: Nd Nl No
extern const size_t kNumberRangesCount;
extern const CodeRange kWhiteSpaceRanges[];  // \s: the White_Space property
extern const size_t kWhiteSpaceRangesCount;
extern const CodeRange kNfcUnsafeRanges[];   // code points that may change under NFC (or make a neighbour change)
extern const size_t kNfcUnsafeRangesCount;
extern const CombiningRun kCombiningRuns[];
extern const size_t kCombiningRunsCount;
extern const Decomposition kDecompositions[];  // sorted by cp; Hangul syllables excluded (algorithmic)
extern const size_t kDecompositionsCount;
extern const Composition kCompositions[];      // sorted by (first, second)
extern const size_t kCompositionsCount;

}  // namespace fathom::tok::unicode
