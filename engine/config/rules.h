// Cross-key rules and derived values of a run config (internal to fathom_config; the loader
// calls apply_rules after merging, the docs list cross_key_rule_descriptions()).
#pragma once
#include <map>
#include <set>
#include <string>
#include <vector>

#include "engine/config/config.h"

namespace fathom::config {

struct RuleContext {
  const std::map<std::string, KeyOrigin>& origins;  // keys set explicitly, with their position
  const std::set<std::string>& bad_keys;            // keys whose value had an error: rules skip them
  std::string main_file;                            // errors about defaults point here
  bool check_paths = true;                          // warn about data/tokenizer paths that are missing
};

// Resolves precision/fp16_enabled, checks every cross-key rule, then fills derived values
// (n_kv_heads, d_ff, moe.d_expert).
void apply_rules(RunConfig& config, const RuleContext& ctx, std::vector<ConfigError>& errors,
                 std::vector<ConfigError>& warnings);

// One line per rule, for docs/config-reference.md.
std::vector<std::string> cross_key_rule_descriptions();

// floor(8·d_model/3) rounded up to a multiple of multiple_of (LLaMA's SwiGLU width).
int64_t swiglu_hidden_dim(int64_t d_model, int64_t multiple_of);

}  // namespace fathom::config
