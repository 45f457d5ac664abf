// Token shards: one flat file of token ids per split (<dir>/train.bin, <dir>/val.bin), written
// once by TokenShardWriter and memory-mapped read-only by TokenShard. Plain C++ (no torch), so
// the tokenizer tools and tests can use it without LibTorch.
//
// File layout (little-endian):
//   offset  0  char[8]  magic "FATHOMTK"
//           8  uint32   format version (1)
//          12  uint32   bytes per token: 2 (uint16, vocab_size <= 65535) or 4 (uint32)
//          16  uint64   token count
//          24  uint64   vocabulary size of the tokenizer that wrote it
//          32  32 bytes reserved (zero)
//          64  count tokens
// The count in the header is only written when the shard is committed, and the shard is written
// to <path>.tmp then renamed: a file at <path> is always whole; a truncated or foreign file is
// refused by TokenShard::open with the reason.
#pragma once
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

namespace fathom::data {

enum class TokenDtype : uint8_t { kUint16 = 2, kUint32 = 4 };

const char* token_dtype_name(TokenDtype dtype);  // "uint16" | "uint32"
TokenDtype token_dtype_for_vocab(size_t vocab_size);
constexpr size_t kTokenShardHeaderBytes = 64;

// Appends token ids to <path>.tmp; commit() makes it <path>. Dropped without commit(), the
// temporary file is removed. Throws std::runtime_error (path + reason + fix) on I/O errors and on
// ids that do not fit the vocabulary.
class TokenShardWriter {
 public:
  TokenShardWriter(const std::string& path, size_t vocab_size);
  ~TokenShardWriter();
  TokenShardWriter(const TokenShardWriter&) = delete;
  TokenShardWriter& operator=(const TokenShardWriter&) = delete;

  void append(const uint32_t* ids, size_t n);
  void append(const std::vector<uint32_t>& ids) { append(ids.data(), ids.size()); }
  uint64_t count() const { return count_; }
  TokenDtype dtype() const { return dtype_; }
  // Writes the header, flushes, fsyncs and renames <path>.tmp to <path>.
  void commit();

 private:
  std::string path_, tmp_path_;
  size_t vocab_size_;
  TokenDtype dtype_;
  std::FILE* file_ = nullptr;
  uint64_t count_ = 0;
  std::vector<uint8_t> buffer_;
  bool committed_ = false;
};

// A read-only, memory-mapped shard. Movable, not copyable; every const method is thread-safe.
class TokenShard {
 public:
  TokenShard() = default;
  explicit TokenShard(const std::string& path) { open(path); }
  ~TokenShard();
  TokenShard(TokenShard&& other) noexcept;
  TokenShard& operator=(TokenShard&& other) noexcept;
  TokenShard(const TokenShard&) = delete;
  TokenShard& operator=(const TokenShard&) = delete;

  // Maps the file; throws std::runtime_error naming the path when it is missing, not a shard,
  // of an unknown version, or truncated (its size disagrees with the header's count).
  void open(const std::string& path);
  bool is_open() const { return base_ != nullptr; }
  const std::string& path() const { return path_; }

  size_t size() const { return count_; }
  TokenDtype dtype() const { return dtype_; }
  size_t vocab_size() const { return vocab_size_; }
  uint32_t operator[](size_t i) const {
    return dtype_ == TokenDtype::kUint16 ? static_cast<const uint16_t*>(data_)[i]
                                         : static_cast<const uint32_t*>(data_)[i];
  }
  // out[0..n) = tokens [begin, begin + n), widened to int64 (what embedding lookups take).
  // Throws std::out_of_range when the range is not inside the shard.
  void copy(size_t begin, size_t n, int64_t* out) const;

 private:
  void close();
  std::string path_;
  void* base_ = nullptr;
  size_t mapped_bytes_ = 0;
  const void* data_ = nullptr;
  size_t count_ = 0;
  size_t vocab_size_ = 0;
  TokenDtype dtype_ = TokenDtype::kUint16;
};

}  // namespace fathom::data
