// SHA-256 through OpenSSL EVP (hardware-accelerated where the CPU has SHA extensions), streaming
// so that multi-GB checkpoint files are hashed in constant memory. Torch-free.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>

namespace fathom::ckpt {

class Sha256 {
 public:
  Sha256();
  ~Sha256();
  Sha256(const Sha256&) = delete;
  Sha256& operator=(const Sha256&) = delete;

  void update(const void* data, size_t size);
  // Lowercase hex of the 32-byte digest. Ends the stream: call once.
  std::string hex_digest();

 private:
  void* ctx_;  // EVP_MD_CTX*, kept opaque so that callers do not include OpenSSL headers
  bool finished_ = false;
};

std::string sha256_hex(const void* data, size_t size);

// Hashes a whole file in 1 MiB reads. Throws std::runtime_error naming the file and the OS error.
// bytes_out, when given, receives the number of bytes hashed.
std::string sha256_file(const std::string& path, uint64_t* bytes_out = nullptr);

}  // namespace fathom::ckpt
