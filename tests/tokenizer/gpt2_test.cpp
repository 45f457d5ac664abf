// GPT-2 from ~/.cache/fathom/tokenizers/gpt2 against known ids and the npm gpt-3-encoder
// (tests/fixtures/tokenizer/gpt2_reference.json); round trips; save as tokenizer.json and back.
#include <gtest/gtest.h>

#include "engine/tokenizer/tokenizer.h"
#include "test_support.h"

using fathom::tok::Tokenizer;
using fathom::tok::TokenizerError;
using Ids = std::vector<uint32_t>;

namespace {

std::string gpt2_dir() { return fathom::test::fathom_cache_dir() + "/tokenizers/gpt2"; }

const Tokenizer& gpt2() {
  static const Tokenizer t = Tokenizer::load(gpt2_dir());
  return t;
}

}  // namespace

TEST(Gpt2, LoadsFromDirectory) {
  const Tokenizer& t = gpt2();
  EXPECT_EQ(t.kind(), "gpt2");
  EXPECT_EQ(t.vocab_size(), 50257u);
  EXPECT_EQ(t.merges_count(), 50000u);
  ASSERT_TRUE(t.eos_id().has_value());
  EXPECT_EQ(*t.eos_id(), 50256u);
  EXPECT_TRUE(t.is_special(50256));
  EXPECT_FALSE(t.is_special(262));
}

TEST(Gpt2, KnownIds) {
  const Tokenizer& t = gpt2();
  EXPECT_EQ(t.encode("Hello world"), (Ids{15496, 995}));
  EXPECT_EQ(t.encode(" the"), (Ids{262}));
  EXPECT_EQ(t.encode("!"), (Ids{0}));
  EXPECT_EQ(t.encode("\n"), (Ids{198}));
  EXPECT_EQ(t.encode("\n\n"), (Ids{628}));
  EXPECT_EQ(t.token_bytes(262), " the");
  EXPECT_EQ(t.token_id(" the"), 262u);
  EXPECT_EQ(t.token_id("<|endoftext|>"), 50256u);
  EXPECT_FALSE(t.token_id("Ġthe").has_value());  // byte-level spelling is not accepted
}

TEST(Gpt2, MatchesNpmGpt3Encoder) {
  const Tokenizer& t = gpt2();
  const auto cases = fathom::test::read_fixture("tokenizer/gpt2_reference.json");
  ASSERT_GE(cases.size(), 30u);
  for (const auto& c : cases) {
    const std::string text = c["text"].get<std::string>();
    const Ids want = c["ids"].get<Ids>();
    EXPECT_EQ(t.encode(text), want) << "text: " << ::testing::PrintToString(text);
    EXPECT_EQ(t.decode(want), text);
  }
}

TEST(Gpt2, SpecialTokensOnlyWhenAsked) {
  const Tokenizer& t = gpt2();
  const std::string text = "a<|endoftext|>b";
  EXPECT_EQ(t.encode_with_special(text), (Ids{64, 50256, 65}));
  const Ids plain = t.encode(text);
  EXPECT_EQ(std::count(plain.begin(), plain.end(), 50256u), 0);
  EXPECT_EQ(t.decode(plain), text);
}

TEST(Gpt2, RoundTripsAnyBytes) {
  const Tokenizer& t = gpt2();
  std::mt19937 rng(42);
  for (int i = 0; i < 300; ++i) {
    const std::string b = fathom::test::random_bytes(rng, 64);
    ASSERT_EQ(t.decode(t.encode(b)), b) << ::testing::PrintToString(b);
    const std::string u = fathom::test::random_unicode(rng, 32);
    ASSERT_EQ(t.decode(t.encode(u)), u) << ::testing::PrintToString(u);
  }
  for (const std::string& s : {std::string(), std::string(" "), std::string(1000, ' '),
                               std::string("\t\n \r\n\n  \t"), std::string(300, 'z'),
                               std::string("\0\0x\0", 4)}) {
    EXPECT_EQ(t.decode(t.encode(s)), s);
  }
  EXPECT_TRUE(t.encode("").empty());
}

TEST(Gpt2, LongPiecesUseTheHeapPathConsistently) {
  // Pieces over 64 bytes take the heap BPE path; the npm reference holds several such pieces.
  const Tokenizer& t = gpt2();
  for (size_t n : {60u, 64u, 65u, 70u, 200u, 5000u}) {
    const std::string word(n, 'a');
    EXPECT_EQ(t.decode(t.encode(word)), word);
  }
  const auto cases = fathom::test::read_fixture("tokenizer/gpt2_reference.json");
  for (const auto& c : cases) {  // the fixture holds 100 '!' and 150 'a' (heap path) from npm
    const std::string text = c["text"].get<std::string>();
    if (text.size() > 64) {
      EXPECT_EQ(t.encode(text), c["ids"].get<Ids>());
    }
  }
}

TEST(Gpt2, DecodeRejectsUnknownIds) {
  const Tokenizer& t = gpt2();
  try {
    (void)t.decode({15496, 50257});
    FAIL() << "expected TokenizerError";
  } catch (const TokenizerError& e) {
    EXPECT_NE(std::string(e.what()).find("50257"), std::string::npos) << e.what();
  }
}

TEST(Gpt2, StreamDecoderNeverSplitsCharacters) {
  const Tokenizer& t = gpt2();
  const std::string text = "Émojis 😀🎉 and 中文 text, plus \xFF an invalid byte";
  const Ids ids = t.encode(text);
  fathom::tok::Utf8StreamDecoder dec(t);
  std::string joined;
  for (uint32_t id : ids) {
    const std::string piece = dec.push(id);
    // Every emitted piece ends on a character boundary: no dangling lead byte.
    if (!piece.empty()) {
      const auto last = static_cast<uint8_t>(piece.back());
      EXPECT_FALSE(last >= 0xC2 && last <= 0xF4) << ::testing::PrintToString(piece);
    }
    joined += piece;
  }
  joined += dec.finish();
  EXPECT_EQ(joined, text);
}

TEST(Gpt2, SaveAsTokenizerJsonAndLoadBack) {
  fathom::test::TempDir dir;
  const std::string path = dir.file("tokenizer.json");
  gpt2().save(path);
  const Tokenizer back = Tokenizer::load(path);
  EXPECT_EQ(back.vocab_size(), gpt2().vocab_size());
  EXPECT_EQ(back.eos_id(), gpt2().eos_id());
  const auto cases = fathom::test::read_fixture("tokenizer/gpt2_reference.json");
  for (const auto& c : cases) {
    const std::string text = c["text"].get<std::string>();
    EXPECT_EQ(back.encode(text), c["ids"].get<Ids>()) << text;
  }
  // The file has the structure Hugging Face writes.
  const auto j = nlohmann::json::parse(fathom::test::read_text(path));
  EXPECT_EQ(j["version"], "1.0");
  EXPECT_EQ(j["model"]["type"], "BPE");
  EXPECT_EQ(j["model"]["vocab"]["Ġthe"], 262);
  EXPECT_EQ(j["model"]["merges"][0], "Ġ t");
  EXPECT_EQ(j["pre_tokenizer"]["type"], "ByteLevel");
  EXPECT_EQ(j["decoder"]["type"], "ByteLevel");
  EXPECT_EQ(j["added_tokens"][0]["content"], "<|endoftext|>");
  EXPECT_EQ(j["added_tokens"][0]["id"], 50256);
  EXPECT_FALSE(fathom::test::path_exists(path + ".tmp"));
}

TEST(Gpt2, ErrorsNameTheFileAndTheProblem) {
  fathom::test::TempDir dir;
  auto expect_error = [](const std::function<void()>& f, const std::vector<std::string>& parts) {
    try {
      f();
      ADD_FAILURE() << "expected TokenizerError";
    } catch (const TokenizerError& e) {
      for (const auto& p : parts) {
        EXPECT_NE(std::string(e.what()).find(p), std::string::npos)
            << "'" << p << "' not in: " << e.what();
      }
    }
  };
  expect_error([&] { Tokenizer::load(dir.file("nope")); }, {dir.file("nope"), "no such file"});
  expect_error([&] { Tokenizer::load(dir.path()); }, {dir.path(), "tokenizer.json", "vocab.bpe"});
  fathom::test::write_text(dir.file("tokenizer.json"), "{\n  \"model\": {\n    \"vocab\": {");
  expect_error([&] { Tokenizer::load(dir.path()); }, {dir.file("tokenizer.json") + ":3:", "JSON"});
  fathom::test::write_text(dir.file("encoder.json"), "{\"a\": 0, \"b\": 1}");
  fathom::test::write_text(dir.file("vocab.bpe"), "#version: 0.2\na b\nb c\n");
  expect_error([&] { Tokenizer::load_gpt2(dir.file("encoder.json"), dir.file("vocab.bpe")); },
               {dir.file("vocab.bpe") + ":3", "b c"});
  fathom::test::write_text(dir.file("vocab.bpe"), "#version: 0.2\na b\n");
  expect_error([&] { Tokenizer::load_gpt2(dir.file("encoder.json"), dir.file("vocab.bpe")); },
               {"256 single-byte tokens"});
  EXPECT_THROW((void)Tokenizer().encode("x"), TokenizerError);
  EXPECT_EQ(Tokenizer().vocab_size(), 0u);
}

int main(int argc, char** argv) {
  return fathom::test::run_tests_requiring(
      argc, argv, {gpt2_dir() + "/encoder.json", gpt2_dir() + "/vocab.bpe"});
}
