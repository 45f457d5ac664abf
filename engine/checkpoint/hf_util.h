// Helpers shared by the Hugging Face import (hf.cpp) and export (hf_export.cpp); not an API.
#pragma once
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "engine/checkpoint/tensor_io.h"
#include "engine/config/config.h"

namespace fathom::ckpt::hf_detail {

std::string join(const std::string& dir, const std::string& name);
// realpath(), or for a path that does not exist yet its resolved parent + name.
std::string absolute_path(const std::string& path);
std::string read_text_file(const std::string& path, const std::string& what);  // throws HfError
nlohmann::json read_json_file(const std::string& path, const std::string& what);
std::string architectures_list();
std::string natural_key(const std::string& name);  // digits zero-padded: layers.10 after layers.9
std::string shape_str(const std::vector<int64_t>& shape);
// Throws HfError naming missing, unexpected and mis-shaped tensors against expected_tensor_shapes.
void check_against_expected(const NamedTensors& tensors, const config::ModelConfig& model, const std::string& where);
// In the model's module order (embedding, layer 0..N-1, norm, head).
NamedTensors sorted_like_expected(NamedTensors tensors, const config::ModelConfig& model);
// Removes "<final_dir>.tmp-<pid>" siblings left by a convert that was killed (its pid is gone),
// then returns a fresh "<final_dir>.tmp-<this pid>" path (not created).
std::string fresh_tmp_sibling(const std::string& final_dir);
// step-<N> for a checkpoint dir, or the `latest` of a checkpoints/ dir or run dir; "" when none.
std::string resolve_checkpoint_dir(const std::string& dir);

}  // namespace fathom::ckpt::hf_detail
