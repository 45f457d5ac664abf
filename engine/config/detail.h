// Helpers shared by the fathom_config sources (not part of the public API): did-you-mean
// suggestions, ${VAR} expansion, errors with positions.
#pragma once
#include <string>
#include <vector>

namespace fathom::config::detail {

// Edit distance: insert, delete, substitute and swap of neighbours each cost 1.
size_t edit_distance(const std::string& a, const std::string& b);
// The candidate closest to `word`, or "" when none is close enough to be a plausible typo
// (distance <= max(2, |word| / 3), or one contains the other).
std::string closest_match(const std::string& word, const std::vector<std::string>& candidates);
// "a, b or c"
std::string join_or(const std::vector<std::string>& items);
std::string join(const std::vector<std::string>& items, const std::string& sep);

// Expands ${VAR}, ${VAR:-default} and a leading ~. ${FATHOM_DATA_DIR} falls back to
// default_data_dir(). On an unset variable without a default returns false and names it in
// *missing_var.
bool expand_vars(const std::string& text, std::string* out, std::string* missing_var);

// Environment value or "" when unset.
std::string env_or_empty(const char* name);

}  // namespace fathom::config::detail
