// Speed on the SOTU corpus (~11 MB): GPT-2 and Qwen3 encoding MB/s (1 thread and all threads),
// BPE training time for vocab 4096. Prints the numbers; fails only when far off the targets
// (encode >= 5 MB/s per thread, training < 60 s), so a slow, shared machine does not flake it.
#include <dirent.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <thread>

#include "engine/tokenizer/tokenizer.h"
#include "test_support.h"

using fathom::tok::Tokenizer;
using Clock = std::chrono::steady_clock;

namespace {

std::string sotu_dir() { return fathom::test::fathom_cache_dir() + "/corpus/sotu"; }

std::vector<std::string> sotu_files() {
  std::vector<std::string> out;
  if (DIR* d = ::opendir(sotu_dir().c_str())) {
    while (dirent* e = ::readdir(d)) {
      const std::string name = e->d_name;
      if (name.size() > 4 && name.substr(name.size() - 4) == ".txt") out.push_back(sotu_dir() + "/" + name);
    }
    ::closedir(d);
  }
  std::sort(out.begin(), out.end());
  return out;
}

const std::vector<std::string>& sotu_texts() {
  static const std::vector<std::string> texts = [] {
    std::vector<std::string> t;
    for (const auto& f : sotu_files()) t.push_back(fathom::test::read_text(f));
    return t;
  }();
  return texts;
}

size_t total_bytes() {
  size_t n = 0;
  for (const auto& t : sotu_texts()) n += t.size();
  return n;
}

double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

// Encodes the whole corpus with `threads` threads (documents dealt round-robin); returns MB/s.
double encode_mb_per_s(const Tokenizer& tok, unsigned threads, size_t* tokens_out) {
  const auto& texts = sotu_texts();
  std::vector<size_t> tokens(threads, 0);
  const auto t0 = Clock::now();
  std::vector<std::thread> pool;
  for (unsigned w = 0; w < threads; ++w) {
    pool.emplace_back([&, w] {
      std::vector<uint32_t> ids;
      for (size_t i = w; i < texts.size(); i += threads) {
        ids.clear();
        tok.encode_append(texts[i], ids);
        tokens[w] += ids.size();
      }
    });
  }
  for (auto& th : pool) th.join();
  const double s = seconds_since(t0);
  if (tokens_out) {
    *tokens_out = 0;
    for (size_t n : tokens) *tokens_out += n;
  }
  return double(total_bytes()) / 1e6 / s;
}

void report_encode(const char* name, const Tokenizer& tok) {
  size_t tokens = 0;
  // The first pass fills this thread's word cache (cold); the second one finds it warm.
  const double cold = encode_mb_per_s(tok, 1, nullptr);
  const double one = encode_mb_per_s(tok, 1, &tokens);
  const unsigned hw = std::max(1u, std::thread::hardware_concurrency());
  const double all = encode_mb_per_s(tok, hw, nullptr);
  std::printf("[bench] %s encode: %.1f MB/s on 1 thread (%.1f MB/s cold cache), %.1f MB/s on %u "
              "threads; %.2f MB -> %zu tokens (%.2f bytes/token)\n",
              name, one, cold, all, hw, double(total_bytes()) / 1e6, tokens,
              double(total_bytes()) / double(tokens));
  EXPECT_GT(cold, 5.0) << name << " encoding is far slower than expected";
}

}  // namespace

TEST(Bench, Gpt2EncodeSotu) {
  const Tokenizer tok = Tokenizer::load(fathom::test::fathom_cache_dir() + "/tokenizers/gpt2");
  report_encode("gpt2", tok);
  // Exactness over the whole corpus, not only speed.
  for (const auto& text : sotu_texts()) ASSERT_EQ(tok.decode(tok.encode(text)), text);
}

TEST(Bench, Qwen3EncodeSotu) {
  const std::string path = fathom::test::fathom_cache_dir() + "/tokenizers/qwen3";
  if (!fathom::test::path_exists(path + "/tokenizer.json")) GTEST_SKIP() << "no Qwen3 tokenizer";
  const auto t0 = Clock::now();
  const Tokenizer tok = Tokenizer::load(path);
  std::printf("[bench] qwen3 tokenizer.json load: %.2f s\n", seconds_since(t0));
  report_encode("qwen3", tok);
}

TEST(Bench, TrainVocab4096OnSotu) {
  fathom::tok::BpeTrainOptions o;
  o.vocab_size = 4096;
  const auto t0 = Clock::now();
  const Tokenizer tok = fathom::tok::train_bpe(sotu_files(), o);
  const double s = seconds_since(t0);
  size_t tokens = 0;
  for (const auto& text : sotu_texts()) tokens += tok.encode(text).size();
  std::printf("[bench] train_bpe vocab %zu on %.2f MB (%zu files, %u threads): %.2f s; the "
              "corpus encodes to %zu tokens (%.2f bytes/token)\n",
              tok.vocab_size(), double(total_bytes()) / 1e6, sotu_files().size(),
              std::thread::hardware_concurrency(), s, tokens, double(total_bytes()) / double(tokens));
  EXPECT_EQ(tok.vocab_size(), 4096u);
  EXPECT_LT(s, 60.0);
}

int main(int argc, char** argv) {
  return fathom::test::run_tests_requiring(
      argc, argv, {sotu_dir(), fathom::test::fathom_cache_dir() + "/tokenizers/gpt2/encoder.json"});
}
