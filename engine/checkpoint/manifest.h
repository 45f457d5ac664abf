// Checkpoint directory format without torch: MANIFEST.json (size + sha256 of every file),
// verification, step-<N> naming and the fsync/rename helpers that make a checkpoint appear whole
// or not at all. Used by CheckpointManager, `fathom-engine inspect` and (read-only) tools.
#pragma once
#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

namespace fathom::ckpt {

// <save_dir>/step-<N>/{model.safetensors, optimizer.safetensors, state.json, MANIFEST.json}
inline constexpr const char* kModelFile = "model.safetensors";
inline constexpr const char* kOptimizerFile = "optimizer.safetensors";
inline constexpr const char* kStateFile = "state.json";
inline constexpr const char* kManifestFile = "MANIFEST.json";
inline constexpr const char* kLatestFile = "latest";  // in save_dir: "step-<N>\n"
inline constexpr const char* kStateFormat = "fathom-checkpoint";
inline constexpr const char* kManifestFormat = "fathom-checkpoint-manifest";
inline constexpr int kCheckpointVersion = 1;

class CheckpointError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

struct CheckpointInfo {
  std::string path;  // the step-<N> directory
  int64_t step = -1;
  std::optional<double> val_loss;
  int64_t bytes = 0;      // sum of the files listed in the manifest
  bool verified = false;  // every file present with the manifest's size (and sha256 at VERIFY_SHA256)
  std::string error;      // why not, naming the file and what is wrong; empty when verified
};

struct ManifestFile {
  std::string name;  // plain file name inside the checkpoint directory
  uint64_t bytes = 0;
  std::string sha256;  // lowercase hex
};

struct Manifest {
  int version = kCheckpointVersion;
  int64_t step = 0;
  std::optional<double> val_loss;
  int64_t created_unix_ms = 0;
  std::vector<ManifestFile> files;

  uint64_t total_bytes() const;
  const ManifestFile* find(const std::string& name) const;
};

nlohmann::json manifest_to_json(const Manifest& manifest);
// Throws CheckpointError naming `where` and the offending field.
Manifest manifest_from_json(const nlohmann::json& j, const std::string& where);
// Reads <dir>/MANIFEST.json; throws CheckpointError (missing, unreadable, malformed).
Manifest read_manifest(const std::string& dir);

// "step-<N>"; and the strict inverse (digits only, no sign, no leading zeros except "step-0").
std::string checkpoint_dir_name(int64_t step);
bool parse_checkpoint_dir_name(const std::string& name, int64_t* step);

enum class VerifyLevel {
  VERIFY_LEVEL_SIZES,   // manifest parses, files exist with the recorded sizes (cheap: stat only)
  VERIFY_LEVEL_SHA256,  // and every file's sha256 matches (reads everything)
};
// Never throws: problems are reported in CheckpointInfo::error.
CheckpointInfo verify_checkpoint(const std::string& dir, VerifyLevel level = VerifyLevel::VERIFY_LEVEL_SHA256);

// ---- durability helpers (POSIX) ----
// Writes `contents` to path and fsyncs it; on failure removes the partial file and throws
// CheckpointError with the path, OS error and a hint (disk full, quota, file size limit).
void write_file_durable(const std::string& path, const std::string& contents);
// write_file_durable to "<path>.tmp", rename over path, fsync the parent: readers see the old or
// the new contents, never a mix.
void write_file_atomic(const std::string& path, const std::string& contents);
// fsync a directory so that renames and creations inside it survive a power cut. Filesystems
// that cannot fsync directories (EINVAL) are tolerated.
void fsync_directory(const std::string& dir);

}  // namespace fathom::ckpt
