// Tokenizer state, encoding (added tokens -> NFC -> pre-tokenizer -> byte-level BPE) and decoding.
// Speed: each pre-token piece is looked up in a per-thread cache before running BPE; BPE looks pairs
// up in an open-addressing (left id, right id) -> (rank, merged id) table.
#include <algorithm>
#include <atomic>
#include <cstring>
#include <queue>
#include <sstream>
#include <unordered_map>

#include "engine/tokenizer/tokenizer.h"
#include "engine/tokenizer/tokenizer_internal.h"
#include "engine/tokenizer/unicode.h"

namespace fathom::tok {
namespace {

constexpr uint32_t kNoRank = UINT32_MAX;

// (left id, right id) -> (rank, merged id), open addressing with linear probing.
class PairTable {
 public:
  struct Value {
    uint32_t rank = kNoRank;
    uint32_t id = 0;
  };
  void build(const std::vector<std::pair<uint32_t, uint32_t>>& pairs,
             const std::vector<uint32_t>& merged_ids) {
    size_t cap = 16;
    while (cap < pairs.size() * 2 + 1) cap <<= 1;
    mask_ = cap - 1;
    keys_.assign(cap, kEmpty);
    values_.assign(cap, Value{});
    for (size_t r = 0; r < pairs.size(); ++r) {
      const uint64_t key = make_key(pairs[r].first, pairs[r].second);
      size_t i = slot(key);
      while (keys_[i] != kEmpty && keys_[i] != key) i = (i + 1) & mask_;
      if (keys_[i] == key) continue;  // a repeated merge keeps its first (lowest) rank
      keys_[i] = key;
      values_[i] = Value{uint32_t(r), merged_ids[r]};
    }
  }
  Value find(uint32_t a, uint32_t b) const {
    if (keys_.empty()) return {};
    const uint64_t key = make_key(a, b);
    for (size_t i = slot(key);; i = (i + 1) & mask_) {
      if (keys_[i] == key) return values_[i];
      if (keys_[i] == kEmpty) return {};
    }
  }

 private:
  static constexpr uint64_t kEmpty = UINT64_MAX;
  static uint64_t make_key(uint32_t a, uint32_t b) { return (uint64_t(a) << 32) | b; }
  size_t slot(uint64_t key) const { return size_t((key * 0x9E3779B97F4A7C15ull) >> 20) & mask_; }
  size_t mask_ = 0;
  std::vector<uint64_t> keys_;
  std::vector<Value> values_;
};

uint64_t hash_bytes(std::string_view s) {
  uint64_t h = 0x9E3779B97F4A7C15ull ^ (s.size() * 0xff51afd7ed558ccdull);
  size_t i = 0;
  for (; i + 8 <= s.size(); i += 8) {
    uint64_t w;
    std::memcpy(&w, s.data() + i, 8);
    h = (h ^ w) * 0xbf58476d1ce4e5b9ull;
    h ^= h >> 31;
  }
  uint64_t tail = 0;
  std::memcpy(&tail, s.data() + i, s.size() - i);
  h = (h ^ tail) * 0x94d049bb133111ebull;
  h ^= h >> 29;
  h *= 0xbf58476d1ce4e5b9ull;
  h ^= h >> 32;
  return h | 1;  // 0 marks an empty slot
}

// Per-thread memo of piece bytes -> token ids. Bounded: when it reaches kMaxEntries it is
// cleared, which costs one re-encode of each frequent word and keeps memory flat on any input.
class WordCache {
 public:
  static constexpr size_t kMaxEntries = size_t(1) << 17;
  static constexpr size_t kMaxKeyBytes = 128;  // longer pieces are rare: encode them each time

  bool find(std::string_view key, uint64_t h, const uint32_t*& ids, uint32_t& n) const {
    if (slots_.empty()) return false;
    for (size_t i = h & mask_;; i = (i + 1) & mask_) {
      const Slot& s = slots_[i];
      if (s.hash == 0) return false;
      if (s.hash == h && s.key_len == key.size() &&
          std::memcmp(keys_.data() + s.key_off, key.data(), key.size()) == 0) {
        ids = values_.data() + s.val_off;
        n = s.val_len;
        return true;
      }
    }
  }
  void insert(std::string_view key, uint64_t h, const uint32_t* ids, size_t n) {
    if (key.size() > kMaxKeyBytes) return;
    if ((used_ + 1) * 2 > slots_.size()) grow();
    const Slot s{h, uint32_t(keys_.size()), uint32_t(key.size()), uint32_t(values_.size()),
                 uint32_t(n)};
    keys_.append(key.data(), key.size());
    values_.insert(values_.end(), ids, ids + n);
    place(s);
    ++used_;
  }
  void clear() {
    slots_.clear();
    keys_.clear();
    values_.clear();
    used_ = 0;
    mask_ = 0;
  }

 private:
  struct Slot {
    uint64_t hash = 0;
    uint32_t key_off = 0, key_len = 0, val_off = 0, val_len = 0;
  };
  void place(const Slot& s) {
    size_t i = s.hash & mask_;
    while (slots_[i].hash != 0) i = (i + 1) & mask_;
    slots_[i] = s;
  }
  void grow() {
    if (slots_.size() >= kMaxEntries * 2) {  // full: start over rather than grow without bound
      clear();
    }
    const size_t cap = slots_.empty() ? 4096 : slots_.size() * 2;
    std::vector<Slot> old;
    old.swap(slots_);
    slots_.assign(cap, Slot{});
    mask_ = cap - 1;
    for (const Slot& s : old) {
      if (s.hash != 0) place(s);
    }
  }
  std::vector<Slot> slots_;
  std::string keys_;
  std::vector<uint32_t> values_;
  size_t used_ = 0;
  size_t mask_ = 0;
};

// The caches of the last few tokenizers this thread used, keyed by a never-reused tokenizer uid,
// so a copy of a tokenizer shares its cache and a destroyed one can never be confused with a new one.
WordCache& thread_cache(uint64_t uid) {
  struct Entry {
    uint64_t uid = 0;
    uint64_t last_use = 0;
    WordCache cache;
  };
  thread_local Entry entries[4];
  thread_local uint64_t clock = 0;
  ++clock;
  Entry* victim = &entries[0];
  for (Entry& e : entries) {
    if (e.uid == uid) {
      e.last_use = clock;
      return e.cache;
    }
    if (e.last_use < victim->last_use) victim = &e;
  }
  victim->uid = uid;
  victim->last_use = clock;
  victim->cache.clear();
  return victim->cache;
}

std::atomic<uint64_t> g_next_uid{1};

bool is_word_char(const unicode::Char& c) {
  if (!c.valid) return false;
  if (c.cp == '_') return true;
  const auto cls = unicode::char_class(c.cp);
  return cls == unicode::kLetter || cls == unicode::kNumber;
}

// Start of the character that ends at `end` (> begin), for scanning UTF-8 backwards.
size_t prev_char_start(std::string_view s, size_t begin, size_t end) {
  size_t b = end - 1;
  while (b > begin && end - b < 4 && (static_cast<uint8_t>(s[b]) & 0xC0) == 0x80) --b;
  const unicode::Char c = unicode::decode_utf8(s.data() + b, s.data() + end);
  return (c.valid && b + c.len == end) ? b : end - 1;
}

}  // namespace

// ---------------------------------------------------------------------------------------------
struct Tokenizer::Impl {
  uint64_t uid = 0;
  std::string kind;
  std::string source;
  std::vector<std::string> id_bytes;  // raw bytes by id; empty for holes
  enum : uint8_t { kPresent = 1, kModel = 2, kAdded = 4, kSpecial = 8 };
  std::vector<uint8_t> id_flags;
  std::unordered_map<std::string, uint32_t> model_ids;  // model vocabulary, raw bytes -> id
  std::unordered_map<std::string, uint32_t> added_ids;  // added tokens, content -> id
  std::array<uint32_t, 256> byte_ids{};
  std::vector<std::pair<uint32_t, uint32_t>> merges;
  PairTable pairs;
  std::vector<AddedToken> added;
  AddedTokenMatcher match_all, match_plain;  // all added tokens / only the non-special ones
  PreTokenizerKind pretokenizer = PreTokenizerKind::kGpt2;
  bool add_prefix_space = false;
  bool nfc = false;
  bool ignore_merges = false;
  std::optional<uint32_t> eos;

  void bpe(std::string_view piece, std::vector<uint32_t>& out) const;
  void encode_piece(WordCache& cache, std::string_view piece, std::vector<uint32_t>& out) const;
  void encode_text(std::string_view text, std::vector<uint32_t>& out) const;
  void encode(std::string_view text, const AddedTokenMatcher& matcher,
              std::vector<uint32_t>& out) const;
};

// Byte-level BPE of one piece: start from one token per byte and repeatedly merge the adjacent
// pair of lowest rank, leftmost first (= GPT-2's encoder.py and HF's BPE::merge_word).
void Tokenizer::Impl::bpe(std::string_view piece, std::vector<uint32_t>& out) const {
  const size_t n = piece.size();
  if (n == 1) {
    out.push_back(byte_ids[static_cast<uint8_t>(piece[0])]);
    return;
  }
  if (ignore_merges) {  // Llama 3: a piece that is itself a token is taken whole
    auto it = model_ids.find(std::string(piece));
    if (it != model_ids.end()) {
      out.push_back(it->second);
      return;
    }
  }
  if (n <= 64) {
    // Short pieces: linear scans over a small array beat any heap (tiktoken does the same).
    thread_local std::vector<uint32_t> parts;
    thread_local std::vector<PairTable::Value> vals;  // vals[i]: pair (parts[i], parts[i+1])
    parts.resize(n);
    for (size_t i = 0; i < n; ++i) parts[i] = byte_ids[static_cast<uint8_t>(piece[i])];
    vals.resize(n - 1);
    for (size_t i = 0; i + 1 < n; ++i) vals[i] = pairs.find(parts[i], parts[i + 1]);
    while (parts.size() > 1) {
      size_t best = 0;
      for (size_t i = 1; i < vals.size(); ++i) {
        if (vals[i].rank < vals[best].rank) best = i;
      }
      if (vals[best].rank == kNoRank) break;
      parts[best] = vals[best].id;
      parts.erase(parts.begin() + long(best) + 1);
      vals.erase(vals.begin() + long(best));
      if (best < vals.size()) vals[best] = pairs.find(parts[best], parts[best + 1]);
      if (best > 0) vals[best - 1] = pairs.find(parts[best - 1], parts[best]);
    }
    out.insert(out.end(), parts.begin(), parts.end());
    return;
  }
  // Long pieces (runs of spaces, symbols, long words): doubly linked symbols + a min-heap of
  // (rank, position). A popped entry is stale when the pair now at that position has another
  // rank; ranks identify pairs uniquely, so that check suffices.
  struct Sym {
    uint32_t id;
    int32_t prev, next;
  };
  std::vector<Sym> syms(n);
  for (size_t i = 0; i < n; ++i) {
    syms[i] = {byte_ids[static_cast<uint8_t>(piece[i])], int32_t(i) - 1,
               i + 1 < n ? int32_t(i + 1) : -1};
  }
  using Entry = std::pair<uint32_t, int32_t>;  // (rank, left position)
  std::priority_queue<Entry, std::vector<Entry>, std::greater<Entry>> heap;
  for (size_t i = 0; i + 1 < n; ++i) {
    const auto v = pairs.find(syms[i].id, syms[i + 1].id);
    if (v.rank != kNoRank) heap.push({v.rank, int32_t(i)});
  }
  while (!heap.empty()) {
    const auto [rank, pos] = heap.top();
    heap.pop();
    Sym& left = syms[size_t(pos)];
    if (left.id == UINT32_MAX || left.next < 0) continue;
    Sym& right = syms[size_t(left.next)];
    const auto v = pairs.find(left.id, right.id);
    if (v.rank != rank) continue;
    left.id = v.id;
    right.id = UINT32_MAX;  // dead
    left.next = right.next;
    if (right.next >= 0) syms[size_t(right.next)].prev = pos;
    if (left.prev >= 0) {
      const auto p = pairs.find(syms[size_t(left.prev)].id, left.id);
      if (p.rank != kNoRank) heap.push({p.rank, left.prev});
    }
    if (left.next >= 0) {
      const auto p = pairs.find(left.id, syms[size_t(left.next)].id);
      if (p.rank != kNoRank) heap.push({p.rank, pos});
    }
  }
  for (int32_t i = 0; i >= 0; i = syms[size_t(i)].next) out.push_back(syms[size_t(i)].id);
}

void Tokenizer::Impl::encode_piece(WordCache& cache, std::string_view piece,
                                   std::vector<uint32_t>& out) const {
  if (piece.size() == 1) {
    out.push_back(byte_ids[static_cast<uint8_t>(piece[0])]);
    return;
  }
  const uint64_t h = hash_bytes(piece);
  const uint32_t* ids = nullptr;
  uint32_t n = 0;
  if (cache.find(piece, h, ids, n)) {
    out.insert(out.end(), ids, ids + n);
    return;
  }
  const size_t before = out.size();
  bpe(piece, out);
  cache.insert(piece, h, out.data() + before, out.size() - before);
}

void Tokenizer::Impl::encode_text(std::string_view text, std::vector<uint32_t>& out) const {
  if (text.empty()) return;
  std::string storage;
  if (nfc && !unicode::nfc_quick_check(text)) {
    storage = unicode::nfc(text);
    text = storage;
  }
  if (add_prefix_space && text.front() != ' ') {
    storage = " " + std::string(text);
    text = storage;
  }
  WordCache& cache = thread_cache(uid);
  pretokenize(pretokenizer, text,
              [&](std::string_view piece) { encode_piece(cache, piece, out); });
}

void Tokenizer::Impl::encode(std::string_view text, const AddedTokenMatcher& matcher,
                             std::vector<uint32_t>& out) const {
  out.reserve(out.size() + text.size() / 3);
  if (matcher.empty()) {
    encode_text(text, out);
    return;
  }
  size_t pos = 0;
  while (pos < text.size()) {
    const auto m = matcher.find(text, pos);
    if (!m) break;
    encode_text(text.substr(pos, m->text_end - pos), out);
    out.push_back(m->id);
    pos = m->match_end;
  }
  encode_text(text.substr(pos), out);
}

// ---------------------------------------------------------------------------------------------
AddedTokenMatcher::AddedTokenMatcher(const std::vector<const AddedToken*>& tokens) {
  for (const AddedToken* t : tokens) {
    if (t->content.empty()) continue;
    tokens_.push_back(t);
    first_byte_[static_cast<uint8_t>(t->content[0])] = true;
  }
  std::stable_sort(tokens_.begin(), tokens_.end(), [](const AddedToken* a, const AddedToken* b) {
    return a->content.size() > b->content.size();
  });
}

std::optional<AddedTokenMatcher::Match> AddedTokenMatcher::find(std::string_view text,
                                                                size_t pos) const {
  const char* s = text.data();
  for (size_t p = pos; p < text.size(); ++p) {
    if (!first_byte_[static_cast<uint8_t>(s[p])]) continue;
    for (const AddedToken* t : tokens_) {
      const size_t len = t->content.size();
      if (len > text.size() - p || std::memcmp(s + p, t->content.data(), len) != 0) continue;
      size_t begin = p, end = p + len;
      if (t->single_word) {
        const bool word_before =
            begin > 0 && is_word_char(unicode::decode_utf8(
                             s + prev_char_start(text, 0, begin), s + text.size()));
        const bool word_after =
            end < text.size() && is_word_char(unicode::decode_utf8(s + end, s + text.size()));
        if (word_before || word_after) continue;
      }
      if (t->lstrip) {
        while (begin > pos) {
          const size_t b = prev_char_start(text, pos, begin);
          const auto c = unicode::decode_utf8(s + b, s + begin);
          if (!c.valid || unicode::char_class(c.cp) != unicode::kSpace) break;
          begin = b;
        }
      }
      if (t->rstrip) {
        while (end < text.size()) {
          const auto c = unicode::decode_utf8(s + end, s + text.size());
          if (!c.valid || unicode::char_class(c.cp) != unicode::kSpace) break;
          end += c.len;
        }
      }
      return Match{begin, end, t->id};
    }
  }
  return std::nullopt;
}

// ---------------------------------------------------------------------------------------------
Tokenizer TokenizerBuilder::build(TokenizerParts parts) {
  const std::string where = parts.source.empty() ? std::string("tokenizer") : parts.source;
  auto fail = [&](const std::string& what) -> TokenizerError {
    return TokenizerError(where + ": " + what);
  };
  auto impl = std::make_shared<Tokenizer::Impl>();
  Tokenizer::Impl& m = *impl;
  m.uid = g_next_uid.fetch_add(1);
  m.kind = parts.kind;
  m.source = parts.source;
  m.pretokenizer = parts.pretokenizer;
  m.add_prefix_space = parts.add_prefix_space;
  m.nfc = parts.nfc;
  m.ignore_merges = parts.ignore_merges;

  uint32_t max_id = 0;
  for (const auto& [id, bytes] : parts.vocab) max_id = std::max(max_id, id);
  for (const auto& t : parts.added) max_id = std::max(max_id, t.id);
  if (parts.vocab.empty()) throw fail("the vocabulary is empty");
  if (max_id >= (1u << 31)) throw fail("token id " + std::to_string(max_id) + " is too large");
  // Tables are indexed by id: a lone id far past the others (a damaged or hostile file) would
  // allocate gigabytes. Real vocabularies are dense (added tokens follow the model's closely).
  const size_t ids = parts.vocab.size() + parts.added.size();
  if (size_t(max_id) >= 4 * ids + 65536) {
    throw fail("token id " + std::to_string(max_id) + " is far beyond the " + std::to_string(ids) +
               " tokens listed (ids must run from 0 to about the vocabulary size); the file is damaged");
  }
  m.id_bytes.resize(size_t(max_id) + 1);
  m.id_flags.assign(size_t(max_id) + 1, 0);
  m.model_ids.reserve(parts.vocab.size());
  for (auto& [id, bytes] : parts.vocab) {
    if (m.id_flags[id] & Tokenizer::Impl::kModel) {
      throw fail("token id " + std::to_string(id) + " appears twice in the vocabulary");
    }
    if (bytes.empty()) throw fail("token id " + std::to_string(id) + " is empty");
    if (!m.model_ids.emplace(bytes, id).second) {
      throw fail("token '" + bytes_to_byte_level(bytes) + "' appears twice in the vocabulary (ids " +
                 std::to_string(m.model_ids[bytes]) + " and " + std::to_string(id) + ")");
    }
    m.id_flags[id] = Tokenizer::Impl::kPresent | Tokenizer::Impl::kModel;
    m.id_bytes[id] = std::move(bytes);
  }
  int missing_bytes = 0;
  for (int b = 0; b < 256; ++b) {
    auto it = m.model_ids.find(std::string(1, char(b)));
    if (it == m.model_ids.end()) {
      ++missing_bytes;
    } else {
      m.byte_ids[size_t(b)] = it->second;
    }
  }
  if (missing_bytes > 0) {
    throw fail("the vocabulary lacks " + std::to_string(missing_bytes) +
               " of the 256 single-byte tokens, so it is not a byte-level BPE; only byte-level "
               "BPE tokenizers (GPT-2, Qwen2/3, Llama 3 style) are supported");
  }

  std::vector<uint32_t> merged_ids(parts.merges.size());
  for (size_t r = 0; r < parts.merges.size(); ++r) {
    const auto [a, b] = parts.merges[r];
    if (a > max_id || b > max_id || !(m.id_flags[a] & Tokenizer::Impl::kModel) ||
        !(m.id_flags[b] & Tokenizer::Impl::kModel)) {
      throw fail("merge #" + std::to_string(r) + " refers to a token id outside the vocabulary");
    }
    auto it = m.model_ids.find(m.id_bytes[a] + m.id_bytes[b]);
    if (it == m.model_ids.end()) {
      throw fail("merge #" + std::to_string(r) + " '" + bytes_to_byte_level(m.id_bytes[a]) + " " +
                 bytes_to_byte_level(m.id_bytes[b]) + "' produces a token that is not in the vocabulary");
    }
    merged_ids[r] = it->second;
  }
  m.merges = std::move(parts.merges);
  m.pairs.build(m.merges, merged_ids);

  std::sort(parts.added.begin(), parts.added.end(),
            [](const AddedToken& x, const AddedToken& y) { return x.id < y.id; });
  for (auto& t : parts.added) {
    if (t.content.empty()) throw fail("added token id " + std::to_string(t.id) + " is empty");
    uint8_t& flags = m.id_flags[t.id];
    if (flags & Tokenizer::Impl::kAdded) {
      throw fail("added token id " + std::to_string(t.id) + " is listed twice");
    }
    if ((flags & Tokenizer::Impl::kModel) && m.id_bytes[t.id] != t.content) {
      throw fail("added token '" + t.content + "' has id " + std::to_string(t.id) +
                 ", which the vocabulary already gives to '" + bytes_to_byte_level(m.id_bytes[t.id]) +
                 "'");
    }
    if (!m.added_ids.emplace(t.content, t.id).second) {
      throw fail("added token '" + t.content + "' is listed twice");
    }
    flags |= Tokenizer::Impl::kPresent | Tokenizer::Impl::kAdded |
             (t.special ? Tokenizer::Impl::kSpecial : 0);
    m.id_bytes[t.id] = t.content;
  }
  m.added = std::move(parts.added);
  std::vector<const AddedToken*> all, plain;
  for (const AddedToken& t : m.added) {
    all.push_back(&t);
    if (!t.special) plain.push_back(&t);
  }
  m.match_all = AddedTokenMatcher(all);
  m.match_plain = AddedTokenMatcher(plain);

  auto id_of = [&](const std::string& content) -> std::optional<uint32_t> {
    if (auto it = m.added_ids.find(content); it != m.added_ids.end()) return it->second;
    if (auto it = m.model_ids.find(content); it != m.model_ids.end()) return it->second;
    return std::nullopt;
  };
  if (parts.eos_token) m.eos = id_of(*parts.eos_token);
  if (!m.eos) {
    for (const char* name : {"<|endoftext|>", "<|im_end|>", "</s>", "<|end_of_text|>"}) {
      if ((m.eos = id_of(name))) break;
    }
  }
  Tokenizer t;
  t.impl_ = std::move(impl);
  return t;
}

TokenizerParts TokenizerBuilder::parts_of(const Tokenizer& tokenizer) {
  const Tokenizer::Impl& m = tokenizer.impl();
  TokenizerParts p;
  p.kind = m.kind;
  p.source = m.source;
  for (size_t id = 0; id < m.id_bytes.size(); ++id) {
    if (m.id_flags[id] & Tokenizer::Impl::kModel) p.vocab.emplace_back(uint32_t(id), m.id_bytes[id]);
  }
  p.merges = m.merges;
  p.added = m.added;
  p.pretokenizer = m.pretokenizer;
  p.add_prefix_space = m.add_prefix_space;
  p.nfc = m.nfc;
  p.ignore_merges = m.ignore_merges;
  if (m.eos) p.eos_token = m.id_bytes[*m.eos];
  return p;
}

// ---------------------------------------------------------------------------------------------
Tokenizer::Tokenizer() = default;

const Tokenizer::Impl& Tokenizer::impl() const {
  if (!impl_) {
    throw TokenizerError("tokenizer: used before loading one (call Tokenizer::load or train_bpe)");
  }
  return *impl_;
}

std::vector<uint32_t> Tokenizer::encode(std::string_view text) const {
  std::vector<uint32_t> out;
  encode_append(text, out);
  return out;
}

std::vector<uint32_t> Tokenizer::encode_with_special(std::string_view text) const {
  std::vector<uint32_t> out;
  encode_with_special_append(text, out);
  return out;
}

void Tokenizer::encode_append(std::string_view text, std::vector<uint32_t>& out) const {
  const Impl& m = impl();
  m.encode(text, m.match_plain, out);
}

void Tokenizer::encode_with_special_append(std::string_view text,
                                           std::vector<uint32_t>& out) const {
  const Impl& m = impl();
  m.encode(text, m.match_all, out);
}

std::string Tokenizer::decode(const std::vector<uint32_t>& ids) const {
  const Impl& m = impl();
  size_t total = 0;
  for (uint32_t id : ids) total += token_bytes(id).size();
  std::string out;
  out.reserve(total);
  for (uint32_t id : ids) out += m.id_bytes[id];
  return out;
}

const std::string& Tokenizer::token_bytes(uint32_t id) const {
  const Impl& m = impl();
  if (id >= m.id_bytes.size()) {
    throw TokenizerError("token id " + std::to_string(id) + " is outside the vocabulary (size " +
                         std::to_string(m.id_bytes.size()) +
                         "); was the model trained with another tokenizer?");
  }
  if (!(m.id_flags[id] & Impl::kPresent)) {
    throw TokenizerError("token id " + std::to_string(id) +
                         " is not assigned to any token (a hole in the vocabulary)");
  }
  return m.id_bytes[id];
}

size_t Tokenizer::vocab_size() const { return impl_ ? impl_->id_bytes.size() : 0; }

std::optional<uint32_t> Tokenizer::token_id(std::string_view token) const {
  const Impl& m = impl();
  const std::string key(token);
  if (auto it = m.added_ids.find(key); it != m.added_ids.end()) return it->second;
  if (auto it = m.model_ids.find(key); it != m.model_ids.end()) return it->second;
  return std::nullopt;
}

std::optional<uint32_t> Tokenizer::eos_id() const { return impl().eos; }
std::string Tokenizer::kind() const { return impl().kind; }
const std::vector<AddedToken>& Tokenizer::added_tokens() const { return impl().added; }
size_t Tokenizer::merges_count() const { return impl().merges.size(); }

bool Tokenizer::is_special(uint32_t id) const {
  const Impl& m = impl();
  return id < m.id_flags.size() && (m.id_flags[id] & Impl::kSpecial);
}

std::string Tokenizer::summary() const {
  const Impl& m = impl();
  std::ostringstream s;
  s << m.kind << " byte-level BPE: vocab " << m.id_bytes.size() << ", " << m.merges.size()
    << " merges, " << m.added.size() << " added tokens, pre-tokenizer "
    << pretokenizer_name(m.pretokenizer) << (m.nfc ? ", NFC" : "")
    << (m.ignore_merges ? ", ignore_merges" : "");
  if (m.eos) s << ", eos " << m.id_bytes[*m.eos] << " (" << *m.eos << ")";
  if (!m.source.empty()) s << ", from " << m.source;
  return s.str();
}

// ---------------------------------------------------------------------------------------------
namespace {
// Length of the longest prefix of `s` that does not end inside a UTF-8 sequence that could still
// be completed by more bytes.
size_t complete_prefix(std::string_view s) {
  const size_t n = s.size();
  for (size_t back = 1; back <= 3 && back <= n; ++back) {
    const auto b = static_cast<uint8_t>(s[n - back]);
    if ((b & 0xC0) == 0x80) continue;  // continuation byte: keep looking for the lead
    size_t need = 0;
    if (b >= 0xC2 && b <= 0xDF) need = 2;
    else if (b >= 0xE0 && b <= 0xEF) need = 3;
    else if (b >= 0xF0 && b <= 0xF4) need = 4;
    if (need > back) {
      // Incomplete only if it is the valid start of a sequence: complete it with the smallest
      // legal continuation bytes (E0 and F0 need a larger second byte) and decode.
      std::string probe(s.substr(n - back));
      if (back == 1) probe.push_back(b == 0xE0 ? '\xA0' : b == 0xF0 ? '\x90' : '\x80');
      probe.append(need - probe.size(), '\x80');
      const unicode::Char full = unicode::decode_utf8(probe.data(), probe.data() + probe.size());
      if (full.valid && full.len == need) return n - back;
    }
    return n;
  }
  return n;
}
}  // namespace

std::string Utf8StreamDecoder::push(uint32_t id) {
  pending_ += tokenizer_->token_bytes(id);
  const size_t keep = complete_prefix(pending_);
  std::string ready = pending_.substr(0, keep);
  pending_.erase(0, keep);
  return ready;
}

std::string Utf8StreamDecoder::finish() {
  std::string rest;
  rest.swap(pending_);
  return rest;
}

}  // namespace fathom::tok
