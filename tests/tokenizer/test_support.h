// Helpers shared by the tokenizer tests: fixture and data-cache paths, JSON fixtures, and a
// main() that reports "skipped" (exit 77) when the data cache the test needs is missing.
#pragma once
#include <gtest/gtest.h>

#include <cstdlib>
#include <fstream>
#include <functional>
#include <iostream>
#include <random>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <sys/stat.h>

namespace fathom::test {

inline std::string fathom_cache_dir() {
  if (const char* d = std::getenv("FATHOM_DATA_DIR"); d && *d) return d;
  if (const char* x = std::getenv("XDG_CACHE_HOME"); x && *x) return std::string(x) + "/fathom";
  const char* home = std::getenv("HOME");
  return std::string(home ? home : "/root") + "/.cache/fathom";
}

inline bool path_exists(const std::string& p) {
  struct stat st {};
  return ::stat(p.c_str(), &st) == 0;
}

inline std::string read_text(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error("cannot open " + path);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

inline nlohmann::json read_fixture(const std::string& name) {
  return nlohmann::json::parse(read_text(std::string(FATHOM_FIXTURES_DIR) + "/" + name));
}

// main() for tests that need files from the data cache: exit 77 (ctest: skipped) without them.
inline int run_tests_requiring(int argc, char** argv, const std::vector<std::string>& needed) {
  for (const std::string& p : needed) {
    if (!path_exists(p)) {
      std::cout << "SKIPPED: " << p << " is missing (run the setup script to fill the data cache "
                << fathom_cache_dir() << ")\n";
      return 77;
    }
  }
  ::testing::InitGoogleTest(&argc, argv);
  return RUN_ALL_TESTS();
}

}  // namespace fathom::test

#include <unistd.h>

#include <cstdio>

namespace fathom::test {

// A fresh directory under $TMPDIR (or /tmp), removed with its contents at scope exit.
class TempDir {
 public:
  TempDir() {
    const char* base = std::getenv("TMPDIR");
    std::string tmpl = std::string(base && *base ? base : "/tmp") + "/fathom-test-XXXXXX";
    if (!::mkdtemp(tmpl.data())) throw std::runtime_error("mkdtemp failed for " + tmpl);
    path_ = tmpl;
  }
  ~TempDir() { std::system(("rm -rf '" + path_ + "'").c_str()); }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::string& path() const { return path_; }
  std::string file(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

inline void write_text(const std::string& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  if (!out) throw std::runtime_error("cannot write " + path);
  out << text;
}

// Every byte string may come back from decode(encode(x)): random bytes, invalid UTF-8 included.
inline std::string random_bytes(std::mt19937& rng, size_t max_len) {
  std::string s(rng() % (max_len + 1), '\0');
  for (char& c : s) c = char(rng() % 256);
  return s;
}

// Random valid UTF-8 drawn from all planes (surrogates excluded).
inline std::string random_unicode(std::mt19937& rng, size_t max_chars) {
  std::string s;
  const size_t n = rng() % (max_chars + 1);
  for (size_t i = 0; i < n; ++i) {
    uint32_t cp;
    switch (rng() % 4) {
      case 0: cp = 0x20 + rng() % 0x60; break;
      case 1: cp = 0x80 + rng() % 0x2000; break;
      case 2: cp = 0x3000 + rng() % 0xA000; break;
      default: cp = 0x10000 + rng() % 0x100000; break;
    }
    if (cp >= 0xD800 && cp <= 0xDFFF) cp = 'x';
    if (cp < 0x80) {
      s += char(cp);
    } else if (cp < 0x800) {
      s += char(0xC0 | (cp >> 6));
      s += char(0x80 | (cp & 0x3F));
    } else if (cp < 0x10000) {
      s += char(0xE0 | (cp >> 12));
      s += char(0x80 | ((cp >> 6) & 0x3F));
      s += char(0x80 | (cp & 0x3F));
    } else {
      s += char(0xF0 | (cp >> 18));
      s += char(0x80 | ((cp >> 12) & 0x3F));
      s += char(0x80 | ((cp >> 6) & 0x3F));
      s += char(0x80 | (cp & 0x3F));
    }
  }
  return s;
}

}  // namespace fathom::test
