// Sampling and generation: filters never emit outside their support, seeded draws repeat,
// greedy cached generation equals greedy full-forward decoding, stop strings are held back and
// cut, streamed pieces add up to the text, multi-byte UTF-8 is never split.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <set>

#include "engine/infer/generator.h"
#include "engine/infer/sampler.h"
#include "engine/model/transformer.h"
#include "engine/tokenizer/tokenizer.h"
#include "tiny_tokenizer.h"

using namespace fathom::infer;
using fathom::testing::tiny_tokenizer;

namespace {

fathom::model::Transformer tiny_model(int64_t vocab) {
  fathom::model::ModelArgs a;
  a.vocab_size = vocab;
  a.d_model = 32;
  a.n_layers = 2;
  a.n_heads = 4;
  a.n_kv_heads = 2;
  a.d_ff = 64;
  a.max_seq_len = 64;
  torch::manual_seed(0);
  return fathom::model::Transformer(a);
}

}  // namespace

TEST(Sampler, TopKNeverEmitsOutsideTheK) {
  torch::manual_seed(1);
  auto logits = torch::randn({50}) * 3;
  SamplingParams p;
  p.top_k = 5;
  p.seed = 7;
  Sampler s(p);
  auto top = std::get<1>(logits.topk(5));
  std::set<int64_t> allowed;
  for (int i = 0; i < 5; ++i) allowed.insert(top[i].item<int64_t>());
  std::set<int64_t> seen;
  for (int i = 0; i < 2000; ++i) {
    auto c = s.sample(logits, {});
    ASSERT_TRUE(allowed.count(c.token)) << c.token;
    seen.insert(c.token);
  }
  EXPECT_GE(seen.size(), 3u) << "top-k 5 at temperature 1 should use several of the five";
}

TEST(Sampler, TopPKeepsTheSmallestNucleusAndMinPCutsTheTail) {
  auto logits = torch::log(torch::tensor({0.5f, 0.3f, 0.1f, 0.06f, 0.04f}));
  SamplingParams p;
  p.top_p = 0.75;  // 0.5 + 0.3 reaches it: {0, 1}
  Sampler s(p);
  auto d = s.distribution(logits, {});
  EXPECT_NEAR(d[0].item<float>(), 0.5 / 0.8, 1e-5);
  EXPECT_NEAR(d[1].item<float>(), 0.3 / 0.8, 1e-5);
  EXPECT_EQ(d.narrow(0, 2, 3).sum().item<float>(), 0.0f);
  SamplingParams q;
  q.min_p = 0.15;  // keep p >= 0.075: {0, 1, 2}
  auto e = Sampler(q).distribution(logits, {});
  EXPECT_GT(e[2].item<float>(), 0.0f);
  EXPECT_EQ(e[3].item<float>(), 0.0f);
  EXPECT_NEAR(e.sum().item<float>(), 1.0f, 1e-6);
}

TEST(Sampler, SeededDrawsRepeatAndPenaltiesApply) {
  torch::manual_seed(2);
  auto logits = torch::randn({40});
  SamplingParams p;
  p.seed = 123;
  p.temperature = 0.9;
  Sampler a(p), b(p);
  for (int i = 0; i < 100; ++i) ASSERT_EQ(a.sample(logits, {}).token, b.sample(logits, {}).token);
  // Greedy with a repetition penalty moves off a repeated argmax.
  SamplingParams g;
  g.temperature = 0;
  const int64_t best = logits.argmax().item<int64_t>();
  EXPECT_EQ(Sampler(g).sample(logits, {}).token, best);
  g.frequency_penalty = 2.0;
  EXPECT_NE(Sampler(g).sample(logits, {best, best, best}).token, best);
  SamplingParams bad;
  bad.top_p = 0;
  EXPECT_NE(bad.validate().find("top_p"), std::string::npos);
}

TEST(Generate, GreedyWithTheCacheEqualsGreedyFullForward) {
  auto tokenizer = tiny_tokenizer();
  auto net = tiny_model(static_cast<int64_t>(tokenizer.vocab_size()));
  net->eval();
  std::vector<int64_t> prompt{5, 17, 42, 99, 3};
  SamplingParams p;
  p.temperature = 0;
  p.max_tokens = 20;
  auto r = generate(net, tokenizer, prompt, p);
  // Reference: recompute the whole sequence every step.
  torch::NoGradGuard ng;
  std::vector<int64_t> seq = prompt;
  for (size_t i = 0; i < r.tokens.size(); ++i) {
    auto logits = net->forward(torch::tensor(seq, torch::kInt64).unsqueeze(0)).select(1, static_cast<int64_t>(seq.size()) - 1).squeeze(0);
    const int64_t next = logits.argmax().item<int64_t>();
    ASSERT_EQ(next, r.tokens[i]) << "step " << i;
    seq.push_back(next);
  }
  EXPECT_FALSE(r.tokens.empty());
}

TEST(Generate, StreamedPiecesAddUpStopStringsCutAndUtf8IsWhole) {
  auto tokenizer = tiny_tokenizer();
  auto net = tiny_model(static_cast<int64_t>(tokenizer.vocab_size()));
  SamplingParams p;
  p.seed = 5;
  p.max_tokens = 60;
  auto ids32 = tokenizer.encode("Der Bär");
  std::vector<int64_t> prompt(ids32.begin(), ids32.end());
  std::string streamed;
  auto r = generate(net, tokenizer, prompt, p, [&](const TokenEvent& ev) {
    streamed += ev.text;
    return true;
  });
  EXPECT_EQ(streamed, r.text);
  std::vector<uint32_t> out(r.tokens.begin(), r.tokens.end());
  EXPECT_EQ(r.text, tokenizer.decode(out));
  // No character is split between two streamed pieces: a piece never ends with the start of a
  // multi-byte character whose continuation bytes begin the next piece. (An untrained model emits
  // byte tokens freely, so characters are split across tokens here, and invalid bytes occur.)
  std::vector<std::string> pieces;
  generate(net, tokenizer, prompt, p, [&](const TokenEvent& ev) {
    if (!ev.text.empty()) pieces.push_back(ev.text);
    return true;
  });
  ASSERT_FALSE(pieces.empty());
  auto needed = [](unsigned char c) -> size_t { return (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0; };
  for (size_t i = 0; i + 1 < pieces.size(); ++i) {
    const std::string& a = pieces[i];
    const std::string& b = pieces[i + 1];
    for (size_t back = 1; back <= 3 && back <= a.size(); ++back) {
      const size_t n = needed(static_cast<unsigned char>(a[a.size() - back]));
      if (n == 0 || n <= back) continue;
      bool valid_so_far = true;  // the bytes after the lead in `a` must be continuation bytes
      for (size_t k = a.size() - back + 1; k < a.size(); ++k) valid_so_far &= (static_cast<unsigned char>(a[k]) >> 6) == 2;
      if (!valid_so_far) continue;
      const size_t missing = n - back;
      bool continues = b.size() >= missing;
      for (size_t k = 0; continues && k < missing; ++k) continues = (static_cast<unsigned char>(b[k]) >> 6) == 2;
      std::string hex;
      for (unsigned char ch : a.substr(a.size() - back) + "|" + b.substr(0, 4)) hex += std::to_string(ch) + " ";
      EXPECT_FALSE(continues) << "a character was split between streamed pieces " << i << " and " << i + 1 << ": " << hex;
    }
  }
  // Stop strings: take a substring of the unconstrained output as the stop; the same seed stops
  // right before it, and the stop itself is not in the text.
  if (r.text.size() > 6) {
    const std::string stop = r.text.substr(r.text.size() / 2, 3);
    SamplingParams ps = p;
    ps.stop = {stop};
    std::string streamed2;
    auto rs = generate(net, tokenizer, prompt, ps, [&](const TokenEvent& ev) {
      streamed2 += ev.text;
      return true;
    });
    EXPECT_EQ(rs.finish_reason, "stop");
    EXPECT_EQ(rs.text, r.text.substr(0, r.text.find(stop)));
    EXPECT_EQ(streamed2, rs.text) << "text after a stop-string prefix must never be streamed";
  }
  EXPECT_EQ(stop_prefix_overlap("hello wor", {"world"}), 3u);
  EXPECT_EQ(stop_prefix_overlap("hello", {"xyz"}), 0u);
}

TEST(Generate, PromptLongerThanTheContextIsRefused) {
  auto tokenizer = tiny_tokenizer();
  auto net = tiny_model(static_cast<int64_t>(tokenizer.vocab_size()));
  std::vector<int64_t> prompt(64, 7);
  EXPECT_THROW(generate(net, tokenizer, prompt, SamplingParams{}), std::invalid_argument);
}

// A checkpoint whose embedding is padded past the tokenizer (Qwen's 151,936 rows for 151,669
// tokens) never emits a padding row, even when that row scores highest.
TEST(Generate, PaddedVocabularyRowsAreNeverSampled) {
  auto tokenizer = tiny_tokenizer();
  const auto V = static_cast<int64_t>(tokenizer.vocab_size());
  fathom::model::ModelArgs a;
  a.vocab_size = V + 24;
  a.d_model = 32;
  a.n_layers = 2;
  a.n_heads = 4;
  a.n_kv_heads = 2;
  a.d_ff = 64;
  a.max_seq_len = 64;
  a.tie_embeddings = false;
  torch::manual_seed(0);
  fathom::model::Transformer net(a);
  net->eval();
  std::vector<int64_t> prompt{5, 17, 42};
  {
    torch::NoGradGuard ng;
    auto logits = net->forward(torch::tensor(prompt, torch::kInt64).unsqueeze(0)).select(1, 2).squeeze(0);
    const auto best = logits.narrow(0, 0, V).argmax().item<int64_t>();
    auto w = net->lm_head->weight;
    const double sign = logits[best].item<double>() >= 0 ? 10.0 : -10.0;
    for (int64_t r = V; r < V + 24; ++r) w[r].copy_(w[best] * sign);
    ASSERT_GE(net->forward(torch::tensor(prompt, torch::kInt64).unsqueeze(0)).select(1, 2).squeeze(0).argmax().item<int64_t>(), V);
  }
  SamplingParams p;
  p.temperature = 0;
  p.max_tokens = 10;
  const auto r = generate(net, tokenizer, prompt, p);
  ASSERT_FALSE(r.tokens.empty());
  for (auto t : r.tokens) EXPECT_LT(t, V);
  p.temperature = 1.0;
  p.seed = 3;
  for (auto t : generate(net, tokenizer, prompt, p).tokens) EXPECT_LT(t, V);
}
