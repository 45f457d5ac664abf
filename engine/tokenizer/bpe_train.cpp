// Byte-level BPE training with the GPT-2 pre-tokenizer.
//   1. Count pre-token pieces ("words"), in parallel over chunks of the input; special tokens are
//      cut out of the text first so that no merge learns them.
//   2. Merge: keep count(pair) summed over words (weighted by word count) and, per pair, the words
//      holding it. Each step takes the most frequent pair from a lazy max-heap (an entry whose
//      count is stale is re-pushed with the current count), rewrites only the words that hold the
//      pair and updates the counts of the pairs those words gain or lose. Cost per merge is
//      proportional to the words touched, not to the corpus.
// Ties are broken by the smaller (left id, right id), so the result does not depend on threads.
#include <algorithm>
#include <atomic>
#include <cctype>
#include <cstring>
#include <fstream>
#include <queue>
#include <thread>
#include <unordered_map>

#include "engine/tokenizer/pretokenizer.h"
#include "engine/tokenizer/tokenizer.h"
#include "engine/tokenizer/tokenizer_internal.h"
#include "engine/tokenizer/unicode.h"

namespace fathom::tok {
namespace {

using WordCounts = std::unordered_map<std::string, uint64_t>;

struct Chunk {
  const char* data;
  size_t size;
};

// Splits a text into pieces of about `target` bytes at "X\nY" boundaries (X, Y ASCII and not
// white space), where the GPT-2 pattern makes "\n" a piece of its own, so counting chunks
// separately gives the same words as counting the whole text.
void split_chunks(std::string_view text, size_t target, std::vector<Chunk>& out) {
  size_t begin = 0;
  while (text.size() - begin > target * 2) {
    size_t cut = std::string_view::npos;
    for (size_t p = begin + target; p + 1 < text.size() && p < begin + target * 2; ++p) {
      const auto prev = static_cast<uint8_t>(text[p - 1]);
      const auto next = static_cast<uint8_t>(text[p + 1]);
      if (text[p] == '\n' && prev < 0x80 && next < 0x80 && !std::isspace(prev) &&
          !std::isspace(next)) {
        cut = p + 1;
        break;
      }
    }
    if (cut == std::string_view::npos) break;  // no safe cut nearby: keep the rest whole
    out.push_back({text.data() + begin, cut - begin});
    begin = cut;
  }
  out.push_back({text.data() + begin, text.size() - begin});
}

void count_chunk(const Chunk& chunk, const std::vector<std::string>& specials, WordCounts& counts) {
  std::string_view text(chunk.data, chunk.size);
  auto count_plain = [&](std::string_view plain) {
    pretokenize(PreTokenizerKind::kGpt2, plain,
                [&](std::string_view piece) { ++counts[std::string(piece)]; });
  };
  // Cut out special tokens (leftmost, longest first among those starting there).
  size_t pos = 0;
  while (!specials.empty()) {
    size_t best = std::string_view::npos, best_len = 0;
    for (const std::string& s : specials) {
      const size_t at = text.find(s, pos);
      if (at < best || (at == best && s.size() > best_len)) {
        best = at;
        best_len = s.size();
      }
    }
    if (best == std::string_view::npos) break;
    count_plain(text.substr(pos, best - pos));
    pos = best + best_len;
  }
  count_plain(text.substr(pos));
}

struct PairHash {
  size_t operator()(uint64_t k) const { return size_t((k * 0x9E3779B97F4A7C15ull) >> 17); }
};

uint64_t pair_key(uint32_t a, uint32_t b) { return (uint64_t(a) << 32) | b; }

Tokenizer train_from_chunks(const std::vector<Chunk>& chunks, const BpeTrainOptions& opt) {
  auto progress = [&](double f, const char* stage) {
    if (opt.progress) opt.progress(f, stage);
  };
  const size_t n_special = opt.special_tokens.size();
  for (const std::string& s : opt.special_tokens) {
    if (s.empty()) throw TokenizerError("train_bpe: a special token is empty");
    // tokenizer.json stores token contents as JSON strings, which must be valid UTF-8.
    for (size_t i = 0; i < s.size();) {
      const unicode::Char c = unicode::decode_utf8(s.data() + i, s.data() + s.size());
      if (!c.valid) throw TokenizerError("train_bpe: special token '" + s + "' is not valid UTF-8");
      i += c.len;
    }
  }
  if (opt.vocab_size < 256 + n_special) {
    throw TokenizerError("train_bpe: vocab_size " + std::to_string(opt.vocab_size) +
                         " is smaller than the 256 byte tokens plus " + std::to_string(n_special) +
                         " special tokens; use at least " + std::to_string(256 + n_special));
  }

  // ---- 1. word counts, in parallel -----------------------------------------------------------
  size_t total_bytes = 0;
  for (const Chunk& c : chunks) total_bytes += c.size;
  unsigned threads = opt.threads > 0 ? unsigned(opt.threads) : std::thread::hardware_concurrency();
  threads = std::max(1u, std::min<unsigned>(threads, unsigned(chunks.size())));
  std::vector<WordCounts> partial(threads);
  std::atomic<size_t> next{0}, done_bytes{0};
  auto worker = [&](unsigned t) {
    for (size_t i; (i = next.fetch_add(1)) < chunks.size();) {
      count_chunk(chunks[i], opt.special_tokens, partial[t]);
      done_bytes += chunks[i].size;
    }
  };
  progress(0.0, "counting words");
  {
    std::vector<std::thread> pool;
    for (unsigned t = 1; t < threads; ++t) pool.emplace_back(worker, t);
    // The calling thread works too and reports progress between its chunks.
    for (size_t i; (i = next.fetch_add(1)) < chunks.size();) {
      count_chunk(chunks[i], opt.special_tokens, partial[0]);
      done_bytes += chunks[i].size;
      if (total_bytes) progress(0.3 * double(done_bytes) / double(total_bytes), "counting words");
    }
    for (auto& th : pool) th.join();
  }
  WordCounts& counts = partial[0];
  for (unsigned t = 1; t < threads; ++t) {
    for (auto& [w, c] : partial[t]) counts[w] += c;
    WordCounts().swap(partial[t]);
  }

  // ---- 2. merges ---------------------------------------------------------------------------
  // Ids: 0..255 are the bytes themselves, merges follow, special tokens come last.
  std::vector<std::string> token_bytes(256);
  for (int b = 0; b < 256; ++b) token_bytes[size_t(b)] = std::string(1, char(b));
  std::unordered_map<std::string, uint32_t> id_of_bytes;
  for (uint32_t b = 0; b < 256; ++b) id_of_bytes[token_bytes[b]] = b;

  // Words sorted by bytes so that iteration order (and so everything below) is deterministic.
  std::vector<std::pair<std::string, uint64_t>> sorted(counts.begin(), counts.end());
  WordCounts().swap(counts);
  std::sort(sorted.begin(), sorted.end());
  std::vector<std::vector<uint32_t>> words(sorted.size());
  std::vector<uint64_t> word_count(sorted.size());
  for (size_t w = 0; w < sorted.size(); ++w) {
    const std::string& s = sorted[w].first;
    words[w].assign(reinterpret_cast<const uint8_t*>(s.data()),
                    reinterpret_cast<const uint8_t*>(s.data()) + s.size());
    word_count[w] = sorted[w].second;
  }
  std::vector<std::pair<std::string, uint64_t>>().swap(sorted);

  std::unordered_map<uint64_t, int64_t, PairHash> pair_count;
  std::unordered_map<uint64_t, std::vector<uint32_t>, PairHash> pair_words;
  for (size_t w = 0; w < words.size(); ++w) {
    const auto& sy = words[w];
    for (size_t i = 0; i + 1 < sy.size(); ++i) {
      const uint64_t k = pair_key(sy[i], sy[i + 1]);
      pair_count[k] += int64_t(word_count[w]);
      auto& list = pair_words[k];
      if (list.empty() || list.back() != w) list.push_back(uint32_t(w));
    }
  }
  // Max-heap on (count, then smaller pair first).
  using Entry = std::pair<int64_t, uint64_t>;
  auto less = [](const Entry& x, const Entry& y) {
    return x.first != y.first ? x.first < y.first : x.second > y.second;
  };
  std::priority_queue<Entry, std::vector<Entry>, decltype(less)> heap(less);
  for (const auto& [k, c] : pair_count) heap.push({c, k});

  std::vector<std::pair<uint32_t, uint32_t>> merges;
  const size_t target_tokens = opt.vocab_size - n_special;
  std::vector<uint32_t> stamp(words.size(), UINT32_MAX);
  std::vector<uint64_t> touched;
  progress(0.3, "merging");
  while (token_bytes.size() < target_tokens && !heap.empty()) {
    const auto [stored, key] = heap.top();
    heap.pop();
    auto pc = pair_count.find(key);
    const int64_t current = pc == pair_count.end() ? 0 : pc->second;
    if (current != stored) {
      if (current > 0) heap.push({current, key});
      continue;
    }
    if (current <= 0) break;
    const uint32_t a = uint32_t(key >> 32), b = uint32_t(key & 0xFFFFFFFFu);
    std::string merged = token_bytes[a] + token_bytes[b];
    uint32_t id;
    // Two merges can spell the same bytes ("a"+"bc", "ab"+"c"); both map to one token, as in HF.
    if (auto it = id_of_bytes.find(merged); it != id_of_bytes.end()) {
      id = it->second;
    } else {
      id = uint32_t(token_bytes.size());
      id_of_bytes.emplace(merged, id);
      token_bytes.push_back(std::move(merged));
    }
    merges.emplace_back(a, b);
    const uint32_t step = uint32_t(merges.size());

    touched.clear();
    std::vector<uint32_t> holders;
    holders.swap(pair_words[key]);
    for (uint32_t w : holders) {
      if (stamp[w] == step) continue;
      stamp[w] = step;
      auto& sy = words[w];
      bool has = false;
      for (size_t i = 0; i + 1 < sy.size(); ++i) {
        if (sy[i] == a && sy[i + 1] == b) {
          has = true;
          break;
        }
      }
      if (!has) continue;  // the list is a superset: this word lost the pair in an earlier merge
      const auto cnt = int64_t(word_count[w]);
      for (size_t i = 0; i + 1 < sy.size(); ++i) pair_count[pair_key(sy[i], sy[i + 1])] -= cnt;
      size_t out = 0;
      for (size_t i = 0; i < sy.size();) {
        if (i + 1 < sy.size() && sy[i] == a && sy[i + 1] == b) {
          sy[out++] = id;
          i += 2;
        } else {
          sy[out++] = sy[i++];
        }
      }
      sy.resize(out);
      for (size_t i = 0; i + 1 < sy.size(); ++i) {
        const uint64_t k = pair_key(sy[i], sy[i + 1]);
        pair_count[k] += cnt;
        if (sy[i] == id || sy[i + 1] == id) {
          auto& list = pair_words[k];
          if (list.empty() || list.back() != w) list.push_back(w);
          touched.push_back(k);
        }
      }
    }
    pair_count.erase(key);
    pair_words.erase(key);
    // Only pairs holding the new token can have grown; push their current counts.
    std::sort(touched.begin(), touched.end());
    touched.erase(std::unique(touched.begin(), touched.end()), touched.end());
    for (uint64_t k : touched) {
      const int64_t c = pair_count[k];
      if (c > 0) heap.push({c, k});
    }
    if ((merges.size() & 63) == 0) {
      progress(0.3 + 0.7 * double(token_bytes.size() - 256) / double(target_tokens - 256 + 1),
               "merging");
    }
  }

  TokenizerParts parts;
  parts.kind = "bpe";
  parts.pretokenizer = PreTokenizerKind::kGpt2;
  parts.vocab.reserve(token_bytes.size());
  for (size_t id = 0; id < token_bytes.size(); ++id) parts.vocab.emplace_back(uint32_t(id), token_bytes[id]);
  parts.merges = std::move(merges);
  uint32_t next_id = uint32_t(token_bytes.size());
  for (const std::string& s : opt.special_tokens) {
    AddedToken t;
    t.content = s;
    t.special = true;
    auto it = id_of_bytes.find(s);  // a merge may already spell it: reuse that id (as HF would)
    t.id = it != id_of_bytes.end() ? it->second : next_id++;
    if (it == id_of_bytes.end()) {
      parts.vocab.emplace_back(t.id, s);
      id_of_bytes.emplace(s, t.id);
    }
    parts.added.push_back(std::move(t));
  }
  if (!opt.special_tokens.empty()) {
    const auto& names = opt.special_tokens;
    parts.eos_token = std::find(names.begin(), names.end(), "<|endoftext|>") != names.end()
                          ? std::string("<|endoftext|>")
                          : names.front();
  }
  progress(1.0, "done");
  return TokenizerBuilder::build(std::move(parts));
}

}  // namespace

Tokenizer train_bpe_from_texts(const std::vector<std::string>& texts, const BpeTrainOptions& opt) {
  std::vector<Chunk> chunks;
  size_t budget = opt.max_bytes ? opt.max_bytes : SIZE_MAX;
  for (const std::string& t : texts) {
    if (budget == 0) break;
    const size_t take = std::min(budget, t.size());
    split_chunks(std::string_view(t.data(), take), size_t(1) << 20, chunks);
    budget -= take;
  }
  return train_from_chunks(chunks, opt);
}

Tokenizer train_bpe(const std::vector<std::string>& files, const BpeTrainOptions& opt) {
  if (files.empty()) throw TokenizerError("train_bpe: no input files given");
  std::vector<std::string> texts;
  size_t budget = opt.max_bytes ? opt.max_bytes : SIZE_MAX;
  for (const std::string& path : files) {
    if (budget == 0) break;
    std::ifstream in(path, std::ios::binary);
    if (!in) {
      throw TokenizerError(path + ": cannot open training file (" + std::strerror(errno) + ")");
    }
    in.seekg(0, std::ios::end);
    const auto size = static_cast<size_t>(std::max<std::streamoff>(0, in.tellg()));
    in.seekg(0);
    std::string text(std::min(size, budget), '\0');
    in.read(text.data(), std::streamsize(text.size()));
    text.resize(size_t(in.gcount()));
    budget -= text.size();
    texts.push_back(std::move(text));
  }
  BpeTrainOptions o = opt;
  o.max_bytes = 0;  // already applied
  return train_bpe_from_texts(texts, o);
}

}  // namespace fathom::tok
