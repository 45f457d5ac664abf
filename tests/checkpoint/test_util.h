// Helpers shared by the checkpoint tests: a self-deleting temp directory and raw file I/O.
#pragma once
#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <fstream>
#include <iterator>
#include <stdexcept>
#include <string>

#include "engine/checkpoint/fs_posix.h"

namespace fathom::test {

class TempDir {
 public:
  TempDir() {
    const char* base = std::getenv("TMPDIR");
    std::string tmpl = std::string(base && *base ? base : "/tmp") + "/fathom-ckpt-test-XXXXXX";
    if (!::mkdtemp(tmpl.data())) throw std::runtime_error("mkdtemp failed for " + tmpl);
    path_ = tmpl;
  }
  ~TempDir() {
    fathom::ckpt::posix::remove_tree(path_);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::string& path() const { return path_; }
  std::string operator/(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

inline void write_file(const std::string& path, const std::string& bytes) {
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  f.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  if (!f) throw std::runtime_error("cannot write " + path);
}

inline std::string read_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw std::runtime_error("cannot read " + path);
  return std::string(std::istreambuf_iterator<char>(f), {});
}

// 8-byte little-endian length prefix, as the format stores N.
inline std::string le64(uint64_t n) {
  std::string s(8, '\0');
  for (int i = 0; i < 8; ++i) s[i] = static_cast<char>((n >> (8 * i)) & 0xFF);
  return s;
}

// Tests avoid std::filesystem for the reason given in engine/checkpoint/fs_posix.h.
inline void make_dirs(const std::string& path) { fathom::ckpt::posix::make_directories(path); }
inline bool exists(const std::string& path) { return fathom::ckpt::posix::exists(path); }
inline int64_t file_size(const std::string& path) { return fathom::ckpt::posix::file_size(path); }
inline void resize_file(const std::string& path, uint64_t size) {
  if (::truncate(path.c_str(), static_cast<off_t>(size)) != 0) throw std::runtime_error("cannot truncate " + path);
}
inline void remove_file(const std::string& path) {
  if (::unlink(path.c_str()) != 0) throw std::runtime_error("cannot remove " + path);
}

}  // namespace fathom::test
