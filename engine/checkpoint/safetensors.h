// safetensors reader/writer (Hugging Face format), torch-free. Validates every rule the reference
// Rust implementation enforces; assumes a little-endian host (checked at compile time).
#pragma once
#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <stdexcept>
#include <string>
#include <vector>

namespace fathom::ckpt {

// Layout of a file (https://github.com/huggingface/safetensors, "Format"):
//   [8 bytes: N, u64 little-endian] [N bytes: UTF-8 JSON header, starts with '{', may be padded
//   with spaces] [byte buffer: tensor data, little-endian, row-major]
// Header: {"__metadata__": {"k": "v", ...}, "NAME": {"dtype": "F32", "shape": [..],
//          "data_offsets": [begin, end]}, ...}; offsets are relative to the byte buffer, which the
//          tensors must cover exactly (no holes, no overlaps, nothing after the last tensor).

// Order and names follow the reference implementation; the order is increasing alignment, which
// the writer uses (descending) so every tensor starts aligned to its element size.
enum class DType : uint8_t {
  DTYPE_BOOL,
  DTYPE_U8,
  DTYPE_I8,
  DTYPE_F8_E5M2,
  DTYPE_F8_E4M3,
  DTYPE_I16,
  DTYPE_U16,
  DTYPE_F16,
  DTYPE_BF16,
  DTYPE_I32,
  DTYPE_U32,
  DTYPE_F32,
  DTYPE_F64,
  DTYPE_I64,
  DTYPE_U64,
};

// Every dtype, in enum order (for tests and tools).
const std::vector<DType>& all_dtypes();
// "F32", "BF16", ... exactly as written in headers.
const char* dtype_name(DType dtype);
// Parses a header dtype name; returns false for an unknown one.
bool dtype_from_name(const std::string& name, DType* out);
// Bytes per element (all supported dtypes are whole bytes).
size_t dtype_size(DType dtype);

// The reference implementation refuses headers above 100 MB (header-bomb protection).
constexpr uint64_t kMaxHeaderBytes = 100'000'000;

// What went wrong, so callers and tests can tell the rules apart; what() carries the full text
// (file, tensor, the rule, the offending values, what to do).
enum class SafetensorsErrc {
  SAFETENSORS_ERRC_IO,                 // open/read/write/mmap failed
  SAFETENSORS_ERRC_HEADER_TOO_SMALL,   // file shorter than the 8-byte length prefix
  SAFETENSORS_ERRC_HEADER_TOO_LARGE,   // N > kMaxHeaderBytes
  SAFETENSORS_ERRC_HEADER_LENGTH,      // 8 + N beyond the end of the file
  SAFETENSORS_ERRC_HEADER_UTF8,        // header bytes are not valid UTF-8
  SAFETENSORS_ERRC_HEADER_START,       // header does not begin with '{'
  SAFETENSORS_ERRC_HEADER_JSON,        // not valid JSON (incl. duplicate keys)
  SAFETENSORS_ERRC_HEADER_SCHEMA,      // valid JSON but wrong structure (missing/mistyped field)
  SAFETENSORS_ERRC_DTYPE,              // unknown dtype name
  SAFETENSORS_ERRC_OFFSETS,            // begin > end, hole or overlap between tensors
  SAFETENSORS_ERRC_TENSOR_SIZE,        // end - begin != numel(shape) * dtype size
  SAFETENSORS_ERRC_OVERFLOW,           // numel or byte count overflows u64
  SAFETENSORS_ERRC_INCOMPLETE_BUFFER,  // file size != 8 + N + end of the last tensor
  SAFETENSORS_ERRC_INVALID_DATA,       // tensor bytes that cannot be a value (a BOOL byte > 1)
  SAFETENSORS_ERRC_NOT_FOUND,          // data(name) for a name the file lacks
  SAFETENSORS_ERRC_INVALID_ARGUMENT,   // writer misuse (duplicate name, size mismatch, ...)
};

class SafetensorsError : public std::runtime_error {
 public:
  SafetensorsError(SafetensorsErrc code, const std::string& message)
      : std::runtime_error(message), code_(code) {}
  SafetensorsErrc code() const { return code_; }

 private:
  SafetensorsErrc code_;
};

struct TensorInfo {
  std::string name;
  DType dtype = DType::DTYPE_F32;
  std::vector<int64_t> shape;  // [] is a scalar (1 element); a 0 anywhere means no data
  uint64_t begin = 0;          // offsets into the byte buffer (after the header)
  uint64_t end = 0;

  uint64_t numel() const;
  uint64_t nbytes() const { return end - begin; }
};

// A parsed and validated header.
struct SafetensorsHeader {
  uint64_t header_bytes = 0;  // N (including padding)
  uint64_t data_bytes = 0;    // size of the byte buffer = end of the last tensor
  uint64_t file_bytes = 0;    // 8 + N + data_bytes for a valid file
  std::vector<TensorInfo> tensors;             // sorted by offset (file order)
  std::map<std::string, std::string> metadata;  // "__metadata__", empty when absent

  // nullptr when absent.
  const TensorInfo* find(const std::string& name) const;
  uint64_t data_start() const { return 8 + header_bytes; }
};

// Parses and validates the N header bytes of a file whose total size is file_bytes; `where`
// names the file in errors. Used by both readers; exposed for tools and tests.
SafetensorsHeader parse_header(const char* json, uint64_t header_bytes, uint64_t file_bytes,
                               const std::string& where);

// Re-checks the buffer rules on an already parsed header (offsets contiguous from 0, sizes match
// shape x dtype, the buffer ends exactly at the end of the file). Throws SafetensorsError.
void validate_header(const SafetensorsHeader& header, const std::string& where);

struct WriteOptions {
  bool fsync = false;           // fsync the file before returning (checkpoints need it)
  bool compute_sha256 = false;  // hash the bytes while writing (saves re-reading the file)
};

struct WriteResult {
  uint64_t bytes = 0;
  std::string sha256;  // lowercase hex; empty unless WriteOptions::compute_sha256
};

// Collects tensors (borrowed pointers: they must stay valid and unchanged until write() returns)
// and streams them to a file: the header first, then each tensor's bytes straight from its
// pointer, so memory use does not grow with the file. The output matches the reference
// serializer byte for byte: tensors ordered by descending alignment then name, compact JSON with
// "__metadata__" first and keys dtype/shape/data_offsets, header space-padded to a multiple of 8.
class SafetensorsWriter {
 public:
  // nbytes must equal numel(shape) * dtype_size(dtype); data may be null when nbytes == 0.
  void add(const std::string& name, DType dtype, const std::vector<int64_t>& shape,
           const void* data, uint64_t nbytes);
  // For data that is not in host memory yet (a GPU tensor): write() calls `produce` when it
  // reaches this tensor, and `produce` passes the bytes to `emit` in one or more pieces totalling
  // nbytes, so only one tensor is staged in host memory at a time.
  using Emit = std::function<void(const void* data, uint64_t nbytes)>;
  using Producer = std::function<void(const Emit& emit)>;
  void add_streamed(const std::string& name, DType dtype, const std::vector<int64_t>& shape,
                    uint64_t nbytes, Producer produce);
  void set_metadata(const std::string& key, const std::string& value);
  void set_metadata(const std::map<std::string, std::string>& metadata);

  size_t size() const { return entries_.size(); }
  // The exact N header bytes (padded) that write() emits; tensor offsets are assigned here.
  std::string header_json() const;
  // Writes (creating or truncating) path. On failure the partial file is removed and a
  // SafetensorsError(IO) names the path, the byte position and the OS error.
  WriteResult write(const std::string& path, const WriteOptions& options = {}) const;

 private:
  struct Entry {
    std::string name;
    DType dtype;
    std::vector<int64_t> shape;
    const void* data;
    uint64_t nbytes;
    Producer produce;  // set instead of data for add_streamed
  };
  void check_new_entry(const std::string& name, DType dtype, const std::vector<int64_t>& shape,
                       uint64_t nbytes) const;
  std::vector<const Entry*> ordered() const;

  std::vector<Entry> entries_;
  std::map<std::string, std::string> metadata_;
};

// A read-only memory map of a validated file. Data pointers stay valid while the object lives.
class SafetensorsFile {
 public:
  // Maps the file and validates the header against the file size; throws SafetensorsError.
  explicit SafetensorsFile(const std::string& path);
  ~SafetensorsFile();
  SafetensorsFile(SafetensorsFile&& other) noexcept;
  SafetensorsFile& operator=(SafetensorsFile&& other) noexcept;
  SafetensorsFile(const SafetensorsFile&) = delete;
  SafetensorsFile& operator=(const SafetensorsFile&) = delete;

  const std::string& path() const { return path_; }
  const SafetensorsHeader& header() const { return header_; }
  const std::map<std::string, std::string>& metadata() const { return header_.metadata; }
  // Sorted by offset.
  const std::vector<TensorInfo>& tensors() const { return header_.tensors; }
  bool contains(const std::string& name) const { return header_.find(name) != nullptr; }
  const TensorInfo& info(const std::string& name) const;  // throws NOT_FOUND

  struct Bytes {
    const uint8_t* data;
    uint64_t size;
  };
  // The tensor's bytes inside the map (aligned to its element size when the writer padded the
  // header to 8, as this one and the reference one do). Throws NOT_FOUND naming the file.
  Bytes data(const std::string& name) const;
  Bytes data(const TensorInfo& info) const;

  // Re-runs the structural checks (see validate_header) and that the file still has its size.
  void validate() const;

  // Reads only the 8-byte prefix and the header (two reads), never the tensor data: inspecting a
  // multi-GB file costs microseconds. Validates the header, including against the file size.
  static SafetensorsHeader read_header_only(const std::string& path);

 private:
  void unmap() noexcept;

  std::string path_;
  SafetensorsHeader header_;
  void* map_ = nullptr;
  size_t map_bytes_ = 0;
};

}  // namespace fathom::ckpt
