// Small helpers of fathom_config: did-you-mean matching, environment expansion, default
// directories (XDG base-directory spec: XDG_CACHE_HOME / XDG_DATA_HOME, else under $HOME).
#include <algorithm>
#include <cstdlib>
#include <filesystem>

#include "engine/config/config.h"
#include "engine/config/detail.h"

namespace fathom::config {
namespace detail {

size_t edit_distance(const std::string& a, const std::string& b) {
  // Optimal string alignment: Levenshtein plus adjacent transpositions ("cdua" -> "cuda" is 1).
  std::vector<std::vector<size_t>> d(a.size() + 1, std::vector<size_t>(b.size() + 1));
  for (size_t i = 0; i <= a.size(); ++i) d[i][0] = i;
  for (size_t j = 0; j <= b.size(); ++j) d[0][j] = j;
  for (size_t i = 1; i <= a.size(); ++i)
    for (size_t j = 1; j <= b.size(); ++j) {
      const size_t cost = a[i - 1] == b[j - 1] ? 0 : 1;
      d[i][j] = std::min({d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + cost});
      if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1]) d[i][j] = std::min(d[i][j], d[i - 2][j - 2] + 1);
    }
  return d[a.size()][b.size()];
}

std::string closest_match(const std::string& word, const std::vector<std::string>& candidates) {
  std::string best;
  size_t best_distance = static_cast<size_t>(-1);
  for (const auto& c : candidates) {
    const size_t d = edit_distance(word, c);
    if (d < best_distance) {
      best_distance = d;
      best = c;
    }
  }
  if (best.empty()) return "";
  const size_t limit = std::max<size_t>(2, word.size() / 3);
  if (best_distance <= limit) return best;
  // "batch_size" for "micro_batch_size": a fragment of the right name is a plausible slip too.
  for (const auto& c : candidates)
    if (word.size() >= 3 && (c.find(word) != std::string::npos || word.find(c) != std::string::npos))
      return c;
  return "";
}

std::string join(const std::vector<std::string>& items, const std::string& sep) {
  std::string out;
  for (size_t i = 0; i < items.size(); ++i) out += (i ? sep : "") + items[i];
  return out;
}

std::string join_or(const std::vector<std::string>& items) {
  if (items.size() <= 1) return join(items, "");
  std::vector<std::string> head(items.begin(), items.end() - 1);
  return join(head, ", ") + " or " + items.back();
}

std::string env_or_empty(const char* name) {
  const char* v = std::getenv(name);
  return v ? std::string(v) : std::string();
}

bool expand_vars(const std::string& text, std::string* out, std::string* missing_var) {
  std::string result;
  size_t i = 0;
  if (text == "~" || text.rfind("~/", 0) == 0) {
    result = env_or_empty("HOME");
    i = 1;
  }
  while (i < text.size()) {
    if (text[i] == '$' && i + 1 < text.size() && text[i + 1] == '{') {
      const size_t close = text.find('}', i + 2);
      if (close == std::string::npos) {  // not a variable reference; keep the text as written
        result += text.substr(i);
        break;
      }
      std::string inner = text.substr(i + 2, close - i - 2);
      std::string fallback;
      bool has_fallback = false;
      if (const size_t sep = inner.find(":-"); sep != std::string::npos) {
        fallback = inner.substr(sep + 2);
        inner = inner.substr(0, sep);
        has_fallback = true;
      }
      const char* value = std::getenv(inner.c_str());
      if (value && *value) {
        result += value;
      } else if (has_fallback) {
        result += fallback;
      } else if (inner == "FATHOM_DATA_DIR") {
        result += default_data_dir();
      } else {
        if (missing_var) *missing_var = inner;
        return false;
      }
      i = close + 1;
    } else {
      result += text[i++];
    }
  }
  *out = result;
  return true;
}

}  // namespace detail

namespace {
std::string home_dir() {
  std::string home = detail::env_or_empty("HOME");
  return home.empty() ? std::string("/tmp") : home;
}
}  // namespace

std::string default_data_dir() {
  if (auto v = detail::env_or_empty("FATHOM_DATA_DIR"); !v.empty()) return v;
  if (auto v = detail::env_or_empty("XDG_CACHE_HOME"); !v.empty()) return v + "/fathom";
  return home_dir() + "/.cache/fathom";
}

std::string default_workspace() {
  // $FATHOM_WORKSPACE first: the workbench sets it for the engines it launches, so prepared data
  // and runs stay inside the workspace the user opened.
  if (auto v = detail::env_or_empty("FATHOM_WORKSPACE"); !v.empty()) return v;
  if (auto v = detail::env_or_empty("XDG_DATA_HOME"); !v.empty()) return v + "/fathom";
  return home_dir() + "/.local/share/fathom";
}

std::string resolved_workspace(const RunConfig& config) {
  return config.run.workspace.empty() ? default_workspace() : config.run.workspace;
}

}  // namespace fathom::config
