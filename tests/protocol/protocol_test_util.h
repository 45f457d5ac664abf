// Helpers shared by the fathom_protocol tests: scratch directories, whole-file I/O, record equality.
#pragma once

#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <string>

#include "engine/protocol/record.h"

namespace fathom::protocol::test {

// A fresh directory under $TMPDIR, removed with its contents on destruction.
class TempDir {
 public:
  TempDir() {
    const char* base = std::getenv("TMPDIR");
    std::string tmpl = std::string(base && *base ? base : "/tmp") + "/fathom-protocol-XXXXXX";
    if (!::mkdtemp(tmpl.data())) throw std::runtime_error("mkdtemp failed for " + tmpl);
    path_ = tmpl;
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  std::string file(const std::string& name) const { return path_ + "/" + name; }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

inline std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

inline void write_file(const std::string& path, const std::string& bytes, bool append = false) {
  std::ofstream out(path, std::ios::binary | (append ? std::ios::app : std::ios::trunc));
  out << bytes;
}

inline std::string fixture(const std::string& name) { return std::string(FATHOM_FIXTURES_DIR) + "/protocol/" + name; }

inline bool same_record(const Record& a, const Record& b) {
  return a.v == b.v && a.type == b.type && a.type_name == b.type_name && a.run == b.run && a.rank == b.rank &&
         a.seq == b.seq && a.t_ms == b.t_ms && a.data == b.data;
}

}  // namespace fathom::protocol::test
