// The hand-written pre-tokenizer scanners against Python's `regex` module running the real
// GPT-2 / Qwen2 / Llama 3 patterns (tests/fixtures/tokenizer/pretokenize_reference.json).
#include "engine/tokenizer/pretokenizer.h"

#include <gtest/gtest.h>

#include <random>

#include "test_support.h"

using fathom::tok::PreTokenizerKind;

namespace {

std::vector<std::string> pieces(PreTokenizerKind kind, std::string_view text) {
  std::vector<std::string> out;
  fathom::tok::pretokenize(kind, text, [&](std::string_view p) { out.emplace_back(p); });
  return out;
}

using V = std::vector<std::string>;

}  // namespace

TEST(PreTokenizer, MatchesPythonRegexOnReferenceTexts) {
  const auto cases = fathom::test::read_fixture("tokenizer/pretokenize_reference.json");
  ASSERT_GE(cases.size(), 500u);
  const std::pair<const char*, PreTokenizerKind> kinds[] = {
      {"gpt2", PreTokenizerKind::kGpt2},
      {"qwen2", PreTokenizerKind::kQwen2},
      {"llama3", PreTokenizerKind::kLlama3}};
  int failures = 0;
  for (const auto& c : cases) {
    const std::string text = c["text"].get<std::string>();
    for (const auto& [name, kind] : kinds) {
      const auto want = c[name].get<V>();
      const auto got = pieces(kind, text);
      EXPECT_EQ(got, want) << name << " on " << ::testing::PrintToString(text);
      if (got != want && ++failures > 20) FAIL() << "too many mismatches";
    }
  }
}

TEST(PreTokenizer, Gpt2HandPickedCases) {
  EXPECT_EQ(pieces(PreTokenizerKind::kGpt2, "Hello world"), (V{"Hello", " world"}));
  EXPECT_EQ(pieces(PreTokenizerKind::kGpt2, "it's"), (V{"it", "'s"}));
  EXPECT_EQ(pieces(PreTokenizerKind::kGpt2, "IT'S"), (V{"IT", "'", "S"}));  // case-sensitive
  EXPECT_EQ(pieces(PreTokenizerKind::kGpt2, "a   b"), (V{"a", "  ", " b"}));
  EXPECT_EQ(pieces(PreTokenizerKind::kGpt2, "a \n"), (V{"a", " \n"}));
  EXPECT_EQ(pieces(PreTokenizerKind::kGpt2, "x\ny"), (V{"x", "\n", "y"}));
  EXPECT_EQ(pieces(PreTokenizerKind::kGpt2, "2024 ok!!"), (V{"2024", " ok", "!!"}));
  EXPECT_EQ(pieces(PreTokenizerKind::kGpt2, ""), V{});
}

TEST(PreTokenizer, QwenHandPickedCases) {
  EXPECT_EQ(pieces(PreTokenizerKind::kQwen2, "IT'S 2024"), (V{"IT", "'S", " ", "2", "0", "2", "4"}));
  EXPECT_EQ(pieces(PreTokenizerKind::kLlama3, "12345"), (V{"123", "45"}));
  EXPECT_EQ(pieces(PreTokenizerKind::kQwen2, "(hello"), (V{"(hello"}));
  EXPECT_EQ(pieces(PreTokenizerKind::kQwen2, "end.\n\nNext"), (V{"end", ".\n\n", "Next"}));
  EXPECT_EQ(pieces(PreTokenizerKind::kQwen2, "a \n  b"), (V{"a", " \n", " ", " b"}));
}

TEST(PreTokenizer, InvalidUtf8IsTiledAndKeptTogetherWithPunctuation) {
  const std::string text = "ab\xFF\xFE cd \x80\xC3";
  for (auto kind : {PreTokenizerKind::kGpt2, PreTokenizerKind::kQwen2, PreTokenizerKind::kLlama3}) {
    std::string joined;
    for (const auto& p : pieces(kind, text)) joined += p;
    EXPECT_EQ(joined, text);
  }
  EXPECT_EQ(pieces(PreTokenizerKind::kGpt2, text),
            (V{"ab", "\xFF\xFE", " cd", " \x80\xC3"}));
}

TEST(PreTokenizer, RandomBytesAlwaysTile) {
  std::mt19937 rng(7);
  for (int iter = 0; iter < 2000; ++iter) {
    std::string s(rng() % 40, '\0');
    for (char& ch : s) ch = char(rng() % 4 == 0 ? rng() % 256 : " \n\tab'1."[rng() % 8]);
    for (auto kind : {PreTokenizerKind::kGpt2, PreTokenizerKind::kQwen2, PreTokenizerKind::kLlama3}) {
      std::string joined;
      for (const auto& p : pieces(kind, s)) {
        ASSERT_FALSE(p.empty());
        joined += p;
      }
      ASSERT_EQ(joined, s);
    }
  }
}

TEST(PreTokenizer, RecognisesOnlyKnownRegexes) {
  for (auto kind : {PreTokenizerKind::kGpt2, PreTokenizerKind::kQwen2, PreTokenizerKind::kLlama3}) {
    EXPECT_EQ(fathom::tok::pretokenizer_from_regex(fathom::tok::pretokenizer_regex(kind)), kind);
  }
  EXPECT_FALSE(fathom::tok::pretokenizer_from_regex("\\s+|\\w+"));
}

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  return RUN_ALL_TESTS();
}
