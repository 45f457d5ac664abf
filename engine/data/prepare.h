// Dataset preparation: text / JSONL inputs -> tokenizer (trained here for kind "bpe" when it does
// not exist yet) -> <out_dir>/train.bin + val.bin token shards + manifest.json. Reused without
// work when the manifest matches the current inputs (paths, sizes, mtimes), options and tokenizer.
// Plain C++ (no torch): compiled into fathom_engine, usable without it.
#pragma once
#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace fathom::data {

struct PrepareOptions {
  // Files, directories (searched recursively for *.txt, *.jsonl, *.json; hidden entries skipped)
  // and globs (*, ?, [..]).
  std::vector<std::string> inputs;
  // "auto": *.jsonl / *.json are JSON records, everything else plain text (one document per file);
  // "text": every file is one document; "jsonl": every file is one JSON object per line.
  std::string format = "auto";
  std::string text_field = "text";     // field of each JSON record that holds the document
  double validation_fraction = 0.01;   // share of documents held out (by document, never split)
  std::string out_dir;                 // train.bin, val.bin, manifest.json go here
  std::string tokenizer_kind = "bpe";  // "bpe" (ours; trained when missing) | "gpt2" | "hf"
  // kind bpe: a tokenizer.json file, or a directory that gets tokenizer.json; gpt2/hf: anything
  // Tokenizer::load accepts.
  std::string tokenizer_path;
  size_t vocab_size = 4096;  // bpe training only
  size_t train_bytes = 0;    // bpe training: use at most this many bytes of text (0: all)
  int threads = 0;           // tokenisation and training threads (0: all hardware threads)
  uint64_t seed = 1337;      // train/validation split
  std::function<void(double fraction, const std::string& stage)> progress;
};

struct PrepareResult {
  std::string out_dir;
  std::string tokenizer_path;  // what Tokenizer::load should be given
  bool reused = false;         // true: the manifest matched, nothing was recomputed
  int64_t documents = 0;       // non-empty documents (train + validation)
  int64_t train_tokens = 0;    // tokens in train.bin (document tokens + one EOS per document)
  int64_t val_tokens = 0;
  size_t vocab_size = 0;
  std::string inputs_hash;     // hex; changes with any input, option or tokenizer change
};

// Throws std::runtime_error with the file (and line for JSONL), the problem and a fix.
// Concurrent calls for the same out_dir (several ranks on one host) serialise on a lock file;
// the later ones find the finished manifest and reuse it.
PrepareResult prepare_dataset(const PrepareOptions& options);

// Split rule, exposed for tests: document `index` (0-based, counting non-empty documents in input
// order) goes to validation when a hash of (seed, index) falls below `fraction`. Document 0
// always trains, so a corpus of one document still has training data.
bool is_validation_document(uint64_t seed, uint64_t index, double fraction);

}  // namespace fathom::data
