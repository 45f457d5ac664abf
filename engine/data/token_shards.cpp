// Token shard writer (buffered, .tmp + fsync + rename) and memory-mapped reader. See the header
// for the file layout. No torch here: compiled into fathom_engine but usable on its own.
#include "engine/data/token_shards.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <stdexcept>

namespace fathom::data {
namespace {

// Shards are little-endian on disk and read in place through the mapping.
static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "token shards assume a little-endian host");

constexpr char kMagic[8] = {'F', 'A', 'T', 'H', 'O', 'M', 'T', 'K'};
constexpr uint32_t kVersion = 1;
constexpr size_t kBufferBytes = size_t(1) << 20;

std::string errno_text() { return std::strerror(errno); }

void put_u32(uint8_t* p, uint32_t v) {
  for (int i = 0; i < 4; ++i) p[i] = uint8_t(v >> (8 * i));
}
void put_u64(uint8_t* p, uint64_t v) {
  for (int i = 0; i < 8; ++i) p[i] = uint8_t(v >> (8 * i));
}
uint32_t get_u32(const uint8_t* p) {
  uint32_t v = 0;
  for (int i = 0; i < 4; ++i) v |= uint32_t(p[i]) << (8 * i);
  return v;
}
uint64_t get_u64(const uint8_t* p) {
  uint64_t v = 0;
  for (int i = 0; i < 8; ++i) v |= uint64_t(p[i]) << (8 * i);
  return v;
}

void fsync_parent_dir(const std::string& path) {
  const size_t slash = path.find_last_of('/');
  const std::string dir = slash == std::string::npos ? "." : (slash == 0 ? "/" : path.substr(0, slash));
  const int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY);
  if (fd >= 0) {
    (void)::fsync(fd);  // best effort: makes the rename durable on most file systems
    ::close(fd);
  }
}

}  // namespace

const char* token_dtype_name(TokenDtype dtype) {
  return dtype == TokenDtype::kUint16 ? "uint16" : "uint32";
}

TokenDtype token_dtype_for_vocab(size_t vocab_size) {
  return vocab_size <= 65535 ? TokenDtype::kUint16 : TokenDtype::kUint32;
}

// ---------------------------------------------------------------------------------------------
TokenShardWriter::TokenShardWriter(const std::string& path, size_t vocab_size)
    : path_(path), tmp_path_(path + ".tmp"), vocab_size_(vocab_size),
      dtype_(token_dtype_for_vocab(vocab_size)) {
  if (vocab_size == 0) throw std::runtime_error(path + ": token shard needs the vocabulary size (got 0)");
  file_ = std::fopen(tmp_path_.c_str(), "wb");
  if (!file_) {
    throw std::runtime_error(tmp_path_ + ": cannot create token shard (" + errno_text() +
                             "); check that the directory exists and is writable");
  }
  // Placeholder header (count 0) until commit().
  const uint8_t zeros[kTokenShardHeaderBytes] = {};
  if (std::fwrite(zeros, 1, sizeof zeros, file_) != sizeof zeros) {
    throw std::runtime_error(tmp_path_ + ": write failed (" + errno_text() + "); is the disk full?");
  }
  buffer_.reserve(kBufferBytes);
}

TokenShardWriter::~TokenShardWriter() {
  if (file_) std::fclose(file_);
  if (!committed_) std::remove(tmp_path_.c_str());
}

void TokenShardWriter::append(const uint32_t* ids, size_t n) {
  if (committed_) throw std::logic_error(path_ + ": append after commit");
  const size_t width = size_t(dtype_);
  for (size_t i = 0; i < n; ++i) {
    const uint32_t id = ids[i];
    if (id >= vocab_size_) {
      throw std::runtime_error(path_ + ": token id " + std::to_string(id) +
                               " is outside the vocabulary (" + std::to_string(vocab_size_) +
                               " tokens); the tokenizer and the shard disagree");
    }
    uint8_t bytes[4];
    put_u32(bytes, id);
    buffer_.insert(buffer_.end(), bytes, bytes + width);
    if (buffer_.size() >= kBufferBytes) {
      if (std::fwrite(buffer_.data(), 1, buffer_.size(), file_) != buffer_.size()) {
        throw std::runtime_error(tmp_path_ + ": write failed (" + errno_text() + "); is the disk full?");
      }
      buffer_.clear();
    }
  }
  count_ += n;
}

void TokenShardWriter::commit() {
  if (committed_) return;
  auto fail = [&](const std::string& what) {
    return std::runtime_error(tmp_path_ + ": " + what + " (" + errno_text() + "); is the disk full?");
  };
  if (!buffer_.empty() && std::fwrite(buffer_.data(), 1, buffer_.size(), file_) != buffer_.size()) {
    throw fail("write failed");
  }
  buffer_.clear();
  uint8_t header[kTokenShardHeaderBytes] = {};
  std::memcpy(header, kMagic, 8);
  put_u32(header + 8, kVersion);
  put_u32(header + 12, uint32_t(dtype_));
  put_u64(header + 16, count_);
  put_u64(header + 24, vocab_size_);
  if (std::fseek(file_, 0, SEEK_SET) != 0 || std::fwrite(header, 1, sizeof header, file_) != sizeof header) {
    throw fail("writing the header failed");
  }
  if (std::fflush(file_) != 0 || ::fsync(::fileno(file_)) != 0) throw fail("flush failed");
  if (std::fclose(file_) != 0) {
    file_ = nullptr;
    throw fail("close failed");
  }
  file_ = nullptr;
  if (std::rename(tmp_path_.c_str(), path_.c_str()) != 0) {
    throw std::runtime_error(path_ + ": cannot rename " + tmp_path_ + " into place (" + errno_text() + ")");
  }
  fsync_parent_dir(path_);
  committed_ = true;
}

// ---------------------------------------------------------------------------------------------
TokenShard::~TokenShard() { close(); }

TokenShard::TokenShard(TokenShard&& o) noexcept { *this = std::move(o); }

TokenShard& TokenShard::operator=(TokenShard&& o) noexcept {
  if (this != &o) {
    close();
    path_ = std::move(o.path_);
    base_ = o.base_;
    mapped_bytes_ = o.mapped_bytes_;
    data_ = o.data_;
    count_ = o.count_;
    vocab_size_ = o.vocab_size_;
    dtype_ = o.dtype_;
    o.base_ = nullptr;
    o.mapped_bytes_ = 0;
    o.data_ = nullptr;
    o.count_ = 0;
  }
  return *this;
}

void TokenShard::close() {
  if (base_) ::munmap(base_, mapped_bytes_);
  base_ = nullptr;
  data_ = nullptr;
  mapped_bytes_ = 0;
  count_ = 0;
}

void TokenShard::open(const std::string& path) {
  close();
  path_ = path;
  const std::string redo = "; delete it and run `fathom-engine prepare` again";
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    throw std::runtime_error(path + ": cannot open token shard (" + errno_text() +
                             "); run `fathom-engine prepare` to create it");
  }
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    const std::string err = errno_text();
    ::close(fd);
    throw std::runtime_error(path + ": cannot stat token shard (" + err + ")");
  }
  const auto file_bytes = static_cast<size_t>(st.st_size);
  if (file_bytes < kTokenShardHeaderBytes) {
    ::close(fd);
    throw std::runtime_error(path + ": not a token shard (" + std::to_string(file_bytes) +
                             " bytes, shorter than the 64-byte header)" + redo);
  }
  void* base = ::mmap(nullptr, file_bytes, PROT_READ, MAP_SHARED, fd, 0);
  const std::string map_err = base == MAP_FAILED ? errno_text() : std::string();
  ::close(fd);  // the mapping keeps the file alive
  if (base == MAP_FAILED) throw std::runtime_error(path + ": mmap failed (" + map_err + ")");
  const auto* h = static_cast<const uint8_t*>(base);
  auto reject = [&](const std::string& why) {
    ::munmap(base, file_bytes);
    return std::runtime_error(path + ": " + why + redo);
  };
  if (std::memcmp(h, kMagic, 8) != 0) throw reject("not a token shard (bad magic)");
  if (get_u32(h + 8) != kVersion) {
    throw reject("token shard format version " + std::to_string(get_u32(h + 8)) +
                 " is not supported (this engine reads version 1)");
  }
  const uint32_t width = get_u32(h + 12);
  if (width != 2 && width != 4) throw reject("bad token width " + std::to_string(width));
  const uint64_t count = get_u64(h + 16);
  const uint64_t expect = kTokenShardHeaderBytes + count * width;
  if (count > (uint64_t(1) << 60) || expect != file_bytes) {
    throw reject("truncated or corrupt token shard: the header says " + std::to_string(count) +
                 " tokens (" + std::to_string(expect) + " bytes) but the file has " +
                 std::to_string(file_bytes) + " bytes");
  }
  base_ = base;
  mapped_bytes_ = file_bytes;
  data_ = h + kTokenShardHeaderBytes;
  count_ = size_t(count);
  vocab_size_ = size_t(get_u64(h + 24));
  dtype_ = TokenDtype(width);
}

void TokenShard::copy(size_t begin, size_t n, int64_t* out) const {
  if (begin > count_ || n > count_ - begin) {
    throw std::out_of_range(path_ + ": tokens [" + std::to_string(begin) + ", " +
                            std::to_string(begin + n) + ") are outside the shard of " +
                            std::to_string(count_) + " tokens");
  }
  if (dtype_ == TokenDtype::kUint16) {
    const auto* p = static_cast<const uint16_t*>(data_) + begin;
    for (size_t i = 0; i < n; ++i) out[i] = p[i];
  } else {
    const auto* p = static_cast<const uint32_t*>(data_) + begin;
    for (size_t i = 0; i < n; ++i) out[i] = p[i];
  }
}

}  // namespace fathom::data
