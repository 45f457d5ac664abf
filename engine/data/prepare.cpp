// prepare_dataset: input discovery, manifest-based reuse, tokenizer training/loading, parallel
// tokenisation into train/val shards. Documents stream through in batches of ~16 MB, so memory
// stays bounded whatever the corpus size (except when a bpe tokenizer must be trained: its
// training text, at most train_bytes, is held in memory).
#include "engine/data/prepare.h"

#include <fcntl.h>
#include <glob.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>
#include <stdexcept>
#include <thread>

#include "engine/data/token_shards.h"
#include "engine/tokenizer/tokenizer.h"

namespace fathom::data {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

constexpr int kManifestVersion = 1;
constexpr size_t kBatchBytes = size_t(16) << 20;  // text per tokenisation batch

// FNV-1a, 64 bit: detects changed inputs; not a cryptographic digest.
class Hasher {
 public:
  void bytes(const void* p, size_t n) {
    const auto* b = static_cast<const uint8_t*>(p);
    for (size_t i = 0; i < n; ++i) h_ = (h_ ^ b[i]) * 0x100000001b3ull;
  }
  void str(const std::string& s) {  // length-prefixed, so ("ab","c") != ("a","bc")
    u64(s.size());
    bytes(s.data(), s.size());
  }
  void u64(uint64_t v) { bytes(&v, sizeof v); }
  std::string hex() const {
    char buf[17];
    std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(h_));
    return buf;
  }

 private:
  uint64_t h_ = 0xcbf29ce484222325ull;
};

struct InputFile {
  std::string path;  // absolute, lexically normal
  uint64_t size = 0;
  int64_t mtime_ns = 0;
  bool json = false;  // JSON records rather than one plain-text document
};

std::string lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return char(std::tolower(c)); });
  return s;
}

bool has_glob_chars(const std::string& s) { return s.find_first_of("*?[") != std::string::npos; }

bool wanted_extension(const fs::path& p) {
  const std::string ext = lower(p.extension().string());
  return ext == ".txt" || ext == ".jsonl" || ext == ".json";
}

InputFile stat_input(const fs::path& p, const std::string& format) {
  struct stat st {};
  if (::stat(p.c_str(), &st) != 0) {
    throw std::runtime_error(p.string() + ": cannot stat data input (" + std::strerror(errno) + ")");
  }
  InputFile f;
  f.path = p.string();
  f.size = uint64_t(st.st_size);
  f.mtime_ns = int64_t(st.st_mtim.tv_sec) * 1000000000 + st.st_mtim.tv_nsec;
  const std::string ext = lower(p.extension().string());
  f.json = format == "jsonl" || (format == "auto" && (ext == ".jsonl" || ext == ".json"));
  return f;
}

void add_directory(const fs::path& dir, std::vector<fs::path>& out) {
  std::vector<fs::path> found;
  std::error_code ec;
  fs::recursive_directory_iterator it(dir, fs::directory_options::follow_directory_symlink, ec), end;
  if (ec) throw std::runtime_error(dir.string() + ": cannot list directory (" + ec.message() + ")");
  for (; it != end; it.increment(ec)) {
    if (ec) throw std::runtime_error(dir.string() + ": cannot list directory (" + ec.message() + ")");
    const std::string name = it->path().filename().string();
    if (!name.empty() && name[0] == '.') {  // .git, .cache, editor swap files
      if (it->is_directory()) it.disable_recursion_pending();
      continue;
    }
    if (it->is_regular_file() && wanted_extension(it->path())) found.push_back(it->path());
  }
  std::sort(found.begin(), found.end());
  out.insert(out.end(), found.begin(), found.end());
}

std::vector<InputFile> expand_inputs(const PrepareOptions& o) {
  if (o.inputs.empty()) {
    throw std::runtime_error("prepare: no data inputs given; set data.train to files, directories or globs");
  }
  std::vector<fs::path> paths;
  for (const std::string& in : o.inputs) {
    std::error_code ec;
    if (fs::is_directory(in, ec)) {
      const size_t before = paths.size();
      add_directory(in, paths);
      if (paths.size() == before) {
        throw std::runtime_error(in + ": directory holds no *.txt, *.jsonl or *.json files");
      }
    } else if (fs::exists(in, ec)) {
      paths.emplace_back(in);
    } else if (has_glob_chars(in)) {
      glob_t g{};
      const int rc = ::glob(in.c_str(), 0, nullptr, &g);
      std::vector<std::string> matches;
      if (rc == 0) matches.assign(g.gl_pathv, g.gl_pathv + g.gl_pathc);
      ::globfree(&g);
      if (matches.empty()) throw std::runtime_error(in + ": the pattern matches no file; check data.train");
      for (const auto& m : matches) {
        if (fs::is_directory(m, ec)) {
          add_directory(m, paths);
        } else {
          paths.emplace_back(m);
        }
      }
    } else {
      throw std::runtime_error(in + ": data input does not exist (no such file or directory); check data.train");
    }
  }
  std::vector<InputFile> files;
  std::set<std::string> seen;
  for (const fs::path& p : paths) {
    const fs::path abs = fs::absolute(p).lexically_normal();
    if (!seen.insert(abs.string()).second) continue;
    files.push_back(stat_input(abs, o.format));
  }
  return files;
}

// ---- documents --------------------------------------------------------------------------------
// fn(document, bytes of input consumed so far) -> false stops the iteration.
using DocumentFn = std::function<bool(std::string&& doc, uint64_t bytes_done)>;

std::string record_text(const json& rec, const std::string& field, const std::string& where) {
  if (rec.is_string()) return rec.get<std::string>();
  if (!rec.is_object()) {
    throw std::runtime_error(where + ": expected a JSON object (or string), got " + std::string(rec.type_name()));
  }
  auto it = rec.find(field);
  if (it == rec.end() || !it->is_string()) {
    std::string keys;
    for (auto k = rec.begin(); k != rec.end(); ++k) keys += (keys.empty() ? "" : ", ") + k.key();
    throw std::runtime_error(where + ": record has no string field \"" + field + "\" (fields: " +
                             (keys.empty() ? std::string("none") : keys) +
                             "); set data.text_field to the field that holds the text");
  }
  return it->get<std::string>();
}

std::string read_whole(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error(path + ": cannot open data input (" + std::strerror(errno) + ")");
  std::string s;
  in.seekg(0, std::ios::end);
  s.resize(size_t(std::max<std::streamoff>(0, in.tellg())));
  in.seekg(0);
  in.read(s.data(), std::streamsize(s.size()));
  s.resize(size_t(in.gcount()));
  return s;
}

// One JSON value per non-blank line; returns false when fn stopped the iteration.
template <class NextLine>
bool for_each_json_line(const std::string& path, const std::string& field, uint64_t base,
                        NextLine&& next_line, const DocumentFn& fn) {
  std::string line;
  uint64_t line_no = 0, consumed = 0;
  while (next_line(line)) {
    ++line_no;
    consumed += line.size() + 1;
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.find_first_not_of(" \t") == std::string::npos) continue;
    const std::string where = path + ":" + std::to_string(line_no);
    json rec;
    try {
      rec = json::parse(line);
    } catch (const json::exception& e) {  // parse_error, or out_of_range for a number like 1e999
      throw std::runtime_error(where + ": not valid JSON (" + std::string(e.what()) +
                               "); JSONL needs one complete JSON object per line");
    }
    if (!fn(record_text(rec, field, where), base + consumed)) return false;
  }
  return true;
}

void for_each_document(const std::vector<InputFile>& files, const PrepareOptions& o, const DocumentFn& fn) {
  uint64_t done = 0;
  for (const InputFile& f : files) {
    if (!f.json) {
      if (!fn(read_whole(f.path), done + f.size)) return;
    } else if (lower(fs::path(f.path).extension().string()) == ".json" && o.format == "auto") {
      // A .json file is either one JSON document (array of records, or one record) or JSONL.
      const std::string text = read_whole(f.path);
      json doc = json::parse(text, nullptr, /*allow_exceptions=*/false);
      if (!doc.is_discarded()) {
        if (doc.is_array()) {
          for (size_t i = 0; i < doc.size(); ++i) {
            const std::string where = f.path + ": element " + std::to_string(i);
            if (!fn(record_text(doc[i], o.text_field, where), done + f.size * (i + 1) / doc.size())) return;
          }
        } else if (!fn(record_text(doc, o.text_field, f.path), done + f.size)) {
          return;
        }
      } else {
        std::istringstream in(text);
        auto next = [&](std::string& line) { return bool(std::getline(in, line)); };
        if (!for_each_json_line(f.path, o.text_field, done, next, fn)) return;
      }
    } else {
      std::ifstream in(f.path, std::ios::binary);
      if (!in) throw std::runtime_error(f.path + ": cannot open data input (" + std::strerror(errno) + ")");
      auto next = [&](std::string& line) { return bool(std::getline(in, line)); };
      if (!for_each_json_line(f.path, o.text_field, done, next, fn)) return;
      if (in.bad()) throw std::runtime_error(f.path + ": read error (" + std::strerror(errno) + ")");
    }
    done += f.size;
  }
}

// ---- tokenizer --------------------------------------------------------------------------------
bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

// Where a bpe tokenizer lives: tokenizer_path itself when it names a .json file, else
// tokenizer_path/tokenizer.json.
std::string bpe_tokenizer_file(const std::string& tokenizer_path) {
  if (ends_with(lower(tokenizer_path), ".json")) return tokenizer_path;
  return (fs::path(tokenizer_path) / "tokenizer.json").string();
}

// The files Tokenizer::load(path) reads, so that changing any of them invalidates the shards.
std::vector<std::string> tokenizer_files(const std::string& path) {
  std::error_code ec;
  fs::path p(path);
  std::vector<std::string> out;
  auto add_if = [&](const fs::path& f) {
    if (fs::is_regular_file(f, ec)) out.push_back(f.string());
  };
  if (fs::is_directory(p, ec)) {
    if (fs::is_regular_file(p / "tokenizer.json", ec)) {
      out.push_back((p / "tokenizer.json").string());
      add_if(p / "tokenizer_config.json");
    } else {
      add_if(p / "encoder.json");
      add_if(p / "vocab.bpe");
    }
  } else {
    const std::string name = p.filename().string();
    if (name == "encoder.json" || name == "vocab.bpe") {
      add_if(p.parent_path() / "encoder.json");
      add_if(p.parent_path() / "vocab.bpe");
    } else {
      add_if(p);
      add_if(p.parent_path() / "tokenizer_config.json");
    }
  }
  return out;
}

std::string hash_tokenizer(const std::string& path) {
  Hasher h;
  const auto files = tokenizer_files(path);
  if (files.empty()) return "";
  std::vector<char> buf(size_t(1) << 20);
  for (const std::string& f : files) {
    h.str(fs::path(f).filename().string());
    std::ifstream in(f, std::ios::binary);
    if (!in) throw std::runtime_error(f + ": cannot read tokenizer file (" + std::strerror(errno) + ")");
    while (in) {
      in.read(buf.data(), std::streamsize(buf.size()));
      h.bytes(buf.data(), size_t(in.gcount()));
    }
  }
  return h.hex();
}

std::string inputs_hash(const std::vector<InputFile>& files, const PrepareOptions& o,
                        const std::string& tokenizer_hash) {
  Hasher h;
  h.u64(kManifestVersion);
  for (const InputFile& f : files) {
    h.str(f.path);
    h.u64(f.size);
    h.u64(uint64_t(f.mtime_ns));
  }
  h.str(o.format);
  h.str(o.text_field);
  char frac[32];
  std::snprintf(frac, sizeof frac, "%.17g", o.validation_fraction);
  h.str(frac);
  h.u64(o.seed);
  h.str(o.tokenizer_kind);
  h.str(tokenizer_hash);
  return h.hex();
}

// ---- manifest ---------------------------------------------------------------------------------
std::string utc_now() {
  const std::time_t t = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

void write_json_atomically(const std::string& path, const json& j) {
  const std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    if (!out) throw std::runtime_error(tmp + ": cannot create (" + std::strerror(errno) + ")");
    out << j.dump(2) << "\n";
    out.flush();
    if (!out) throw std::runtime_error(tmp + ": write failed (" + std::strerror(errno) + "); is the disk full?");
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    throw std::runtime_error(path + ": cannot rename " + tmp + " into place (" + std::strerror(errno) + ")");
  }
}

// A finished earlier run whose manifest matches `hash` and whose shards are intact.
bool try_reuse(const std::string& out_dir, const std::string& hash, PrepareResult& r) {
  const std::string manifest_path = (fs::path(out_dir) / "manifest.json").string();
  std::error_code ec;
  if (!fs::is_regular_file(manifest_path, ec)) return false;
  json m = json::parse(read_whole(manifest_path), nullptr, false);
  if (m.is_discarded() || !m.is_object() || m.value("format_version", 0) != kManifestVersion ||
      m.value("inputs_hash", std::string()) != hash) {
    return false;
  }
  try {
    TokenShard train((fs::path(out_dir) / "train.bin").string());
    TokenShard val((fs::path(out_dir) / "val.bin").string());
    if (int64_t(train.size()) != m.value("train_tokens", int64_t(-1)) ||
        int64_t(val.size()) != m.value("val_tokens", int64_t(-1))) {
      return false;
    }
  } catch (const std::exception&) {
    return false;  // missing or truncated shard: prepare again
  }
  r.reused = true;
  r.documents = m.value("documents", int64_t(0));
  r.train_tokens = m.value("train_tokens", int64_t(0));
  r.val_tokens = m.value("val_tokens", int64_t(0));
  r.vocab_size = m.value("vocab_size", size_t(0));
  return true;
}

// Exclusive lock on <out_dir>/.prepare.lock for the lifetime of the object.
class DirLock {
 public:
  explicit DirLock(const std::string& dir) {
    const std::string path = (fs::path(dir) / ".prepare.lock").string();
    fd_ = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd_ < 0) throw std::runtime_error(path + ": cannot create lock file (" + std::strerror(errno) + ")");
    while (::flock(fd_, LOCK_EX) != 0) {
      if (errno != EINTR) throw std::runtime_error(path + ": cannot lock (" + std::strerror(errno) + ")");
    }
  }
  ~DirLock() {
    if (fd_ >= 0) ::close(fd_);  // closing releases the lock
  }
  DirLock(const DirLock&) = delete;
  DirLock& operator=(const DirLock&) = delete;

 private:
  int fd_ = -1;
};

void check_options(const PrepareOptions& o) {
  if (o.out_dir.empty()) throw std::runtime_error("prepare: out_dir is empty; set data.shards_dir or a workspace");
  if (o.format != "auto" && o.format != "text" && o.format != "jsonl") {
    throw std::runtime_error("prepare: format '" + o.format + "' is not one of auto, text, jsonl");
  }
  if (!(o.validation_fraction >= 0.0 && o.validation_fraction < 1.0)) {
    throw std::runtime_error("prepare: validation_fraction " + std::to_string(o.validation_fraction) +
                             " must be in [0, 1)");
  }
  if (o.tokenizer_kind != "bpe" && o.tokenizer_kind != "gpt2" && o.tokenizer_kind != "hf") {
    throw std::runtime_error("prepare: tokenizer kind '" + o.tokenizer_kind + "' is not one of bpe, gpt2, hf");
  }
  if (o.tokenizer_path.empty()) {
    throw std::runtime_error("prepare: tokenizer_path is empty; set tokenizer.path (for bpe: where the "
                             "trained tokenizer.json is kept)");
  }
}

uint64_t splitmix64(uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

}  // namespace

bool is_validation_document(uint64_t seed, uint64_t index, double fraction) {
  if (index == 0 || fraction <= 0.0) return false;
  const uint64_t h = splitmix64(seed ^ splitmix64(index));
  return double(h >> 11) * 0x1.0p-53 < fraction;  // uniform in [0, 1)
}

PrepareResult prepare_dataset(const PrepareOptions& o) {
  check_options(o);
  auto progress = [&](double f, const std::string& stage) {
    if (o.progress) o.progress(std::min(1.0, std::max(0.0, f)), stage);
  };
  std::error_code ec;
  fs::create_directories(o.out_dir, ec);
  if (ec) throw std::runtime_error(o.out_dir + ": cannot create output directory (" + ec.message() + ")");
  DirLock lock(o.out_dir);

  PrepareResult r;
  r.out_dir = o.out_dir;
  const std::vector<InputFile> files = expand_inputs(o);
  uint64_t total_bytes = 0;
  for (const InputFile& f : files) total_bytes += f.size;

  const bool bpe = o.tokenizer_kind == "bpe";
  r.tokenizer_path = bpe ? bpe_tokenizer_file(o.tokenizer_path) : o.tokenizer_path;
  const bool have_tokenizer = !tokenizer_files(r.tokenizer_path).empty() && fs::exists(r.tokenizer_path, ec);
  if (!bpe && !have_tokenizer) {
    throw std::runtime_error(o.tokenizer_path + ": no " + o.tokenizer_kind + " tokenizer there; " +
                             (o.tokenizer_kind == "gpt2" ? "give the directory holding encoder.json and vocab.bpe"
                                                         : "give a tokenizer.json or the directory holding it"));
  }
  if (have_tokenizer) {
    r.inputs_hash = inputs_hash(files, o, hash_tokenizer(r.tokenizer_path));
    if (try_reuse(o.out_dir, r.inputs_hash, r)) {
      progress(1.0, "reused");
      return r;
    }
  }
  // From here on the old shards are stale: drop the manifest first so that an interrupted run
  // is never mistaken for a finished one.
  const std::string manifest_path = (fs::path(o.out_dir) / "manifest.json").string();
  fs::remove(manifest_path, ec);

  const unsigned threads =
      o.threads > 0 ? unsigned(o.threads) : std::max(1u, std::thread::hardware_concurrency());
  const double tok_start = have_tokenizer ? 0.0 : 0.4;

  tok::Tokenizer tokenizer;
  if (have_tokenizer) {
    tokenizer = tok::Tokenizer::load(r.tokenizer_path);
  } else {
    // Train on the training documents only (validation text stays unseen), up to train_bytes.
    progress(0.0, "reading tokenizer training text");
    std::vector<std::string> texts;
    uint64_t index = 0, taken = 0;
    const uint64_t budget = o.train_bytes ? o.train_bytes : UINT64_MAX;
    for_each_document(files, o, [&](std::string&& doc, uint64_t done) {
      if (doc.empty()) return true;
      if (!is_validation_document(o.seed, index++, o.validation_fraction)) {
        if (doc.size() > budget - taken) doc.resize(size_t(budget - taken));
        taken += doc.size();
        texts.push_back(std::move(doc));
      }
      progress(0.1 * double(done) / double(std::max<uint64_t>(1, total_bytes)), "reading tokenizer training text");
      return taken < budget;
    });
    if (texts.empty()) throw std::runtime_error("prepare: the inputs hold no text to train a tokenizer on");
    tok::BpeTrainOptions bo;
    bo.vocab_size = o.vocab_size;
    bo.threads = int(threads);
    bo.progress = [&](double f, const std::string& stage) { progress(0.1 + 0.3 * f, "tokenizer: " + stage); };
    tokenizer = tok::train_bpe_from_texts(texts, bo);
    std::vector<std::string>().swap(texts);
    const fs::path parent = fs::path(r.tokenizer_path).parent_path();
    if (!parent.empty()) fs::create_directories(parent, ec);
    tokenizer.save(r.tokenizer_path);
    r.inputs_hash = inputs_hash(files, o, hash_tokenizer(r.tokenizer_path));
  }
  const auto eos = tokenizer.eos_id();
  if (!eos) {
    throw std::runtime_error(r.tokenizer_path + ": the tokenizer has no end-of-text token (<|endoftext|>, "
                             "<|im_end|>, </s>, <|end_of_text|>) to separate documents");
  }
  r.vocab_size = tokenizer.vocab_size();

  // ---- tokenise in batches, in parallel; write in document order -------------------------
  TokenShardWriter train_out((fs::path(o.out_dir) / "train.bin").string(), r.vocab_size);
  TokenShardWriter val_out((fs::path(o.out_dir) / "val.bin").string(), r.vocab_size);
  std::vector<std::string> batch;
  std::vector<std::vector<uint32_t>> ids;
  size_t batch_bytes = 0;
  uint64_t doc_index = 0, train_docs = 0, val_docs = 0, last_done = 0;
  auto flush = [&] {
    ids.assign(batch.size(), {});
    std::atomic<size_t> next{0};
    std::exception_ptr error;
    std::mutex error_mu;
    auto work = [&] {
      try {
        for (size_t i; (i = next.fetch_add(1)) < batch.size();) {
          tokenizer.encode_append(batch[i], ids[i]);
          ids[i].push_back(*eos);
        }
      } catch (...) {
        std::lock_guard<std::mutex> g(error_mu);
        if (!error) error = std::current_exception();
      }
    };
    std::vector<std::thread> pool;
    for (unsigned t = 1; t < std::min<size_t>(threads, batch.size()); ++t) pool.emplace_back(work);
    work();
    for (auto& th : pool) th.join();
    if (error) std::rethrow_exception(error);
    for (size_t i = 0; i < batch.size(); ++i) {
      if (is_validation_document(o.seed, doc_index, o.validation_fraction)) {
        val_out.append(ids[i]);
        ++val_docs;
      } else {
        train_out.append(ids[i]);
        ++train_docs;
      }
      ++doc_index;
    }
    batch.clear();
    ids.clear();
    batch_bytes = 0;
    progress(tok_start + (1.0 - tok_start) * double(last_done) / double(std::max<uint64_t>(1, total_bytes)),
             "tokenizing");
  };
  progress(tok_start, "tokenizing");
  for_each_document(files, o, [&](std::string&& doc, uint64_t done) {
    last_done = done;
    if (doc.empty()) return true;
    batch_bytes += doc.size();
    batch.push_back(std::move(doc));
    if (batch_bytes >= kBatchBytes) flush();
    return true;
  });
  if (!batch.empty()) flush();
  if (doc_index == 0) {
    throw std::runtime_error("prepare: the inputs hold no non-empty document (" + std::to_string(files.size()) +
                             " files); check data.train and data.text_field");
  }
  train_out.commit();
  val_out.commit();
  r.documents = int64_t(doc_index);
  r.train_tokens = int64_t(train_out.count());
  r.val_tokens = int64_t(val_out.count());

  json inputs = json::array();
  for (const InputFile& f : files) {
    inputs.push_back({{"path", f.path}, {"size", f.size}, {"mtime_ns", f.mtime_ns}, {"json", f.json}});
  }
  json manifest = {
      {"format_version", kManifestVersion},
      {"created", utc_now()},
      {"inputs", inputs},
      {"inputs_hash", r.inputs_hash},
      {"options",
       {{"format", o.format},
        {"text_field", o.text_field},
        {"validation_fraction", o.validation_fraction},
        {"seed", o.seed},
        {"vocab_size", o.vocab_size},
        {"train_bytes", o.train_bytes}}},
      {"documents", r.documents},
      {"train_documents", train_docs},
      {"val_documents", val_docs},
      {"train_tokens", r.train_tokens},
      {"val_tokens", r.val_tokens},
      {"dtype", token_dtype_name(token_dtype_for_vocab(r.vocab_size))},
      {"vocab_size", r.vocab_size},
      {"eos_id", *eos},
      {"tokenizer",
       {{"kind", tokenizer.kind()},
        {"path", fs::absolute(r.tokenizer_path).lexically_normal().string()},
        {"hash", hash_tokenizer(r.tokenizer_path)}}},
      {"shards", {{"train", "train.bin"}, {"val", "val.bin"}}},
  };
  write_json_atomically(manifest_path, manifest);
  progress(1.0, "done");
  return r;
}

}  // namespace fathom::data
