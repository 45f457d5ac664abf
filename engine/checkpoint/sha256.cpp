// SHA-256 over OpenSSL EVP; see sha256.h.
#include "engine/checkpoint/sha256.h"

#include <fcntl.h>
#include <openssl/evp.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <stdexcept>
#include <vector>

namespace fathom::ckpt {

namespace {
EVP_MD_CTX* as_ctx(void* p) { return static_cast<EVP_MD_CTX*>(p); }

std::string to_hex(const unsigned char* bytes, unsigned n) {
  static const char* digits = "0123456789abcdef";
  std::string out(2 * n, '0');
  for (unsigned i = 0; i < n; ++i) {
    out[2 * i] = digits[bytes[i] >> 4];
    out[2 * i + 1] = digits[bytes[i] & 0xF];
  }
  return out;
}
}  // namespace

Sha256::Sha256() : ctx_(EVP_MD_CTX_new()) {
  if (!ctx_ || EVP_DigestInit_ex(as_ctx(ctx_), EVP_sha256(), nullptr) != 1) {
    EVP_MD_CTX_free(as_ctx(ctx_));
    throw std::runtime_error("sha256: OpenSSL could not initialise a SHA-256 context");
  }
}

Sha256::~Sha256() { EVP_MD_CTX_free(as_ctx(ctx_)); }

void Sha256::update(const void* data, size_t size) {
  if (finished_) throw std::logic_error("sha256: update() after hex_digest()");
  if (size == 0) return;
  if (EVP_DigestUpdate(as_ctx(ctx_), data, size) != 1) throw std::runtime_error("sha256: EVP_DigestUpdate failed");
}

std::string Sha256::hex_digest() {
  if (finished_) throw std::logic_error("sha256: hex_digest() called twice");
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned n = 0;
  if (EVP_DigestFinal_ex(as_ctx(ctx_), digest, &n) != 1) throw std::runtime_error("sha256: EVP_DigestFinal_ex failed");
  finished_ = true;
  return to_hex(digest, n);
}

std::string sha256_hex(const void* data, size_t size) {
  Sha256 h;
  h.update(data, size);
  return h.hex_digest();
}

std::string sha256_file(const std::string& path, uint64_t* bytes_out) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw std::runtime_error("cannot open '" + path + "' to hash it: " + std::strerror(errno));
  // Sequential reads: tell the kernel so it reads ahead aggressively on large files.
  ::posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL);
  Sha256 h;
  std::vector<char> buf(1 << 20);
  uint64_t total = 0;
  for (;;) {
    const ssize_t n = ::read(fd, buf.data(), buf.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      const int err = errno;
      ::close(fd);
      throw std::runtime_error("cannot read '" + path + "' at byte " + std::to_string(total) + " to hash it: " +
                               std::strerror(err));
    }
    if (n == 0) break;
    h.update(buf.data(), static_cast<size_t>(n));
    total += static_cast<uint64_t>(n);
  }
  ::close(fd);
  if (bytes_out) *bytes_out = total;
  return h.hex_digest();
}

}  // namespace fathom::ckpt
