// Helpers shared by the harnesses.
#pragma once
#include <sys/mman.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>

namespace fathom::fuzz {

// An anonymous in-memory file holding `bytes`, reachable by path (/proc/self/fd/N), for parsers
// whose entry point takes a path. No disk I/O, nothing left behind.
class MemFile {
 public:
  MemFile(const void* bytes, size_t n, const char* name = "fuzz") {
    fd_ = ::memfd_create(name, MFD_CLOEXEC);
    if (fd_ < 0) std::abort();
    const char* p = static_cast<const char*>(bytes);
    while (n > 0) {
      const ssize_t w = ::write(fd_, p, n);
      if (w <= 0) std::abort();
      p += w;
      n -= static_cast<size_t>(w);
    }
    path_ = "/proc/self/fd/" + std::to_string(fd_);
  }
  ~MemFile() { ::close(fd_); }
  MemFile(const MemFile&) = delete;
  MemFile& operator=(const MemFile&) = delete;
  const std::string& path() const { return path_; }

 private:
  int fd_ = -1;
  std::string path_;
};

// A harness's own consistency check failed: report and crash so libFuzzer keeps the input.
[[noreturn]] inline void fail(const char* what, const std::string& detail = "") {
  std::fprintf(stderr, "FUZZ INVARIANT BROKEN: %s %s\n", what, detail.c_str());
  std::abort();
}

}  // namespace fathom::fuzz
