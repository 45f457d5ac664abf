// prepare_dataset on the ~11 MB SOTU corpus: first run (train bpe 4096 + tokenise), reuse, and
// the GPT-2 tokenizer. Prints timings; fails only when far off (a minute).
#include <gtest/gtest.h>

#include <chrono>

#include "engine/data/prepare.h"
#include "tokenizer/test_support.h"

namespace {

std::string sotu() { return fathom::test::fathom_cache_dir() + "/corpus/sotu"; }

double timed(const std::function<void()>& f) {
  const auto t0 = std::chrono::steady_clock::now();
  f();
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

}  // namespace

TEST(PrepareBench, Sotu) {
  fathom::test::TempDir work;
  fathom::data::PrepareOptions o;
  o.inputs = {sotu()};
  o.out_dir = work.file("bpe");
  o.tokenizer_path = work.file("bpe/tokenizer.json");
  o.vocab_size = 4096;
  o.validation_fraction = 0.05;
  fathom::data::PrepareResult r;
  const double first = timed([&] { r = fathom::data::prepare_dataset(o); });
  std::printf("[bench] prepare bpe-4096 (train + tokenise) %lld docs, %lld train + %lld val tokens: %.2f s\n",
              static_cast<long long>(r.documents), static_cast<long long>(r.train_tokens),
              static_cast<long long>(r.val_tokens), first);
  EXPECT_LT(first, 60.0);
  const double again = timed([&] { r = fathom::data::prepare_dataset(o); });
  EXPECT_TRUE(r.reused);
  std::printf("[bench] prepare reuse check: %.3f s\n", again);

  o.out_dir = work.file("gpt2");
  o.tokenizer_kind = "gpt2";
  o.tokenizer_path = fathom::test::fathom_cache_dir() + "/tokenizers/gpt2";
  const double gpt2 = timed([&] { r = fathom::data::prepare_dataset(o); });
  std::printf("[bench] prepare gpt2: %lld train + %lld val tokens: %.2f s (includes loading GPT-2)\n",
              static_cast<long long>(r.train_tokens), static_cast<long long>(r.val_tokens), gpt2);
}

int main(int argc, char** argv) {
  return fathom::test::run_tests_requiring(
      argc, argv, {sotu(), fathom::test::fathom_cache_dir() + "/tokenizers/gpt2/encoder.json"});
}
