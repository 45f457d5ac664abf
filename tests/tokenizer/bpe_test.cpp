// train_bpe: merges equal a naive re-counting reference, determinism across thread counts,
// special tokens, round trips of any bytes, save -> load, option errors.
#include <gtest/gtest.h>

#include <map>

#include "engine/tokenizer/pretokenizer.h"
#include "engine/tokenizer/tokenizer.h"
#include "engine/tokenizer/tokenizer_internal.h"
#include "test_support.h"

using fathom::tok::BpeTrainOptions;
using fathom::tok::Tokenizer;
using fathom::tok::TokenizerError;
using Ids = std::vector<uint32_t>;

namespace {

std::vector<std::string> corpus_files() {
  const std::string dir = std::string(FATHOM_FIXTURES_DIR) + "/tokenizer/corpus/";
  return {dir + "harbor.txt", dir + "observatory.txt", dir + "letters.jsonl"};
}

std::vector<std::string> corpus_texts() {
  std::vector<std::string> out;
  for (const auto& f : corpus_files()) out.push_back(fathom::test::read_text(f));
  return out;
}

// The merges of a saved tokenizer.json, as pairs of raw byte strings.
std::vector<std::pair<std::string, std::string>> saved_merges(const Tokenizer& t) {
  fathom::test::TempDir dir;
  t.save(dir.file("tokenizer.json"));
  const auto j = nlohmann::json::parse(fathom::test::read_text(dir.file("tokenizer.json")));
  std::vector<std::pair<std::string, std::string>> out;
  for (const auto& m : j["model"]["merges"]) {
    const std::string s = m.get<std::string>();
    const size_t sp = s.find(' ');
    out.emplace_back(*fathom::tok::byte_level_to_bytes(s.substr(0, sp)),
                     *fathom::tok::byte_level_to_bytes(s.substr(sp + 1)));
  }
  return out;
}

// Textbook BPE training: recount every pair over every word before each merge. Same tie rule as
// the fast trainer (highest count, then smallest (left id, right id)) and same id assignment.
std::vector<std::pair<std::string, std::string>> naive_merges(const std::vector<std::string>& texts,
                                                              size_t n_tokens) {
  std::map<std::string, uint64_t> counts;
  for (const auto& t : texts) {
    fathom::tok::pretokenize(fathom::tok::PreTokenizerKind::kGpt2, t,
                             [&](std::string_view p) { ++counts[std::string(p)]; });
  }
  std::vector<std::string> bytes(256);
  std::map<std::string, uint32_t> ids;
  for (int b = 0; b < 256; ++b) {
    bytes[size_t(b)] = std::string(1, char(b));
    ids[bytes[size_t(b)]] = uint32_t(b);
  }
  std::vector<std::pair<std::vector<uint32_t>, uint64_t>> words;
  for (const auto& [w, c] : counts) {
    std::vector<uint32_t> sy;
    for (char ch : w) sy.push_back(static_cast<uint8_t>(ch));
    words.emplace_back(sy, c);
  }
  std::vector<std::pair<std::string, std::string>> merges;
  while (bytes.size() < n_tokens) {
    std::map<std::pair<uint32_t, uint32_t>, uint64_t> pc;
    for (const auto& [sy, c] : words) {
      for (size_t i = 0; i + 1 < sy.size(); ++i) pc[{sy[i], sy[i + 1]}] += c;
    }
    if (pc.empty()) break;
    auto best = pc.begin();
    for (auto it = pc.begin(); it != pc.end(); ++it) {
      if (it->second > best->second) best = it;  // map order = smallest pair wins ties
    }
    const auto [a, b] = best->first;
    const std::string merged = bytes[a] + bytes[b];
    uint32_t id;
    if (ids.count(merged)) {
      id = ids[merged];
    } else {
      id = uint32_t(bytes.size());
      bytes.push_back(merged);
      ids[merged] = id;
    }
    merges.emplace_back(bytes[a], bytes[b]);
    for (auto& [sy, c] : words) {
      std::vector<uint32_t> out;
      for (size_t i = 0; i < sy.size();) {
        if (i + 1 < sy.size() && sy[i] == a && sy[i + 1] == b) {
          out.push_back(id);
          i += 2;
        } else {
          out.push_back(sy[i++]);
        }
      }
      sy = out;
    }
  }
  return merges;
}

BpeTrainOptions options(size_t vocab, int threads = 1) {
  BpeTrainOptions o;
  o.vocab_size = vocab;
  o.threads = threads;
  return o;
}

}  // namespace

TEST(BpeTrain, MergesEqualNaiveReference) {
  const auto texts = corpus_texts();
  const Tokenizer t = fathom::tok::train_bpe_from_texts(texts, options(256 + 300 + 1));
  const auto fast = saved_merges(t);
  const auto naive = naive_merges(texts, 256 + 300);
  ASSERT_EQ(fast.size(), naive.size());
  for (size_t i = 0; i < fast.size(); ++i) {
    ASSERT_EQ(fast[i], naive[i]) << "merge #" << i;
  }
  EXPECT_EQ(t.vocab_size(), 256u + 300u + 1u);
}

TEST(BpeTrain, DeterministicWhateverTheThreadCount) {
  // Long enough that the text is cut into several chunks counted on different threads.
  std::string big;
  const auto texts = corpus_texts();
  for (int i = 0; i < 4000; ++i) big += texts[size_t(i) % texts.size()] + "\nPart " + std::to_string(i) + "\n";
  ASSERT_GT(big.size(), size_t(2) << 20);
  const Tokenizer one = fathom::tok::train_bpe_from_texts({big}, options(700, 1));
  const Tokenizer four = fathom::tok::train_bpe_from_texts({big}, options(700, 4));
  EXPECT_EQ(saved_merges(one), saved_merges(four));
  EXPECT_EQ(one.encode(texts[1]), four.encode(texts[1]));
}

TEST(BpeTrain, SpecialTokensAreAddedNotLearned) {
  std::vector<std::string> texts;
  for (int i = 0; i < 200; ++i) texts.push_back("doc " + std::to_string(i) + "<|endoftext|><|endoftext|>");
  BpeTrainOptions o = options(400);
  o.special_tokens = {"<|endoftext|>", "<|pad|>"};
  const Tokenizer t = fathom::tok::train_bpe_from_texts(texts, o);
  EXPECT_EQ(t.kind(), "bpe");
  const auto eot = t.token_id("<|endoftext|>");
  ASSERT_TRUE(eot.has_value());
  EXPECT_EQ(t.eos_id(), eot);
  EXPECT_TRUE(t.is_special(*eot));
  EXPECT_TRUE(t.token_id("<|pad|>").has_value());
  for (uint32_t id = 0; id < t.vocab_size(); ++id) {
    if (t.is_special(id)) continue;
    EXPECT_EQ(t.token_bytes(id).find("|>"), std::string::npos) << "learned " << t.token_bytes(id);
  }
  EXPECT_EQ(t.encode_with_special("doc 7<|endoftext|>").back(), *eot);
}

TEST(BpeTrain, RoundTripsAndCompresses) {
  const auto texts = corpus_texts();
  const Tokenizer t = fathom::tok::train_bpe_from_texts(texts, options(600));
  std::mt19937 rng(11);
  for (int i = 0; i < 400; ++i) {
    const std::string b = fathom::test::random_bytes(rng, 80);
    ASSERT_EQ(t.decode(t.encode(b)), b) << ::testing::PrintToString(b);
    const std::string u = fathom::test::random_unicode(rng, 40);
    ASSERT_EQ(t.decode(t.encode(u)), u) << ::testing::PrintToString(u);
  }
  for (const std::string& s : {std::string(), std::string("   "), std::string("\n\n\t \n"),
                               std::string(500, ' ') + "x", std::string(100, '\n')}) {
    EXPECT_EQ(t.decode(t.encode(s)), s);
  }
  size_t tokens = 0, bytes = 0;
  for (const auto& text : texts) {
    tokens += t.encode(text).size();
    bytes += text.size();
  }
  EXPECT_LT(double(tokens), 0.5 * double(bytes));  // merges were learned from this very text
}

TEST(BpeTrain, SaveLoadKeepsKindEosAndEncodings) {
  const auto texts = corpus_texts();
  const Tokenizer t = fathom::tok::train_bpe_from_texts(texts, options(500));
  fathom::test::TempDir dir;
  t.save(dir.file("tokenizer.json"));
  const Tokenizer back = Tokenizer::load(dir.path());
  EXPECT_EQ(back.kind(), "bpe");
  EXPECT_EQ(back.vocab_size(), t.vocab_size());
  EXPECT_EQ(back.eos_id(), t.eos_id());
  std::mt19937 rng(5);
  for (int i = 0; i < 200; ++i) {
    const std::string s = fathom::test::random_bytes(rng, 60) + texts[size_t(i) % texts.size()];
    ASSERT_EQ(back.encode(s), t.encode(s));
  }
  // Structure as Hugging Face writes it (tokenizers' Tokenizer::from_file reads these keys).
  const auto j = nlohmann::json::parse(fathom::test::read_text(dir.file("tokenizer.json")));
  EXPECT_EQ(j["version"], "1.0");
  EXPECT_TRUE(j["truncation"].is_null());
  EXPECT_TRUE(j["normalizer"].is_null());
  EXPECT_EQ(j["pre_tokenizer"]["type"], "ByteLevel");
  EXPECT_EQ(j["pre_tokenizer"]["use_regex"], true);
  EXPECT_EQ(j["model"]["type"], "BPE");
  EXPECT_EQ(j["model"]["vocab"].size(), t.vocab_size());
  EXPECT_EQ(j["model"]["vocab"]["Ġ"], 32);  // byte ids are the byte values, spelled GPT-2 style
  EXPECT_EQ(j["added_tokens"][0]["content"], "<|endoftext|>");
  EXPECT_EQ(j["added_tokens"][0]["special"], true);
  EXPECT_EQ(j["added_tokens"][0]["id"], t.vocab_size() - 1);
  // Saving what we loaded gives the same bytes again.
  back.save(dir.file("again.json"));
  EXPECT_EQ(fathom::test::read_text(dir.file("again.json")),
            fathom::test::read_text(dir.file("tokenizer.json")));
}

TEST(BpeTrain, SavedFileIsReadTheSameByAnotherImplementation) {
  // trained_bpe_400.json is what training on corpus/ with vocab 400 saves; make_fixtures.js had
  // @lenml/tokenizers (a JavaScript reader of HF tokenizer.json) encode strings with it.
  const std::string golden = std::string(FATHOM_FIXTURES_DIR) + "/tokenizer/trained_bpe_400.json";
  fathom::test::TempDir dir;
  fathom::tok::train_bpe(corpus_files(), options(400)).save(dir.file("tokenizer.json"));
  EXPECT_EQ(fathom::test::read_text(dir.file("tokenizer.json")), fathom::test::read_text(golden))
      << "training or save() changed; if intended, copy " << dir.file("tokenizer.json")
      << " over the fixture and rerun tests/fixtures/tokenizer/make_fixtures.js";
  const Tokenizer t = Tokenizer::load(golden);
  EXPECT_EQ(t.kind(), "bpe");
  const auto cases = fathom::test::read_fixture("tokenizer/trained_bpe_reference.json");
  ASSERT_GE(cases.size(), 30u);
  for (const auto& c : cases) {
    const std::string text = c["text"].get<std::string>();
    EXPECT_EQ(t.encode_with_special(text), c["ids"].get<Ids>()) << ::testing::PrintToString(text);
  }
}

TEST(BpeTrain, IgnoreMergesTakesWholePiecesFromTheVocabulary) {
  // Llama 3 style: with model.ignore_merges a piece that is itself a vocabulary entry is emitted
  // whole, even when the merges could not build it.
  const Tokenizer t = fathom::tok::train_bpe_from_texts(corpus_texts(), options(400));
  fathom::test::TempDir dir;
  t.save(dir.file("tokenizer.json"));
  auto j = nlohmann::json::parse(fathom::test::read_text(dir.file("tokenizer.json")));
  const uint32_t zebra = uint32_t(t.vocab_size());
  j["model"]["vocab"]["Ġzebra"] = zebra;
  j.erase("fathom");
  fathom::test::write_text(dir.file("plain.json"), j.dump());
  j["model"]["ignore_merges"] = true;
  fathom::test::write_text(dir.file("ignore.json"), j.dump());
  const Tokenizer plain = Tokenizer::load(dir.file("plain.json"));
  const Tokenizer ignore = Tokenizer::load(dir.file("ignore.json"));
  EXPECT_EQ(plain.kind(), "hf");
  EXPECT_EQ(ignore.encode(" zebra"), (Ids{zebra}));
  EXPECT_GT(plain.encode(" zebra").size(), 1u);
  EXPECT_EQ(plain.decode(plain.encode(" zebra")), " zebra");
}

TEST(TokenizerJson, UnsupportedComponentsAreNamed) {
  const std::string golden = std::string(FATHOM_FIXTURES_DIR) + "/tokenizer/trained_bpe_400.json";
  const auto base = nlohmann::json::parse(fathom::test::read_text(golden));
  fathom::test::TempDir dir;
  auto expect_error = [&](nlohmann::json doc, const std::vector<std::string>& parts) {
    fathom::test::write_text(dir.file("tokenizer.json"), doc.dump());
    try {
      (void)Tokenizer::load(dir.file("tokenizer.json"));
      ADD_FAILURE() << "expected TokenizerError for " << parts[0];
    } catch (const TokenizerError& e) {
      for (const auto& p : parts) {
        EXPECT_NE(std::string(e.what()).find(p), std::string::npos) << "'" << p << "' not in: " << e.what();
      }
    }
  };
  auto doc = base;
  doc["pre_tokenizer"] = {{"type", "Sequence"},
                          {"pretokenizers",
                           {{{"type", "Split"}, {"pattern", {{"Regex", "\\p{L}+|\\s+"}}}, {"behavior", "Isolated"}, {"invert", false}},
                            {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"use_regex", false}}}}};
  expect_error(doc, {dir.file("tokenizer.json"), "\\\\p{L}+|\\\\s+", "not implemented"});
  doc = base;
  doc["normalizer"] = {{"type", "NFKC"}};
  expect_error(doc, {"NFKC", "normalizer"});
  doc = base;
  doc["pre_tokenizer"] = {{"type", "Metaspace"}};
  expect_error(doc, {"Metaspace", "pre_tokenizer"});
  doc = base;
  doc["decoder"] = {{"type", "WordPiece"}};
  expect_error(doc, {"WordPiece", "decoder"});
  doc = base;
  doc["model"]["type"] = "Unigram";
  expect_error(doc, {"Unigram"});
  doc = base;
  doc["model"]["byte_fallback"] = true;
  expect_error(doc, {"byte_fallback"});
  doc = base;
  doc["model"]["merges"].push_back("Ġ zzzz");
  expect_error(doc, {"model.merges[", "not in model.vocab"});
  doc = base;
  doc["added_tokens"][0]["id"] = 5;
  expect_error(doc, {"<|endoftext|>", "id 5"});
  // Found by fuzz/fuzz_tokenizer: one id far past the others allocated tables for every id up to
  // it (2e9: 64 GB, out of memory), and ids of 2^32 and above wrapped onto small ones.
  doc = base;
  doc["added_tokens"][0]["id"] = 2000000000;
  expect_error(doc, {"token id 2000000000 is far beyond the", "damaged"});
  doc = base;
  doc["model"]["vocab"]["Ġzzzz"] = 4294967296ull + 5;
  expect_error(doc, {"model.vocab token 'Ġzzzz' has id 4294967301", "too large"});
  // ... and a number beyond double escaped as nlohmann's out_of_range instead of a TokenizerError.
  fathom::test::write_text(dir.file("tokenizer.json"), R"({"model": {"type": "BPE", "vocab": {"a": 1e999}}})");
  EXPECT_THROW((void)Tokenizer::load(dir.file("tokenizer.json")), TokenizerError);
}

TEST(BpeTrain, FilesEqualTextsAndMaxBytesLimitsInput) {
  const auto files = corpus_files();
  const auto texts = corpus_texts();
  const Tokenizer from_files = fathom::tok::train_bpe(files, options(450));
  const Tokenizer from_texts = fathom::tok::train_bpe_from_texts(texts, options(450));
  EXPECT_EQ(saved_merges(from_files), saved_merges(from_texts));
  BpeTrainOptions small = options(450);
  small.max_bytes = 200;  // only the start of the first file: too few pairs for 450 tokens
  const Tokenizer limited = fathom::tok::train_bpe(files, small);
  EXPECT_LT(limited.vocab_size(), 450u);
  EXPECT_EQ(saved_merges(limited), naive_merges({texts[0].substr(0, 200)}, 449));
}

TEST(BpeTrain, ReportsProgress) {
  std::vector<double> fractions;
  BpeTrainOptions o = options(500);
  o.progress = [&](double f, const std::string& stage) {
    EXPECT_FALSE(stage.empty());
    fractions.push_back(f);
  };
  (void)fathom::tok::train_bpe_from_texts(corpus_texts(), o);
  ASSERT_GE(fractions.size(), 3u);
  EXPECT_TRUE(std::is_sorted(fractions.begin(), fractions.end()));
  EXPECT_DOUBLE_EQ(fractions.back(), 1.0);
}

TEST(BpeTrain, RejectsBadOptions) {
  EXPECT_THROW((void)fathom::tok::train_bpe_from_texts({"abc"}, options(100)), TokenizerError);
  EXPECT_THROW((void)fathom::tok::train_bpe({}, options(300)), TokenizerError);
  BpeTrainOptions bad = options(300);
  bad.special_tokens = {"<|bad\xFF|>"};
  EXPECT_THROW((void)fathom::tok::train_bpe_from_texts({"abc"}, bad), TokenizerError);
  bad.special_tokens = {""};
  EXPECT_THROW((void)fathom::tok::train_bpe_from_texts({"abc"}, bad), TokenizerError);
  try {
    (void)fathom::tok::train_bpe({"/nonexistent/corpus.txt"}, options(300));
    FAIL();
  } catch (const TokenizerError& e) {
    EXPECT_NE(std::string(e.what()).find("/nonexistent/corpus.txt"), std::string::npos);
  }
}

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  return RUN_ALL_TESTS();
}
