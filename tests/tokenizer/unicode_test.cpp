// UTF-8 decoding, character classes and NFC, checked against Python's unicodedata
// (tests/fixtures/tokenizer/nfc_reference.json, make_python_fixtures.py).
#include "engine/tokenizer/unicode.h"

#include <gtest/gtest.h>

#include "test_support.h"

namespace u = fathom::tok::unicode;

TEST(Utf8, DecodesValidSequences) {
  const std::string s = "a\xC3\xA9\xE4\xB8\xAD\xF0\x9F\x98\x80";  // a é 中 😀
  const char* p = s.data();
  const char* end = p + s.size();
  const uint32_t want[] = {0x61, 0xE9, 0x4E2D, 0x1F600};
  for (uint32_t cp : want) {
    const u::Char c = u::decode_utf8(p, end);
    ASSERT_TRUE(c.valid);
    EXPECT_EQ(c.cp, cp);
    p += c.len;
  }
  EXPECT_EQ(p, end);
}

TEST(Utf8, RejectsInvalidSequencesOneByteAtATime) {
  const char* cases[] = {"\x80", "\xC0\xAF", "\xC1\xBF", "\xE0\x80\xAF", "\xED\xA0\x80",
                         "\xF4\x90\x80\x80", "\xF5\x80\x80\x80", "\xFF", "\xC3", "\xE4\xB8"};
  for (const char* s : cases) {
    const std::string str(s);
    const u::Char c = u::decode_utf8(str.data(), str.data() + str.size());
    EXPECT_FALSE(c.valid) << "case " << ::testing::PrintToString(str);
    EXPECT_EQ(c.len, 1);
    EXPECT_EQ(c.cp, static_cast<uint8_t>(str[0]));
  }
}

TEST(Utf8, AppendRoundTrips) {
  for (uint32_t cp : {0x0u, 0x7Fu, 0x80u, 0x7FFu, 0x800u, 0xFFFFu, 0x10000u, 0x10FFFFu}) {
    std::string s;
    u::append_utf8(s, cp);
    const u::Char c = u::decode_utf8(s.data(), s.data() + s.size());
    EXPECT_TRUE(c.valid);
    EXPECT_EQ(c.cp, cp);
    EXPECT_EQ(c.len, s.size());
  }
}

TEST(CharClass, MatchesUnicodeCategories) {
  EXPECT_EQ(u::char_class('a'), u::kLetter);
  EXPECT_EQ(u::char_class(0x4E2D), u::kLetter);   // 中 Lo
  EXPECT_EQ(u::char_class(0x02B0), u::kLetter);   // ʰ Lm
  EXPECT_EQ(u::char_class(0x1D400), u::kLetter);  // 𝐀 (above the BMP)
  EXPECT_EQ(u::char_class('7'), u::kNumber);
  EXPECT_EQ(u::char_class(0x00B2), u::kNumber);   // ² No
  EXPECT_EQ(u::char_class(0x2167), u::kNumber);   // Ⅷ Nl
  EXPECT_EQ(u::char_class(0x0663), u::kNumber);   // Arabic-Indic 3
  EXPECT_EQ(u::char_class(' '), u::kSpace);
  EXPECT_EQ(u::char_class(0x3000), u::kSpace);
  EXPECT_EQ(u::char_class(0x0085), u::kSpace);
  EXPECT_EQ(u::char_class(0x200B), u::kOther);    // zero width space is not White_Space
  EXPECT_EQ(u::char_class(0x001C), u::kOther);    // nor are the information separators
  EXPECT_EQ(u::char_class(0x0301), u::kOther);    // combining mark (Mn)
  EXPECT_EQ(u::char_class('\''), u::kOther);
  EXPECT_EQ(u::char_class(0x1F600), u::kOther);
}

TEST(Nfc, MatchesPythonUnicodedata) {
  const auto cases = fathom::test::read_fixture("tokenizer/nfc_reference.json");
  ASSERT_GT(cases.size(), 4000u);
  size_t changed = 0;
  for (const auto& c : cases) {
    const std::string in = c[0].get<std::string>();
    const std::string want = c[1].get<std::string>();
    EXPECT_EQ(u::nfc(in), want) << "input " << ::testing::PrintToString(in);
    EXPECT_EQ(u::nfc(want), want) << "NFC output is not stable: " << want;
    if (in != want) {
      ++changed;
      EXPECT_FALSE(u::nfc_quick_check(in)) << "quick check missed " << ::testing::PrintToString(in);
    }
  }
  EXPECT_GT(changed, 2000u);  // the fixture really exercises composition
}

TEST(Nfc, LeavesInvalidBytesAndAsciiAlone) {
  EXPECT_TRUE(u::nfc_quick_check("plain ascii text\n"));
  EXPECT_EQ(u::nfc(""), "");
  // e + COMBINING ACUTE, an invalid byte, then A + COMBINING RING: composed on both sides,
  // and nothing composes across the invalid byte.
  const std::string in = "e\xCC\x81\xFF" "A\xCC\x8A";
  EXPECT_EQ(u::nfc(in), "\xC3\xA9\xFF\xC3\x85");
  const std::string blocked = "e\xFF\xCC\x81";
  EXPECT_EQ(u::nfc(blocked), blocked);
}
int main(int argc, char** argv) { ::testing::InitGoogleTest(&argc, argv); return RUN_ALL_TESTS(); }
