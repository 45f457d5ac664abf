// safetensors reader/writer; see safetensors.h. The checks mirror the reference implementation
// (huggingface/safetensors, safetensors/src/tensor.rs: read_metadata + Metadata::validate).
#include "engine/checkpoint/safetensors.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <limits>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>

#include "engine/checkpoint/sha256.h"
#include "engine/tokenizer/unicode.h"

static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__,
              "safetensors stores little-endian data; this reader copies bytes as they are");

namespace fathom::ckpt {

namespace {

using Errc = SafetensorsErrc;

struct DTypeRow {
  DType dtype;
  const char* name;
  size_t size;
};

// Names and sizes from the specification's dtype list.
const DTypeRow kDTypes[] = {
    {DType::DTYPE_BOOL, "BOOL", 1},       {DType::DTYPE_U8, "U8", 1},   {DType::DTYPE_I8, "I8", 1},
    {DType::DTYPE_F8_E5M2, "F8_E5M2", 1}, {DType::DTYPE_F8_E4M3, "F8_E4M3", 1},
    {DType::DTYPE_I16, "I16", 2},         {DType::DTYPE_U16, "U16", 2}, {DType::DTYPE_F16, "F16", 2},
    {DType::DTYPE_BF16, "BF16", 2},       {DType::DTYPE_I32, "I32", 4}, {DType::DTYPE_U32, "U32", 4},
    {DType::DTYPE_F32, "F32", 4},         {DType::DTYPE_F64, "F64", 8}, {DType::DTYPE_I64, "I64", 8},
    {DType::DTYPE_U64, "U64", 8},
};

const DTypeRow& row(DType d) {
  for (const auto& r : kDTypes)
    if (r.dtype == d) return r;
  throw SafetensorsError(Errc::SAFETENSORS_ERRC_INVALID_ARGUMENT,
                         "safetensors: invalid DType value " + std::to_string(static_cast<int>(d)));
}

std::string quote(const std::string& s) {
  // Names can hold anything; show them JSON-escaped so control bytes stay visible.
  return nlohmann::json(s).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

std::string shape_str(const std::vector<int64_t>& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

[[noreturn]] void fail(Errc code, const std::string& where, const std::string& what) {
  throw SafetensorsError(code, where + ": " + what);
}

const char* kNotSafetensorsHint =
    " The file is not a safetensors file or is damaged; re-export or re-download it.";

std::string hex_byte(char c) {
  char b[8];
  std::snprintf(b, sizeof b, "0x%02x", static_cast<unsigned char>(c));
  return b;
}

// Reads a JSON value that must be a non-negative integer.
bool as_u64(const nlohmann::json& v, uint64_t* out) {
  if (v.is_number_unsigned()) {
    *out = v.get<uint64_t>();
    return true;
  }
  if (v.is_number_integer() && v.get<int64_t>() >= 0) {
    *out = static_cast<uint64_t>(v.get<int64_t>());
    return true;
  }
  return false;
}

bool checked_mul(uint64_t a, uint64_t b, uint64_t* out) { return !__builtin_mul_overflow(a, b, out); }

std::string os_error(const std::string& what, const std::string& path, int err) {
  return "cannot " + what + " '" + path + "': " + std::strerror(err);
}

// Small write-combining buffer over a file descriptor: tiny tensors (biases, norms) are gathered,
// large ones go straight from their memory to write(2).
class FdWriter {
 public:
  FdWriter(int fd, const std::string& path, Sha256* hash) : fd_(fd), path_(path), hash_(hash) {
    buf_.reserve(kBuf);
  }
  void put(const void* p, uint64_t n) {
    if (hash_ && n) hash_->update(p, n);
    const char* c = static_cast<const char*>(p);
    if (buf_.size() + n <= kBuf) {
      buf_.insert(buf_.end(), c, c + n);
      return;
    }
    flush();
    if (n < kBuf) {
      buf_.insert(buf_.end(), c, c + n);
      return;
    }
    raw(c, n);
  }
  void flush() {
    raw(buf_.data(), buf_.size());
    buf_.clear();
  }
  uint64_t written() const { return written_ + buf_.size(); }

 private:
  static constexpr size_t kBuf = 4 << 20;
  void raw(const char* p, uint64_t n) {
    while (n > 0) {
      // Some kernels cap a single write near 2 GiB; stay below it.
      const size_t chunk = static_cast<size_t>(std::min<uint64_t>(n, 1ull << 30));
      const ssize_t w = ::write(fd_, p, chunk);
      if (w < 0) {
        if (errno == EINTR) continue;
        const int err = errno;
        std::string hint;
        if (err == ENOSPC || err == EDQUOT) hint = " Free disk space (or raise the quota) and try again.";
        if (err == EFBIG) hint = " The file size limit (ulimit -f) or the filesystem's maximum file size was reached.";
        throw SafetensorsError(Errc::SAFETENSORS_ERRC_IO, os_error("write", path_, err) + " (at byte " +
                                                              std::to_string(written_) + ")." + hint);
      }
      p += w;
      n -= static_cast<uint64_t>(w);
      written_ += static_cast<uint64_t>(w);
    }
  }
  int fd_;
  const std::string& path_;
  Sha256* hash_;
  std::vector<char> buf_;
  uint64_t written_ = 0;
};

}  // namespace

const std::vector<DType>& all_dtypes() {
  static const std::vector<DType> all = [] {
    std::vector<DType> v;
    for (const auto& r : kDTypes) v.push_back(r.dtype);
    return v;
  }();
  return all;
}

const char* dtype_name(DType dtype) { return row(dtype).name; }
size_t dtype_size(DType dtype) { return row(dtype).size; }

bool dtype_from_name(const std::string& name, DType* out) {
  for (const auto& r : kDTypes) {
    if (name == r.name) {
      *out = r.dtype;
      return true;
    }
  }
  return false;
}

uint64_t TensorInfo::numel() const {
  uint64_t n = 1;
  for (int64_t d : shape) n *= static_cast<uint64_t>(d);
  return n;
}

const TensorInfo* SafetensorsHeader::find(const std::string& name) const {
  for (const auto& t : tensors)
    if (t.name == name) return &t;
  return nullptr;
}

// ---- reading ----------------------------------------------------------------------------------

SafetensorsHeader parse_header(const char* json, uint64_t header_bytes, uint64_t file_bytes,
                               const std::string& where) {
  if (header_bytes == 0 || json[0] != '{') {
    fail(Errc::SAFETENSORS_ERRC_HEADER_START, where,
         "invalid safetensors header: the JSON header must begin with '{' (byte 8 of the file), found " +
             (header_bytes == 0 ? std::string("an empty header (N = 0)") : "byte " + hex_byte(json[0])) + "." +
             kNotSafetensorsHint);
  }
  const size_t bad = tok::unicode::invalid_utf8_at(std::string_view(json, header_bytes));
  if (bad != std::string::npos) {
    fail(Errc::SAFETENSORS_ERRC_HEADER_UTF8, where,
         "invalid safetensors header: not valid UTF-8 at header byte " + std::to_string(bad) + " (file offset " +
             std::to_string(8 + bad) + ")." + kNotSafetensorsHint);
  }

  // A raw NUL is never valid JSON (control characters in strings must be escaped), but nlohmann
  // treats it as end of input, which would accept NUL padding and anything hidden behind it.
  if (const void* nul = std::memchr(json, '\0', header_bytes)) {
    const size_t at = static_cast<size_t>(static_cast<const char*>(nul) - json);
    fail(Errc::SAFETENSORS_ERRC_HEADER_JSON, where,
         "invalid safetensors header: not valid JSON (NUL byte at header byte " + std::to_string(at) +
             "; the header may only be padded with spaces)." + kNotSafetensorsHint);
  }
  // nlohmann keeps the last of duplicated keys; the specification forbids duplicates (a second
  // entry could shadow the first in another reader), so track keys per open object.
  std::vector<std::set<std::string>> open_objects;
  std::string duplicate;
  nlohmann::json::parser_callback_t on_event = [&](int, nlohmann::json::parse_event_t ev, nlohmann::json& v) {
    using E = nlohmann::json::parse_event_t;
    if (ev == E::object_start) {
      open_objects.emplace_back();
    } else if (ev == E::object_end) {
      if (!open_objects.empty()) open_objects.pop_back();
    } else if (ev == E::key && !open_objects.empty()) {
      const std::string key = v.get<std::string>();
      if (!open_objects.back().insert(key).second && duplicate.empty()) duplicate = key;
    }
    return true;
  };
  nlohmann::json doc;
  try {
    doc = nlohmann::json::parse(json, json + header_bytes, on_event);
  } catch (const nlohmann::json::exception& e) {
    fail(Errc::SAFETENSORS_ERRC_HEADER_JSON, where,
         std::string("invalid safetensors header: not valid JSON (") + e.what() + ")." + kNotSafetensorsHint);
  }
  if (!duplicate.empty()) {
    fail(Errc::SAFETENSORS_ERRC_HEADER_JSON, where,
         "invalid safetensors header: key " + quote(duplicate) +
             " appears twice in one object; the format forbids duplicate keys." + kNotSafetensorsHint);
  }
  if (!doc.is_object()) {
    fail(Errc::SAFETENSORS_ERRC_HEADER_SCHEMA, where, "invalid safetensors header: the JSON header is not an object.");
  }

  SafetensorsHeader h;
  h.header_bytes = header_bytes;
  h.file_bytes = file_bytes;
  for (auto it = doc.begin(); it != doc.end(); ++it) {
    const std::string& name = it.key();
    const nlohmann::json& v = it.value();
    if (name == "__metadata__") {
      if (v.is_null()) continue;
      if (!v.is_object()) {
        fail(Errc::SAFETENSORS_ERRC_HEADER_SCHEMA, where,
             "invalid safetensors header: \"__metadata__\" must be an object of string values, found " +
                 std::string(v.type_name()) + ".");
      }
      for (auto m = v.begin(); m != v.end(); ++m) {
        if (!m.value().is_string()) {
          fail(Errc::SAFETENSORS_ERRC_HEADER_SCHEMA, where,
               "invalid safetensors header: \"__metadata__\" value for key " + quote(m.key()) + " is a " +
                   m.value().type_name() + "; the format allows strings only.");
        }
        h.metadata[m.key()] = m.value().get<std::string>();
      }
      continue;
    }
    const std::string tname = "tensor " + quote(name);
    if (!v.is_object()) {
      fail(Errc::SAFETENSORS_ERRC_HEADER_SCHEMA, where,
           "invalid safetensors header: " + tname + " must map to {\"dtype\", \"shape\", \"data_offsets\"}, found " +
               v.type_name() + ".");
    }
    TensorInfo t;
    t.name = name;
    const auto dt = v.find("dtype");
    if (dt == v.end() || !dt->is_string()) {
      fail(Errc::SAFETENSORS_ERRC_HEADER_SCHEMA, where,
           "invalid safetensors header: " + tname + " has no string \"dtype\".");
    }
    if (!dtype_from_name(dt->get<std::string>(), &t.dtype)) {
      std::string known;
      for (const auto& r : kDTypes) known += std::string(known.empty() ? "" : ", ") + r.name;
      fail(Errc::SAFETENSORS_ERRC_DTYPE, where,
           "unsupported dtype " + quote(dt->get<std::string>()) + " for " + tname + "; supported: " + known + ".");
    }
    const auto sh = v.find("shape");
    if (sh == v.end() || !sh->is_array()) {
      fail(Errc::SAFETENSORS_ERRC_HEADER_SCHEMA, where,
           "invalid safetensors header: " + tname + " has no \"shape\" array.");
    }
    for (const auto& d : *sh) {
      uint64_t u;
      if (!as_u64(d, &u)) {
        fail(Errc::SAFETENSORS_ERRC_HEADER_SCHEMA, where,
             "invalid safetensors header: " + tname + " has shape " + sh->dump() +
                 "; every dimension must be a non-negative integer.");
      }
      if (u > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
        fail(Errc::SAFETENSORS_ERRC_OVERFLOW, where,
             "invalid safetensors header: " + tname + " has dimension " + std::to_string(u) + " above 2^63-1.");
      }
      t.shape.push_back(static_cast<int64_t>(u));
    }
    const auto off = v.find("data_offsets");
    if (off == v.end() || !off->is_array() || off->size() != 2 || !as_u64((*off)[0], &t.begin) ||
        !as_u64((*off)[1], &t.end)) {
      fail(Errc::SAFETENSORS_ERRC_HEADER_SCHEMA, where,
           "invalid safetensors header: " + tname +
               " needs \"data_offsets\": [begin, end] with two non-negative integers" +
               (off == v.end() ? std::string(", it has none.") : ", found " + off->dump() + "."));
    }
    h.tensors.push_back(std::move(t));
  }
  // File order; ties (zero-size tensors at one offset) by name so the order is deterministic.
  std::sort(h.tensors.begin(), h.tensors.end(), [](const TensorInfo& a, const TensorInfo& b) {
    if (a.begin != b.begin) return a.begin < b.begin;
    if (a.end != b.end) return a.end < b.end;
    return a.name < b.name;
  });
  validate_header(h, where);
  h.data_bytes = h.tensors.empty() ? 0 : h.tensors.back().end;  // contiguous from 0 once validated
  return h;
}

void validate_header(const SafetensorsHeader& h, const std::string& where) {
  uint64_t running = 0;
  const TensorInfo* prev = nullptr;
  for (const auto& t : h.tensors) {
    const std::string tname = "tensor " + quote(t.name);
    const std::string offs = "data_offsets [" + std::to_string(t.begin) + ", " + std::to_string(t.end) + "]";
    if (t.end < t.begin) {
      fail(Errc::SAFETENSORS_ERRC_OFFSETS, where,
           "invalid safetensors header: " + tname + " has " + offs + " with end before begin." + kNotSafetensorsHint);
    }
    if (t.begin != running) {
      std::string what;
      if (t.begin > running) {
        what = "leaves bytes [" + std::to_string(running) + ", " + std::to_string(t.begin) +
               ") of the data buffer covered by no tensor (holes are forbidden)";
      } else {
        what = "overlaps " + (prev ? "tensor " + quote(prev->name) + " (data_offsets [" + std::to_string(prev->begin) +
                                         ", " + std::to_string(prev->end) + "])"
                                   : std::string("the previous tensor"));
      }
      fail(Errc::SAFETENSORS_ERRC_OFFSETS, where,
           "invalid safetensors header: " + tname + " with " + offs + " " + what + "." + kNotSafetensorsHint);
    }
    uint64_t numel = 1;
    for (int64_t d : t.shape) {
      if (d < 0 || !checked_mul(numel, static_cast<uint64_t>(d), &numel)) {
        fail(Errc::SAFETENSORS_ERRC_OVERFLOW, where,
             "invalid safetensors header: " + tname + " shape " + shape_str(t.shape) +
                 " has an element count that overflows 64 bits.");
      }
    }
    uint64_t nbytes = 0;
    if (!checked_mul(numel, dtype_size(t.dtype), &nbytes)) {
      fail(Errc::SAFETENSORS_ERRC_OVERFLOW, where,
           "invalid safetensors header: " + tname + " shape " + shape_str(t.shape) + " x " + dtype_name(t.dtype) +
               " has a byte size that overflows 64 bits.");
    }
    if (t.end - t.begin != nbytes) {
      fail(Errc::SAFETENSORS_ERRC_TENSOR_SIZE, where,
           "invalid safetensors header: " + tname + " has " + offs + " (" + std::to_string(t.end - t.begin) +
               " bytes) but shape " + shape_str(t.shape) + " x " + dtype_name(t.dtype) + " needs " +
               std::to_string(nbytes) + " bytes." + kNotSafetensorsHint);
    }
    running = t.end;
    prev = &t;
  }
  const uint64_t expected = 8 + h.header_bytes + running;
  if (expected < running || h.file_bytes != expected) {
    if (h.file_bytes < expected) {
      fail(Errc::SAFETENSORS_ERRC_INCOMPLETE_BUFFER, where,
           "file is truncated: the header describes " + std::to_string(running) + " bytes of tensor data, so the file "
           "should be " + std::to_string(expected) + " bytes, but it is " + std::to_string(h.file_bytes) +
               " bytes. The write was interrupted or the copy is incomplete; copy or save it again.");
    }
    fail(Errc::SAFETENSORS_ERRC_INCOMPLETE_BUFFER, where,
         "invalid safetensors file: " + std::to_string(h.file_bytes - expected) +
             " bytes after the last tensor are covered by no tensor (the data buffer must end with the last "
             "tensor; file is " + std::to_string(h.file_bytes) + " bytes, header accounts for " +
             std::to_string(expected) + ")." + kNotSafetensorsHint);
  }
}

namespace {

// Checks the 8-byte prefix against the file size and returns N.
uint64_t check_prefix(const unsigned char* prefix8, uint64_t file_bytes, const std::string& where) {
  uint64_t n;
  std::memcpy(&n, prefix8, 8);  // little-endian host (static_assert above)
  if (n > kMaxHeaderBytes) {
    fail(Errc::SAFETENSORS_ERRC_HEADER_TOO_LARGE, where,
         "invalid safetensors file: the header length prefix says " + std::to_string(n) +
             " bytes, above the 100 MB limit the format allows." + kNotSafetensorsHint);
  }
  if (8 + n > file_bytes) {
    fail(Errc::SAFETENSORS_ERRC_HEADER_LENGTH, where,
         "invalid safetensors file: the header length prefix says " + std::to_string(n) + " bytes but only " +
             std::to_string(file_bytes - 8) + " bytes follow the prefix (truncated or not a safetensors file).");
  }
  return n;
}

void too_small(uint64_t file_bytes, const std::string& where) {
  fail(Errc::SAFETENSORS_ERRC_HEADER_TOO_SMALL, where,
       "invalid safetensors file: " + std::to_string(file_bytes) +
           " bytes is shorter than the 8-byte header length prefix." + kNotSafetensorsHint);
}

bool pread_all(int fd, void* buf, uint64_t n, uint64_t offset) {
  char* p = static_cast<char*>(buf);
  while (n > 0) {
    const ssize_t r = ::pread(fd, p, static_cast<size_t>(std::min<uint64_t>(n, 1u << 30)), static_cast<off_t>(offset));
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) {
      if (r == 0) errno = EIO;  // shrank under us
      return false;
    }
    p += r;
    n -= static_cast<uint64_t>(r);
    offset += static_cast<uint64_t>(r);
  }
  return true;
}

struct Fd {
  int fd = -1;
  ~Fd() {
    if (fd >= 0) ::close(fd);
  }
};

uint64_t open_and_stat(const std::string& path, Fd* fd) {
  fd->fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd->fd < 0) {
    throw SafetensorsError(Errc::SAFETENSORS_ERRC_IO, os_error("open", path, errno) + ".");
  }
  struct stat st;
  if (::fstat(fd->fd, &st) != 0) throw SafetensorsError(Errc::SAFETENSORS_ERRC_IO, os_error("stat", path, errno) + ".");
  if (S_ISDIR(st.st_mode)) {
    throw SafetensorsError(Errc::SAFETENSORS_ERRC_IO, "cannot read '" + path + "' as a safetensors file: it is a directory.");
  }
  return static_cast<uint64_t>(st.st_size);
}

}  // namespace

SafetensorsHeader SafetensorsFile::read_header_only(const std::string& path) {
  Fd fd;
  const uint64_t size = open_and_stat(path, &fd);
  if (size < 8) too_small(size, path);
  unsigned char prefix[8];
  if (!pread_all(fd.fd, prefix, 8, 0)) throw SafetensorsError(Errc::SAFETENSORS_ERRC_IO, os_error("read", path, errno) + ".");
  const uint64_t n = check_prefix(prefix, size, path);
  std::string json(n, '\0');
  if (!pread_all(fd.fd, json.data(), n, 8)) {
    throw SafetensorsError(Errc::SAFETENSORS_ERRC_IO, os_error("read the header of", path, errno) + ".");
  }
  return parse_header(json.data(), n, size, path);
}

SafetensorsFile::SafetensorsFile(const std::string& path) : path_(path) {
  Fd fd;
  const uint64_t size = open_and_stat(path, &fd);
  if (size < 8) too_small(size, path);
  map_ = ::mmap(nullptr, static_cast<size_t>(size), PROT_READ, MAP_PRIVATE, fd.fd, 0);
  if (map_ == MAP_FAILED) {
    map_ = nullptr;
    throw SafetensorsError(Errc::SAFETENSORS_ERRC_IO, os_error("memory-map", path, errno) + ".");
  }
  map_bytes_ = static_cast<size_t>(size);
  try {
    const auto* bytes = static_cast<const unsigned char*>(map_);
    const uint64_t n = check_prefix(bytes, size, path);
    header_ = parse_header(reinterpret_cast<const char*>(bytes + 8), n, size, path);
  } catch (...) {
    unmap();
    throw;
  }
}

SafetensorsFile::~SafetensorsFile() { unmap(); }

SafetensorsFile::SafetensorsFile(SafetensorsFile&& o) noexcept
    : path_(std::move(o.path_)), header_(std::move(o.header_)), map_(o.map_), map_bytes_(o.map_bytes_) {
  o.map_ = nullptr;
  o.map_bytes_ = 0;
}

SafetensorsFile& SafetensorsFile::operator=(SafetensorsFile&& o) noexcept {
  if (this != &o) {
    unmap();
    path_ = std::move(o.path_);
    header_ = std::move(o.header_);
    map_ = o.map_;
    map_bytes_ = o.map_bytes_;
    o.map_ = nullptr;
    o.map_bytes_ = 0;
  }
  return *this;
}

void SafetensorsFile::unmap() noexcept {
  if (map_) ::munmap(map_, map_bytes_);
  map_ = nullptr;
  map_bytes_ = 0;
}

const TensorInfo& SafetensorsFile::info(const std::string& name) const {
  const TensorInfo* t = header_.find(name);
  if (!t) {
    throw SafetensorsError(Errc::SAFETENSORS_ERRC_NOT_FOUND,
                           path_ + ": no tensor named " + quote(name) + " (the file has " +
                               std::to_string(header_.tensors.size()) + " tensors; `fathom-engine inspect " + path_ +
                               "` lists them).");
  }
  return *t;
}

SafetensorsFile::Bytes SafetensorsFile::data(const std::string& name) const { return data(info(name)); }

SafetensorsFile::Bytes SafetensorsFile::data(const TensorInfo& t) const {
  const auto* base = static_cast<const uint8_t*>(map_) + header_.data_start();
  return Bytes{base + t.begin, t.end - t.begin};
}

void SafetensorsFile::validate() const {
  validate_header(header_, path_);
  // A file that shrank after mapping would fault on access; catch it here with a clear message.
  struct stat st;
  if (::stat(path_.c_str(), &st) != 0) throw SafetensorsError(Errc::SAFETENSORS_ERRC_IO, os_error("stat", path_, errno) + ".");
  if (static_cast<uint64_t>(st.st_size) != header_.file_bytes) {
    throw SafetensorsError(Errc::SAFETENSORS_ERRC_INCOMPLETE_BUFFER,
                           path_ + ": the file changed size while open (was " + std::to_string(header_.file_bytes) +
                               " bytes, now " + std::to_string(st.st_size) + "); another process is writing it.");
  }
}

// ---- writing ----------------------------------------------------------------------------------

void SafetensorsWriter::check_new_entry(const std::string& name, DType dtype, const std::vector<int64_t>& shape,
                                        uint64_t nbytes) const {
  const std::string where = "safetensors writer: tensor " + quote(name);
  if (name == "__metadata__") {
    throw SafetensorsError(Errc::SAFETENSORS_ERRC_INVALID_ARGUMENT,
                           where + ": the name \"__metadata__\" is reserved by the format; rename the tensor.");
  }
  if (tok::unicode::invalid_utf8_at(name) != std::string::npos) {
    throw SafetensorsError(Errc::SAFETENSORS_ERRC_INVALID_ARGUMENT, where + ": the name is not valid UTF-8.");
  }
  for (const auto& e : entries_) {
    if (e.name == name) {
      throw SafetensorsError(Errc::SAFETENSORS_ERRC_INVALID_ARGUMENT,
                             where + " was added twice; tensor names must be unique in a file.");
    }
  }
  uint64_t numel = 1;
  for (int64_t d : shape) {
    if (d < 0 || !checked_mul(numel, static_cast<uint64_t>(d), &numel)) {
      throw SafetensorsError(Errc::SAFETENSORS_ERRC_INVALID_ARGUMENT,
                             where + ": invalid shape " + shape_str(shape) + " (negative or overflowing).");
    }
  }
  uint64_t expected = 0;
  if (!checked_mul(numel, dtype_size(dtype), &expected) || expected != nbytes) {
    throw SafetensorsError(Errc::SAFETENSORS_ERRC_INVALID_ARGUMENT,
                           where + ": shape " + shape_str(shape) + " x " + dtype_name(dtype) + " needs " +
                               std::to_string(expected) + " bytes but " + std::to_string(nbytes) + " were given.");
  }
}

void SafetensorsWriter::add(const std::string& name, DType dtype, const std::vector<int64_t>& shape,
                            const void* data, uint64_t nbytes) {
  check_new_entry(name, dtype, shape, nbytes);
  if (nbytes > 0 && data == nullptr) {
    throw SafetensorsError(Errc::SAFETENSORS_ERRC_INVALID_ARGUMENT,
                           "safetensors writer: tensor " + quote(name) + ": null data pointer for a non-empty tensor.");
  }
  entries_.push_back(Entry{name, dtype, shape, data, nbytes, {}});
}

void SafetensorsWriter::add_streamed(const std::string& name, DType dtype, const std::vector<int64_t>& shape,
                                     uint64_t nbytes, Producer produce) {
  check_new_entry(name, dtype, shape, nbytes);
  if (!produce) {
    throw SafetensorsError(Errc::SAFETENSORS_ERRC_INVALID_ARGUMENT,
                           "safetensors writer: tensor " + quote(name) + ": empty producer.");
  }
  entries_.push_back(Entry{name, dtype, shape, nullptr, nbytes, std::move(produce)});
}

void SafetensorsWriter::set_metadata(const std::string& key, const std::string& value) {
  for (const std::string* s : {&key, &value}) {
    if (tok::unicode::invalid_utf8_at(*s) != std::string::npos) {
      throw SafetensorsError(Errc::SAFETENSORS_ERRC_INVALID_ARGUMENT,
                             "safetensors writer: metadata " + quote(key) + " is not valid UTF-8.");
    }
  }
  metadata_[key] = value;
}

void SafetensorsWriter::set_metadata(const std::map<std::string, std::string>& metadata) {
  for (const auto& [k, v] : metadata) set_metadata(k, v);
}

std::vector<const SafetensorsWriter::Entry*> SafetensorsWriter::ordered() const {
  // Descending alignment then name (as the reference serializer): with the data buffer starting
  // 8-aligned, every tensor then starts at a multiple of its element size.
  std::vector<const Entry*> v;
  for (const auto& e : entries_) v.push_back(&e);
  std::sort(v.begin(), v.end(), [](const Entry* a, const Entry* b) {
    if (a->dtype != b->dtype) return a->dtype > b->dtype;
    return a->name < b->name;
  });
  return v;
}

std::string SafetensorsWriter::header_json() const {
  // Hand-assembled rather than nlohmann::json::dump(), which sorts keys: the reference writes
  // "__metadata__" first, tensors in buffer order and fields as dtype, shape, data_offsets.
  std::string s = "{";
  bool first = true;
  if (!metadata_.empty()) {
    s += "\"__metadata__\":{";
    bool mfirst = true;
    for (const auto& [k, v] : metadata_) {
      s += (mfirst ? "" : ",") + quote(k) + ":" + quote(v);
      mfirst = false;
    }
    s += "}";
    first = false;
  }
  uint64_t offset = 0;
  for (const Entry* e : ordered()) {
    s += (first ? "" : ",") + quote(e->name) + ":{\"dtype\":\"" + dtype_name(e->dtype) + "\",\"shape\":[";
    for (size_t i = 0; i < e->shape.size(); ++i) s += (i ? "," : "") + std::to_string(e->shape[i]);
    s += "],\"data_offsets\":[" + std::to_string(offset) + "," + std::to_string(offset + e->nbytes) + "]}";
    offset += e->nbytes;
    first = false;
  }
  s += "}";
  s.append((8 - s.size() % 8) % 8, ' ');
  return s;
}

WriteResult SafetensorsWriter::write(const std::string& path, const WriteOptions& options) const {
  const std::string header = header_json();
  if (header.size() > kMaxHeaderBytes) {
    throw SafetensorsError(Errc::SAFETENSORS_ERRC_HEADER_TOO_LARGE,
                           path + ": the header would be " + std::to_string(header.size()) +
                               " bytes, above the format's 100 MB limit; split the tensors over several files.");
  }
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) {
    throw SafetensorsError(Errc::SAFETENSORS_ERRC_IO,
                           os_error("create", path, errno) + ". Check that the directory exists and is writable.");
  }
  WriteResult result;
  try {
    Sha256 hash;
    FdWriter out(fd, path, options.compute_sha256 ? &hash : nullptr);
    const uint64_t n = header.size();
    unsigned char prefix[8];
    std::memcpy(prefix, &n, 8);
    out.put(prefix, 8);
    out.put(header.data(), header.size());
    for (const Entry* e : ordered()) {
      if (!e->produce) {
        out.put(e->data, e->nbytes);
        continue;
      }
      // The header already promised nbytes; a producer that delivers another amount would
      // shift every later tensor, so it is an error, not a short file.
      uint64_t got = 0;
      e->produce([&](const void* p, uint64_t n) {
        if (got + n > e->nbytes) {
          throw SafetensorsError(Errc::SAFETENSORS_ERRC_INVALID_ARGUMENT,
                                 path + ": producer of tensor " + quote(e->name) + " emitted more than the declared " +
                                     std::to_string(e->nbytes) + " bytes.");
        }
        out.put(p, n);
        got += n;
      });
      if (got != e->nbytes) {
        throw SafetensorsError(Errc::SAFETENSORS_ERRC_INVALID_ARGUMENT,
                               path + ": producer of tensor " + quote(e->name) + " emitted " + std::to_string(got) +
                                   " bytes, declared " + std::to_string(e->nbytes) + ".");
      }
    }
    out.flush();
    if (options.fsync && ::fsync(fd) != 0) {
      throw SafetensorsError(Errc::SAFETENSORS_ERRC_IO, os_error("fsync", path, errno) + ".");
    }
    result.bytes = out.written();
    if (options.compute_sha256) result.sha256 = hash.hex_digest();
  } catch (...) {
    ::close(fd);
    ::unlink(path.c_str());
    throw;
  }
  // close() can report a deferred write error (NFS); a file we cannot trust is removed.
  if (::close(fd) != 0) {
    const int err = errno;
    ::unlink(path.c_str());
    throw SafetensorsError(Errc::SAFETENSORS_ERRC_IO, os_error("close", path, err) + " (data may not have been written).");
  }
  return result;
}

}  // namespace fathom::ckpt
