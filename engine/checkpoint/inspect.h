// What `fathom-engine inspect` reports about a .safetensors file, a checkpoint (step-<N>) or a
// checkpoint directory, as JSON plus a human rendering. Torch-free; reads headers, never tensor
// data (except to hash checkpoint files when verifying).
#pragma once
#include <nlohmann/json.hpp>
#include <string>

namespace fathom::ckpt {

struct InspectOptions {
  bool verify_sha256 = true;  // for one checkpoint: hash every file (false: sizes only)
};

// Report kinds ("kind"):
//  "safetensors":      path, file_bytes, header_bytes, data_bytes, tensor_count, total_params,
//                      metadata{}, dtypes{NAME: {tensors, params, bytes}},
//                      tensors[{name, dtype, shape[], params, bytes, offset}] (file order)
//  "checkpoint":       path, step, val_loss, verified, verify_level ("sha256"|"sizes"), error,
//                      files[{name, bytes, sha256, status: "ok"|"missing"|"size mismatch"|
//                      "sha256 mismatch"|"not checked", detail}], state{top-level summary},
//                      model/optimizer{tensor_count, total_params, bytes, dtypes} when readable
//  "checkpoint_dir":   path, latest, checkpoints[{name, step, val_loss, bytes, whole, error}]
//                      (sizes only: hashing every checkpoint would read them all)
// Throws std::runtime_error (SafetensorsError / CheckpointError) when the path cannot be read or
// is none of the three; a checkpoint that fails verification is a report, not an exception.
nlohmann::json inspect_path(const std::string& path, const InspectOptions& options = {});

// Human-readable text of a report (units: KiB/MiB/GiB, K/M/B params).
std::string format_inspect_report(const nlohmann::json& report);

// Process exit status for a report: 0 when readable and (for checkpoints) verified, else 1.
int inspect_exit_code(const nlohmann::json& report);

std::string format_bytes(uint64_t bytes);    // "512 B", "1.50 KiB", "1.23 GiB"
std::string format_count(uint64_t count);    // "999", "12.3K", "1.10B"

}  // namespace fathom::ckpt
