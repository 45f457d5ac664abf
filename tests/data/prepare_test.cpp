// prepare_dataset on tiny corpora: shards equal the tokenizer's encoding of each document + EOS,
// manifest reuse and invalidation, deterministic document-level split, error messages.
#include "engine/data/prepare.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <set>

#include "engine/data/token_shards.h"
#include "engine/tokenizer/tokenizer.h"
#include "tokenizer/test_support.h"

namespace fs = std::filesystem;
using fathom::data::PrepareOptions;
using fathom::data::PrepareResult;
using fathom::data::TokenShard;
using fathom::tok::Tokenizer;
using Ids = std::vector<uint32_t>;

namespace {

std::string corpus_dir() { return std::string(FATHOM_FIXTURES_DIR) + "/tokenizer/corpus"; }

// Documents of the fixture corpus in prepare's order: files sorted by name; JSONL line by line.
std::vector<std::string> corpus_documents(const std::string& dir) {
  std::vector<std::string> names;
  for (const auto& e : fs::directory_iterator(dir)) names.push_back(e.path().filename().string());
  std::sort(names.begin(), names.end());
  std::vector<std::string> docs;
  for (const auto& n : names) {
    const std::string text = fathom::test::read_text(dir + "/" + n);
    if (n.size() > 6 && n.substr(n.size() - 6) == ".jsonl") {
      std::istringstream in(text);
      for (std::string line; std::getline(in, line);) {
        if (!line.empty()) docs.push_back(nlohmann::json::parse(line)["text"].get<std::string>());
      }
    } else {
      docs.push_back(text);
    }
  }
  return docs;
}

Ids shard_ids(const std::string& path) {
  TokenShard s(path);
  Ids out(s.size());
  for (size_t i = 0; i < s.size(); ++i) out[i] = s[i];
  return out;
}

PrepareOptions base_options(const std::string& input, const std::string& work) {
  PrepareOptions o;
  o.inputs = {input};
  o.out_dir = work + "/shards";
  o.tokenizer_path = work + "/tok";
  o.vocab_size = 300;
  o.validation_fraction = 0.3;
  o.seed = 1;  // puts 2 of the 8 fixture documents in validation
  o.threads = 2;
  return o;
}

void copy_corpus(const std::string& to) {
  fs::create_directories(to);
  for (const auto& e : fs::directory_iterator(corpus_dir())) fs::copy_file(e.path(), to + "/" + e.path().filename().string());
}

void set_mtime(const std::string& path, time_t seconds) {
  const timespec times[2] = {{seconds, 0}, {seconds, 0}};
  ASSERT_EQ(::utimensat(AT_FDCWD, path.c_str(), times, 0), 0);
}

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const std::exception& e) {
    return e.what();
  }
  return "";
}

// Splits a token stream at EOS into documents.
std::vector<Ids> split_at(const Ids& ids, uint32_t eos) {
  std::vector<Ids> docs(1);
  for (uint32_t id : ids) {
    if (id == eos) {
      docs.emplace_back();
    } else {
      docs.back().push_back(id);
    }
  }
  docs.pop_back();  // after the last EOS
  return docs;
}

}  // namespace

TEST(Prepare, ShardsEqualTheTokenizersEncodingOfEachDocument) {
  fathom::test::TempDir work;
  const PrepareOptions o = base_options(corpus_dir(), work.path());
  const PrepareResult r = fathom::data::prepare_dataset(o);
  EXPECT_FALSE(r.reused);
  EXPECT_EQ(r.tokenizer_path, work.path() + "/tok/tokenizer.json");
  const Tokenizer tok = Tokenizer::load(r.tokenizer_path);
  EXPECT_EQ(tok.kind(), "bpe");
  EXPECT_EQ(r.vocab_size, tok.vocab_size());
  EXPECT_EQ(r.vocab_size, 300u);
  const uint32_t eos = *tok.eos_id();

  const auto docs = corpus_documents(corpus_dir());
  ASSERT_EQ(docs.size(), 8u);  // 2 text files + 6 JSONL records (a blank line is skipped)
  EXPECT_EQ(r.documents, 8);
  Ids want_train, want_val;
  for (size_t i = 0; i < docs.size(); ++i) {
    Ids& dst = fathom::data::is_validation_document(o.seed, i, o.validation_fraction) ? want_val : want_train;
    const Ids ids = tok.encode(docs[i]);
    dst.insert(dst.end(), ids.begin(), ids.end());
    dst.push_back(eos);
  }
  ASSERT_FALSE(want_val.empty()) << "pick a seed that puts a document in validation";
  EXPECT_EQ(shard_ids(o.out_dir + "/train.bin"), want_train);
  EXPECT_EQ(shard_ids(o.out_dir + "/val.bin"), want_val);
  EXPECT_EQ(r.train_tokens, int64_t(want_train.size()));
  EXPECT_EQ(r.val_tokens, int64_t(want_val.size()));

  const auto m = nlohmann::json::parse(fathom::test::read_text(o.out_dir + "/manifest.json"));
  EXPECT_EQ(m["inputs"].size(), 3u);
  EXPECT_EQ(m["inputs_hash"], r.inputs_hash);
  EXPECT_EQ(m["dtype"], "uint16");
  EXPECT_EQ(m["documents"], 8);
  EXPECT_EQ(m["tokenizer"]["kind"], "bpe");
  EXPECT_FALSE(m["tokenizer"]["hash"].get<std::string>().empty());
  EXPECT_FALSE(m["created"].get<std::string>().empty());
  EXPECT_TRUE(m["inputs"][0].contains("mtime_ns"));
}

TEST(Prepare, ReusesUntilAnInputChanges) {
  fathom::test::TempDir work;
  copy_corpus(work.file("corpus"));
  PrepareOptions o = base_options(work.file("corpus"), work.path());
  std::vector<std::string> stages;
  o.progress = [&](double, const std::string& s) { stages.push_back(s); };
  const PrepareResult first = fathom::data::prepare_dataset(o);
  ASSERT_FALSE(first.reused);
  const std::string tokenizer_before = fathom::test::read_text(first.tokenizer_path);

  stages.clear();
  const PrepareResult second = fathom::data::prepare_dataset(o);
  EXPECT_TRUE(second.reused);
  EXPECT_EQ(second.inputs_hash, first.inputs_hash);
  EXPECT_EQ(second.train_tokens, first.train_tokens);
  EXPECT_EQ(second.val_tokens, first.val_tokens);
  EXPECT_EQ(second.documents, first.documents);
  EXPECT_EQ(second.vocab_size, first.vocab_size);
  EXPECT_EQ(stages, std::vector<std::string>{"reused"});

  set_mtime(work.file("corpus/harbor.txt"), 1700000000);  // "touch": same bytes, new mtime
  const PrepareResult third = fathom::data::prepare_dataset(o);
  EXPECT_FALSE(third.reused);
  EXPECT_NE(third.inputs_hash, first.inputs_hash);
  EXPECT_EQ(third.train_tokens, first.train_tokens);
  // The tokenizer exists now: it is reused, not trained again.
  EXPECT_EQ(fathom::test::read_text(third.tokenizer_path), tokenizer_before);
  EXPECT_TRUE(fathom::data::prepare_dataset(o).reused);

  // Changing the split options invalidates too.
  o.seed = 6;
  EXPECT_FALSE(fathom::data::prepare_dataset(o).reused);
}

TEST(Prepare, MissingManifestOrTruncatedShardIsPreparedAgain) {
  fathom::test::TempDir work;
  const PrepareOptions o = base_options(corpus_dir(), work.path());
  const PrepareResult first = fathom::data::prepare_dataset(o);
  const std::string train_bytes = fathom::test::read_text(o.out_dir + "/train.bin");

  fs::remove(o.out_dir + "/manifest.json");
  PrepareResult again = fathom::data::prepare_dataset(o);
  EXPECT_FALSE(again.reused);
  EXPECT_EQ(fathom::test::read_text(o.out_dir + "/train.bin"), train_bytes);

  ASSERT_EQ(::truncate((o.out_dir + "/train.bin").c_str(), off_t(train_bytes.size() - 2)), 0);
  const std::string msg = error_of([&] { TokenShard s(o.out_dir + "/train.bin"); });
  EXPECT_NE(msg.find("truncated"), std::string::npos) << msg;
  again = fathom::data::prepare_dataset(o);
  EXPECT_FALSE(again.reused);
  EXPECT_EQ(again.train_tokens, first.train_tokens);
  EXPECT_EQ(fathom::test::read_text(o.out_dir + "/train.bin"), train_bytes);
  EXPECT_TRUE(fathom::data::prepare_dataset(o).reused);
}

TEST(Prepare, SplitIsByDocumentDeterministicAndDisjoint) {
  fathom::test::TempDir work;
  {
    std::ofstream out(work.file("docs.jsonl"));
    for (int i = 0; i < 400; ++i) {
      out << nlohmann::json{{"body", "document number " + std::to_string(i) + " says hello"}}.dump() << "\n";
    }
  }
  PrepareOptions a = base_options(work.file("docs.jsonl"), work.path());
  a.text_field = "body";
  a.validation_fraction = 0.2;
  a.out_dir = work.file("a");
  const PrepareResult ra = fathom::data::prepare_dataset(a);
  PrepareOptions b = a;
  b.out_dir = work.file("b");
  b.threads = 1;
  const PrepareResult rb = fathom::data::prepare_dataset(b);
  EXPECT_TRUE(fs::exists(ra.tokenizer_path));
  EXPECT_EQ(fathom::test::read_text(a.out_dir + "/train.bin"), fathom::test::read_text(b.out_dir + "/train.bin"));
  EXPECT_EQ(fathom::test::read_text(a.out_dir + "/val.bin"), fathom::test::read_text(b.out_dir + "/val.bin"));

  const Tokenizer tok = Tokenizer::load(ra.tokenizer_path);
  const auto train = split_at(shard_ids(a.out_dir + "/train.bin"), *tok.eos_id());
  const auto val = split_at(shard_ids(a.out_dir + "/val.bin"), *tok.eos_id());
  EXPECT_EQ(train.size() + val.size(), 400u);
  EXPECT_NEAR(double(val.size()) / 400.0, 0.2, 0.06);
  std::set<std::string> seen;
  for (const auto& d : train) seen.insert(tok.decode(d));
  for (const auto& d : val) EXPECT_TRUE(seen.insert(tok.decode(d)).second) << "in both splits: " << tok.decode(d);
  EXPECT_EQ(seen.size(), 400u);

  PrepareOptions c = a;
  c.out_dir = work.file("c");
  c.seed = 99;
  (void)fathom::data::prepare_dataset(c);
  EXPECT_NE(fathom::test::read_text(c.out_dir + "/val.bin"), fathom::test::read_text(a.out_dir + "/val.bin"));

  // Without validation every document trains.
  PrepareOptions d = a;
  d.out_dir = work.file("d");
  d.validation_fraction = 0.0;
  const PrepareResult rd = fathom::data::prepare_dataset(d);
  EXPECT_EQ(rd.val_tokens, 0);
  EXPECT_EQ(rd.train_tokens, ra.train_tokens + ra.val_tokens);
}

TEST(Prepare, GlobsJsonArraysAndTokenizerFilePaths) {
  fathom::test::TempDir work;
  copy_corpus(work.file("corpus"));
  fs::create_directories(work.file("corpus/sub"));
  fs::create_directories(work.file("corpus/.hidden"));
  fathom::test::write_text(work.file("corpus/.hidden/skip.txt"), "never read");
  fathom::test::write_text(work.file("corpus/sub/array.json"), R"([{"text": "first"}, "second", {"text": ""}])");
  PrepareOptions o = base_options(work.file("corpus/*.txt"), work.path());
  o.tokenizer_path = work.file("my-tokenizer.json");
  PrepareResult r = fathom::data::prepare_dataset(o);
  EXPECT_EQ(r.documents, 2);  // harbor.txt, observatory.txt
  EXPECT_EQ(r.tokenizer_path, work.file("my-tokenizer.json"));
  EXPECT_TRUE(fs::exists(r.tokenizer_path));

  o.inputs = {work.file("corpus")};  // recursive; the hidden directory is skipped
  o.out_dir = work.file("all");
  r = fathom::data::prepare_dataset(o);
  EXPECT_EQ(r.documents, 2 + 6 + 2);  // empty records are skipped
}

TEST(Prepare, ErrorsNameFileLineAndFix) {
  fathom::test::TempDir work;
  fathom::test::write_text(work.file("bad.jsonl"), "{\"text\": \"ok\"}\n{\"text\": \"broken\"\n");
  PrepareOptions o = base_options(work.file("bad.jsonl"), work.path());
  std::string msg = error_of([&] { fathom::data::prepare_dataset(o); });
  EXPECT_NE(msg.find(work.file("bad.jsonl") + ":2"), std::string::npos) << msg;
  EXPECT_FALSE(fs::exists(o.out_dir + "/manifest.json"));

  fathom::test::write_text(work.file("bad.jsonl"), "{\"text\": \"ok\"}\n\n{\"content\": \"x\", \"id\": 3}\n");
  msg = error_of([&] { fathom::data::prepare_dataset(o); });
  EXPECT_NE(msg.find(work.file("bad.jsonl") + ":3"), std::string::npos) << msg;
  EXPECT_NE(msg.find("content, id"), std::string::npos) << msg;
  EXPECT_NE(msg.find("text_field"), std::string::npos) << msg;

  o.inputs = {work.file("nothing-here.txt")};
  msg = error_of([&] { fathom::data::prepare_dataset(o); });
  EXPECT_NE(msg.find("nothing-here.txt"), std::string::npos) << msg;
  o.inputs = {work.file("*.md")};
  msg = error_of([&] { fathom::data::prepare_dataset(o); });
  EXPECT_NE(msg.find("matches no file"), std::string::npos) << msg;
  o.inputs = {};
  EXPECT_FALSE(error_of([&] { fathom::data::prepare_dataset(o); }).empty());

  o = base_options(corpus_dir(), work.path());
  o.tokenizer_kind = "gpt2";
  o.tokenizer_path = work.file("no-gpt2-here");
  msg = error_of([&] { fathom::data::prepare_dataset(o); });
  EXPECT_NE(msg.find("encoder.json"), std::string::npos) << msg;
  o.tokenizer_kind = "bpe";
  o.validation_fraction = 1.0;
  EXPECT_FALSE(error_of([&] { fathom::data::prepare_dataset(o); }).empty());
}

TEST(Prepare, Gpt2TokenizerFromTheCache) {
  const std::string gpt2 = fathom::test::fathom_cache_dir() + "/tokenizers/gpt2";
  if (!fathom::test::path_exists(gpt2 + "/encoder.json")) GTEST_SKIP() << "no " << gpt2;
  fathom::test::TempDir work;
  PrepareOptions o = base_options(corpus_dir(), work.path());
  o.tokenizer_kind = "gpt2";
  o.tokenizer_path = gpt2;
  o.validation_fraction = 0.0;
  const PrepareResult r = fathom::data::prepare_dataset(o);
  EXPECT_EQ(r.vocab_size, 50257u);
  const Tokenizer tok = Tokenizer::load(r.tokenizer_path);
  Ids want;
  for (const auto& d : corpus_documents(corpus_dir())) {
    const Ids ids = tok.encode(d);
    want.insert(want.end(), ids.begin(), ids.end());
    want.push_back(50256);
  }
  EXPECT_EQ(shard_ids(o.out_dir + "/train.bin"), want);
  EXPECT_EQ(TokenShard(o.out_dir + "/train.bin").dtype(), fathom::data::TokenDtype::kUint16);
  EXPECT_TRUE(fathom::data::prepare_dataset(o).reused);
}

TEST(Prepare, SplitRuleKeepsTheFirstDocumentForTraining) {
  EXPECT_FALSE(fathom::data::is_validation_document(1, 0, 0.99));
  int val = 0;
  for (uint64_t i = 1; i <= 10000; ++i) val += fathom::data::is_validation_document(1, i, 0.1);
  EXPECT_NEAR(val, 1000, 100);
  for (uint64_t i = 0; i < 100; ++i) EXPECT_FALSE(fathom::data::is_validation_document(1, i, 0.0));
}
