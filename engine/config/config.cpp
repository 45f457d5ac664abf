// Loading a run config: YAML parsing with positions, extends chains, --set overrides, typed
// conversion against the schema, merging, and the resolved YAML. Cross-key rules live in rules.cpp.
//
// Model: every document is flattened into "dotted key -> typed value + position"; since the
// schema's leaves are scalars or lists, merging documents is overwriting entries (maps merge,
// lists replace), and every value keeps the file/line/column it came from for later errors.
#include "engine/config/config.h"

#include <yaml-cpp/yaml.h>

#include <cctype>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

#include "engine/config/detail.h"
#include "engine/config/rules.h"
#include "engine/config/schema.h"
#include "engine/tokenizer/unicode.h"

namespace fs = std::filesystem;

namespace fathom::config {

std::string ConfigError::message() const {
  std::string out = file;
  if (line > 0) out += ":" + std::to_string(line) + ":" + std::to_string(column);
  out += ": ";
  if (!key_path.empty()) out += key_path + ": ";
  out += rule;
  if (!fix.empty()) out += " (fix: " + fix + ")";
  return out;
}

namespace {

constexpr int kMaxExtendsDepth = 32;
constexpr const char* kSetFile = "--set";

struct Entry {
  Value value;
  KeyOrigin origin;
};

struct Layer {
  std::string source;
  std::map<std::string, Entry> entries;
};

// One document being read.
struct Doc {
  std::string display;  // what errors call it: a path, "preset:<name>" or "--set"
  std::string dir;      // absolute directory relative paths resolve against ("" for presets)
  bool is_preset = false;
};

std::string node_kind(const YAML::Node& n) {
  switch (n.Type()) {
    case YAML::NodeType::Map: return "a mapping";
    case YAML::NodeType::Sequence: return "a list";
    case YAML::NodeType::Null: return "no value";
    case YAML::NodeType::Scalar: return "'" + n.Scalar() + "'";
    default: return "nothing";
  }
}

std::string trim(const std::string& s) {
  const size_t b = s.find_first_not_of(" \t\r\n");
  if (b == std::string::npos) return "";
  const size_t e = s.find_last_not_of(" \t\r\n");
  return s.substr(b, e - b + 1);
}

std::string lower(std::string s) {
  for (auto& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

enum class IntParse { Ok, Fraction, NotNumber, Overflow };

// Whole numbers, with YAML 1.1 '_' separators and exponent forms that are integral (1e6).
IntParse parse_int(const std::string& text, int64_t* out) {
  std::string s;
  for (char c : text)
    if (c != '_') s += c;
  if (s.empty()) return IntParse::NotNumber;
  size_t i = (s[0] == '+' || s[0] == '-') ? 1 : 0;
  bool all_digits = i < s.size();
  for (size_t j = i; j < s.size(); ++j) all_digits = all_digits && std::isdigit(static_cast<unsigned char>(s[j]));
  errno = 0;
  if (all_digits) {
    char* end = nullptr;
    const long long v = std::strtoll(s.c_str(), &end, 10);
    if (errno == ERANGE) return IntParse::Overflow;
    *out = v;
    return IntParse::Ok;
  }
  char* end = nullptr;
  const double d = std::strtod(s.c_str(), &end);
  if (end != s.c_str() + s.size() || !std::isfinite(d)) return IntParse::NotNumber;
  if (std::floor(d) != d) return IntParse::Fraction;
  if (std::fabs(d) > 9.0e15) return IntParse::Overflow;
  *out = static_cast<int64_t>(d);
  return IntParse::Ok;
}

bool parse_float(const std::string& text, double* out) {
  std::string s;
  for (char c : text)
    if (c != '_') s += c;
  if (s.empty()) return false;
  char* end = nullptr;
  const double d = std::strtod(s.c_str(), &end);
  if (end != s.c_str() + s.size() || !std::isfinite(d)) return false;
  *out = d;
  return true;
}

bool parse_bool(const std::string& text, bool* out) {
  const std::string s = lower(text);
  if (s == "true" || s == "yes" || s == "on") return *out = true, true;
  if (s == "false" || s == "no" || s == "off") return *out = false, true;
  return false;
}

std::string bound_text(const KeyInfo& k, double v) {
  return k.type == KeyType::Float ? format_double(v) : std::to_string(static_cast<long long>(v));
}

// "set a positive integer", "set a number from 0 to 0.5", ...
std::string range_fix(const KeyInfo& k) {
  const bool is_int = k.type == KeyType::Int || k.type == KeyType::IntList;
  // Upper bounds of a million and more are sanity limits, not advice worth giving.
  const bool has_max = k.max && *k.max < 1e6;
  if (is_int && k.min && !has_max) {
    if (*k.min == 1) return "set a positive integer";
    if (*k.min == 0) return "set 0 or a positive integer";
    return "set an integer >= " + bound_text(k, *k.min);
  }
  if (is_int && k.min && has_max)
    return "set an integer from " + bound_text(k, *k.min) + " to " + bound_text(k, *k.max);
  std::string what = is_int ? "set an integer" : "set a number";
  if (k.min && has_max && !k.min_exclusive && !k.max_exclusive)
    return what + " from " + bound_text(k, *k.min) + " to " + bound_text(k, *k.max);
  std::vector<std::string> parts;
  if (k.min) parts.push_back((k.min_exclusive ? "> " : ">= ") + bound_text(k, *k.min));
  if (has_max) parts.push_back((k.max_exclusive ? "< " : "<= ") + bound_text(k, *k.max));
  return what + (parts.empty() ? "" : " " + detail::join(parts, " and "));
}

// "" when v is within the key's bounds, else the rule it breaks ("-4 must be >= 1").
std::string range_violation(const KeyInfo& k, double v, const std::string& shown) {
  if (k.min && (k.min_exclusive ? !(v > *k.min) : !(v >= *k.min)))
    return shown + " must be " + (k.min_exclusive ? "> " : ">= ") + bound_text(k, *k.min);
  if (k.max && (k.max_exclusive ? !(v < *k.max) : !(v <= *k.max)))
    return shown + " must be " + (k.max_exclusive ? "< " : "<= ") + bound_text(k, *k.max);
  return "";
}

std::string example_int(const KeyInfo& k) {
  // Int keys default to an int64_t, IntList keys (distributed.gpu_ids) to a list of them.
  int64_t d = 0;
  if (const auto* i = std::get_if<int64_t>(&k.default_value)) d = *i;
  else if (const auto* l = std::get_if<std::vector<int64_t>>(&k.default_value); l && !l->empty()) d = l->front();
  return std::to_string(d != 0 ? d : static_cast<int64_t>(k.min.value_or(1)));
}

class Loader {
 public:
  Loader(const LoadOptions& options, LoadResult& result) : options_(options), result_(result) {}

  // Reads one document and, first, the chain it extends; appends layers base-first.
  void load_document(const std::string& text, const Doc& doc, const std::string& identity, int depth);
  void apply_overrides();
  void finish(const std::string& main_display);

 private:
  void add_error(const Doc& doc, const YAML::Mark& mark, const std::string& key, std::string rule,
                 std::string fix) {
    ConfigError e;
    e.file = doc.display;
    if (!mark.is_null()) {
      e.line = mark.line + 1;
      e.column = mark.column + 1;
    }
    e.key_path = key;
    e.rule = std::move(rule);
    e.fix = std::move(fix);
    result_.errors.push_back(std::move(e));
  }
  static YAML::Mark mark_of(const YAML::Node& node, const YAML::Node& fallback) {
    YAML::Mark m = node.Mark();
    return m.is_null() ? fallback.Mark() : m;
  }

  void flatten(const YAML::Node& map, const std::string& prefix, const Doc& doc, Layer& layer);
  void report_unknown(const YAML::Node& key_node, const std::string& prefix, const std::string& name,
                      const Doc& doc);
  // Converts a YAML value to the key's type; on failure records the error and returns false.
  bool convert(const KeyInfo& key, const YAML::Node& value, const YAML::Node& key_node, const Doc& doc,
               Value* out);
  bool convert_scalar(const KeyInfo& key, KeyType type, const YAML::Node& v, const YAML::Node& key_node,
                      const Doc& doc, Value* out);
  bool post_process_string(const KeyInfo& key, std::string* s, const YAML::Node& node, const Doc& doc);
  void resolve_extends(const YAML::Node& extends_key, const YAML::Node& value, const Doc& doc, int depth);

  const LoadOptions& options_;
  LoadResult& result_;
  std::vector<Layer> layers_;  // the deepest base first
  std::vector<std::pair<std::string, std::string>> stack_;  // (identity, display) being loaded
  std::set<std::string> bad_keys_;
  std::map<std::string, Entry> merged_;
};

void Loader::load_document(const std::string& text, const Doc& doc, const std::string& identity, int depth) {
  result_.sources.push_back(doc.display);
  YAML::Node root;
  try {
    root = YAML::Load(text);
  } catch (const YAML::ParserException& e) {
    add_error(doc, e.mark, "", "YAML syntax error: " + e.msg,
              "check the indentation and quoting here or on the lines above (quote values that contain ': ' or start with '{', '[', '*', '&', '!', '%' or '@')");
    return;
  } catch (const YAML::Exception& e) {
    add_error(doc, e.mark, "", std::string("cannot read YAML: ") + e.msg, "check the file is valid YAML");
    return;
  }
  if (root.IsNull()) return;  // an empty file is a valid all-defaults config
  if (!root.IsMap()) {
    add_error(doc, root.Mark(), "", "the top level must be a mapping of sections (run:, model:, ...), found " + node_kind(root),
              "start the file with section names such as 'model:' at column 1");
    return;
  }
  stack_.emplace_back(identity, doc.display);
  Layer layer;
  layer.source = doc.display;
  flatten(root, "", doc, layer);
  for (const auto& pair : root) {
    const YAML::Node key_node = pair.first, value = pair.second;
    if (key_node.IsScalar() && key_node.Scalar() == "extends") {
      resolve_extends(key_node, value, doc, depth);
      break;
    }
  }
  stack_.pop_back();
  layers_.push_back(std::move(layer));
}

void Loader::resolve_extends(const YAML::Node& key_node, const YAML::Node& value, const Doc& doc, int depth) {
  const YAML::Mark mark = mark_of(value, key_node);
  if (!value.IsScalar() || value.Scalar().empty()) {
    add_error(doc, mark, "extends", "expected a preset name or a file path, found " + node_kind(value),
              "write e.g. 'extends: debug-tiny' (presets: " + detail::join(preset_names(), ", ") + ")");
    return;
  }
  if (depth >= kMaxExtendsDepth) {
    add_error(doc, mark, "extends", "extends chain deeper than " + std::to_string(kMaxExtendsDepth) + " documents",
              "flatten the chain of presets");
    return;
  }
  std::string target;
  std::string missing;
  if (!detail::expand_vars(value.Scalar(), &target, &missing)) {
    add_error(doc, mark, "extends", "environment variable " + missing + " is not set",
              "export " + missing + "=... or write the path out");
    return;
  }
  const bool looks_like_path = target.find('/') != std::string::npos ||
                               (target.size() > 5 && (target.substr(target.size() - 5) == ".yaml")) ||
                               (target.size() > 4 && (target.substr(target.size() - 4) == ".yml"));
  auto check_cycle = [&](const std::string& identity, const std::string& display) {
    for (size_t i = 0; i < stack_.size(); ++i) {
      if (stack_[i].first != identity) continue;
      std::vector<std::string> chain;
      for (size_t j = i; j < stack_.size(); ++j) chain.push_back(stack_[j].second);
      chain.push_back(display);
      add_error(doc, mark, "extends", "extends cycle: " + detail::join(chain, " -> "),
                "remove the extends that leads back to " + display);
      return true;
    }
    return false;
  };
  if (!looks_like_path) {
    const std::string text = preset_text(target);
    if (!text.empty()) {
      const std::string identity = "preset:" + target;
      if (check_cycle(identity, identity)) return;
      load_document(text, Doc{identity, "", true}, identity, depth + 1);
      return;
    }
  }
  fs::path path(target);
  if (path.is_relative() && !doc.dir.empty()) path = fs::path(doc.dir) / path;
  path = path.lexically_normal();
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    if (!looks_like_path) {
      const std::string guess = detail::closest_match(target, preset_names());
      add_error(doc, mark, "extends", "unknown preset '" + target + "' (and no file " + path.string() + ")",
                guess.empty() ? "use one of the presets: " + detail::join(preset_names(), ", ")
                              : "did you mean '" + guess + "'? (presets: " + detail::join(preset_names(), ", ") + ")");
    } else {
      add_error(doc, mark, "extends", "cannot read '" + path.string() + "'",
                "check the path; a relative path is resolved against " +
                    (doc.dir.empty() ? std::string("the current directory") : doc.dir));
    }
    return;
  }
  std::stringstream ss;
  ss << in.rdbuf();
  std::error_code ec;
  const std::string identity = fs::weakly_canonical(path, ec).string();
  if (check_cycle(identity, path.string())) return;
  load_document(ss.str(), Doc{path.string(), fs::absolute(path).parent_path().string(), false}, identity, depth + 1);
}

void Loader::flatten(const YAML::Node& map, const std::string& prefix, const Doc& doc, Layer& layer) {
  std::set<std::string> seen;
  for (const auto& pair : map) {
    // Copies: Nodes are handles, and the iterator's pair is a temporary.
    const YAML::Node key_node = pair.first;
    const YAML::Node value = pair.second;
    if (!key_node.IsScalar()) {
      add_error(doc, key_node.Mark(), prefix, "a key must be a plain name, found " + node_kind(key_node),
                "write 'name: value'");
      continue;
    }
    const std::string name = key_node.Scalar();
    const std::string path = prefix.empty() ? name : prefix + "." + name;
    if (!seen.insert(name).second) {
      add_error(doc, key_node.Mark(), path, "duplicate key '" + name + "'", "keep only one of them");
      bad_keys_.insert(path);
      continue;
    }
    if (prefix.empty() && name == "extends") continue;  // load_document follows it
    if (const KeyInfo* key = find_key(path)) {
      Value v;
      if (convert(*key, value, key_node, doc, &v)) {
        const YAML::Mark m = mark_of(value, key_node);
        KeyOrigin origin{doc.display, m.is_null() ? 0 : m.line + 1, m.is_null() ? 0 : m.column + 1, 0};
        layer.entries[path] = Entry{std::move(v), origin};
      } else {
        bad_keys_.insert(path);
      }
      continue;
    }
    if (find_section(path)) {
      if (value.IsMap()) {
        flatten(value, path, doc, layer);
      } else if (!value.IsNull()) {  // an empty section ("lora:") is fine
        const auto children = schema_children(path);
        add_error(doc, mark_of(value, key_node), path,
                  "'" + path + "' is a section and needs keys under it, found " + node_kind(value),
                  "write its keys on the lines below '" + name + ":', indented (keys: " + detail::join(children, ", ") + ")");
      }
      continue;
    }
    report_unknown(key_node, prefix, name, doc);
  }
}

void Loader::report_unknown(const YAML::Node& key_node, const std::string& prefix, const std::string& name,
                            const Doc& doc) {
  const std::string path = prefix.empty() ? name : prefix + "." + name;
  const auto siblings = schema_children(prefix);
  const std::string guess = detail::closest_match(name, siblings);
  // A real key of another section ("lr" at the top level, "seq_len" under model)?
  std::string elsewhere;
  for (const auto& k : schema_keys())
    if (k.name() == name) {
      elsewhere = k.path;
      break;
    }
  std::string rule, fix;
  if (prefix.empty()) {
    rule = "unknown section '" + name + "'";
    if (!guess.empty()) fix = "did you mean '" + guess + "'?";
    else if (!elsewhere.empty()) fix = "'" + name + "' is a key of section " + elsewhere.substr(0, elsewhere.rfind('.')) + " (" + elsewhere + ")";
    else fix = "sections are: extends, " + detail::join(siblings, ", ");
  } else {
    rule = "unknown key '" + name + "' in " + prefix;
    if (!guess.empty()) fix = "did you mean '" + prefix + "." + guess + "'?";
    else if (!elsewhere.empty()) fix = "'" + name + "' belongs to " + elsewhere.substr(0, elsewhere.rfind('.')) + " (" + elsewhere + ")";
    else fix = "keys of " + prefix + " are: " + detail::join(siblings, ", ");
  }
  add_error(doc, key_node.Mark(), path, rule, fix);
  bad_keys_.insert(path);
}

bool Loader::post_process_string(const KeyInfo& key, std::string* s, const YAML::Node& node, const Doc& doc) {
  if (key.path_kind == PathKind::None || s->empty()) return true;
  std::string expanded, missing;
  if (!detail::expand_vars(*s, &expanded, &missing)) {
    add_error(doc, node.Mark(), key.path, "environment variable " + missing + " is not set",
              "export " + missing + "=... before running, or write the path without ${" + missing + "}");
    return false;
  }
  *s = expanded;
  if (key.path_kind == PathKind::FileRelative && !doc.is_preset && !doc.dir.empty() &&
      fs::path(*s).is_relative())
    *s = (fs::path(doc.dir) / *s).lexically_normal().string();
  return true;
}

bool Loader::convert_scalar(const KeyInfo& key, KeyType type, const YAML::Node& v, const YAML::Node& key_node,
                            const Doc& doc, Value* out) {
  const YAML::Mark mark = mark_of(v, key_node);
  if (v.IsNull()) {
    if (type == KeyType::String) {
      *out = std::string();
      return true;
    }
    add_error(doc, mark, key.path, "no value given",
              "write a value (default: " + value_to_string(key.default_value) + ") or delete the line");
    return false;
  }
  if (!v.IsScalar()) {
    const std::string expected = type == KeyType::Enum ? "one of " + detail::join(key.choices, ", ")
                                 : type == KeyType::String ? std::string("a string")
                                 : std::string("a ") + key_type_name(type);
    add_error(doc, mark, key.path, "expected " + expected + ", found " + node_kind(v),
              type == KeyType::String ? "write the value on one line; quote it if it contains ': ' or starts with '[' or '{'"
                                      : "write a single value after the colon");
    return false;
  }
  const std::string text = v.Scalar();
  switch (type) {
    case KeyType::Bool: {
      bool b = false;
      if (!parse_bool(text, &b)) {
        add_error(doc, mark, key.path, "'" + text + "' is not true or false", "write true or false");
        return false;
      }
      *out = b;
      return true;
    }
    case KeyType::Int:
    case KeyType::IntList: {
      int64_t i = 0;
      switch (parse_int(text, &i)) {
        case IntParse::Ok: break;
        case IntParse::Fraction:
          add_error(doc, mark, key.path, text + " is not a whole number", "write an integer, e.g. " + example_int(key));
          return false;
        case IntParse::Overflow:
          add_error(doc, mark, key.path, text + " is too large", range_fix(key));
          return false;
        case IntParse::NotNumber:
          add_error(doc, mark, key.path, "'" + text + "' is not an integer", "write a whole number, e.g. " + example_int(key));
          return false;
      }
      if (auto broken = range_violation(key, static_cast<double>(i), std::to_string(i)); !broken.empty()) {
        add_error(doc, mark, key.path, broken, range_fix(key));
        return false;
      }
      *out = i;
      return true;
    }
    case KeyType::Float: {
      double d = 0;
      if (!parse_float(text, &d)) {
        add_error(doc, mark, key.path, "'" + text + "' is not a number",
                  "write a number such as " + format_double(std::get<double>(key.default_value)));
        return false;
      }
      if (auto broken = range_violation(key, d, text); !broken.empty()) {
        add_error(doc, mark, key.path, broken, range_fix(key));
        return false;
      }
      *out = d;
      return true;
    }
    case KeyType::Enum: {
      for (const auto& c : key.choices)
        if (c == text) {
          *out = text;
          return true;
        }
      std::string guess = detail::closest_match(lower(text), key.choices);
      if (key.path == "run.device" && (lower(text) == "gpu" || lower(text) == "nvidia")) guess = "cuda";
      add_error(doc, mark, key.path, "'" + text + "' is not one of " + detail::join(key.choices, ", "),
                guess.empty() ? "use " + detail::join_or(key.choices) : "did you mean '" + guess + "'?");
      return false;
    }
    case KeyType::String:
    case KeyType::StringList: {
      std::string s = text;
      if (!post_process_string(key, &s, v, doc)) return false;
      // The resolved YAML and every JSON the value reaches (protocol, registry) need Unicode text.
      if (const size_t bad = tok::unicode::invalid_utf8_at(s); bad != std::string::npos) {
        char hex[8];
        std::snprintf(hex, sizeof hex, "0x%02x", static_cast<unsigned char>(s[bad]));
        add_error(doc, mark, key.path, std::string("the value is not valid UTF-8 (byte ") + hex + " at offset " +
                      std::to_string(bad) + ")",
                  "save the file as UTF-8 and write the value as text");
        return false;
      }
      *out = s;
      return true;
    }
  }
  return false;
}

bool Loader::convert(const KeyInfo& key, const YAML::Node& value, const YAML::Node& key_node, const Doc& doc,
                     Value* out) {
  if (key.type != KeyType::StringList && key.type != KeyType::IntList)
    return convert_scalar(key, key.type, value, key_node, doc, out);
  // Lists: a sequence of scalars, or one scalar meaning a list of one.
  if (value.IsMap()) {
    add_error(doc, mark_of(value, key_node), key.path, std::string("expected a ") + key_type_name(key.type) + ", found a mapping",
              "write a list like [a, b], or one item per line starting with '- '");
    return false;
  }
  std::vector<YAML::Node> items;
  if (value.IsSequence()) {
    for (const auto& item : value) items.push_back(item);
  } else if (!value.IsNull()) {
    items.push_back(value);
  }
  bool ok = true;
  if (key.type == KeyType::StringList) {
    std::vector<std::string> list;
    for (const auto& item : items) {
      Value v;
      if (item.IsNull()) continue;
      if (!convert_scalar(key, KeyType::StringList, item, key_node, doc, &v)) ok = false;
      else list.push_back(std::get<std::string>(v));
    }
    *out = list;
  } else {
    std::vector<int64_t> list;
    for (const auto& item : items) {
      Value v;
      if (!convert_scalar(key, KeyType::IntList, item, key_node, doc, &v)) ok = false;
      else list.push_back(std::get<int64_t>(v));
    }
    *out = list;
  }
  return ok;
}

void Loader::apply_overrides() {
  Layer layer;
  layer.source = kSetFile;
  const Doc doc{kSetFile, fs::current_path().string(), false};
  std::vector<std::string> all_paths;
  for (const auto& k : schema_keys()) all_paths.push_back(k.path);
  for (const auto& raw : options_.overrides) {
    const size_t eq = raw.find('=');
    if (eq == std::string::npos) {
      add_error(doc, YAML::Mark::null_mark(), "", "'" + raw + "' is not key=value",
                "write --set section.key=value, e.g. --set train.max_steps=100");
      continue;
    }
    const std::string path = trim(raw.substr(0, eq));
    const std::string text = raw.substr(eq + 1);
    const KeyInfo* key = find_key(path);
    if (!key) {
      std::string fix;
      if (path == "extends") {
        fix = "extends cannot be overridden; write a config file that extends the preset";
      } else if (find_section(path)) {
        fix = "'" + path + "' is a section; name one of its keys: " + detail::join(schema_children(path), ", ");
      } else {
        std::string guess = detail::closest_match(path, all_paths);
        if (guess.empty()) {
          const std::string last = path.substr(path.rfind('.') + 1);
          for (const auto& k : schema_keys())
            if (k.name() == last) guess = k.path;
        }
        fix = guess.empty() ? "see `fathom-engine config --schema` for the keys" : "did you mean '" + guess + "'?";
      }
      add_error(doc, YAML::Mark::null_mark(), path, "unknown key '" + path + "'", fix);
      continue;
    }
    YAML::Node node;
    bool parsed = true;
    try {
      node = YAML::Load(text);
    } catch (const YAML::Exception&) {
      parsed = false;
    }
    // Strings take the text as typed when it is not a plain YAML scalar ("a: b", "# hash").
    const bool is_text = key->type == KeyType::String;
    if (is_text && (!parsed || !(node.IsScalar() || node.IsNull()))) node = YAML::Node(text);
    else if (!parsed) {
      add_error(doc, YAML::Mark::null_mark(), path, "cannot parse '" + text + "' as a YAML value",
                "quote the value or write a flow list like [a, b]");
      bad_keys_.insert(path);
      continue;
    }
    // A --set value has no position in any file: drop the marks so errors show "--set: key: ...".
    Value v;
    const size_t before = result_.errors.size();
    if (convert(*key, node, node, doc, &v)) {
      layer.entries[path] = Entry{std::move(v), KeyOrigin{kSetFile, 0, 0, 0}};
    } else {
      bad_keys_.insert(path);
      for (size_t i = before; i < result_.errors.size(); ++i) result_.errors[i].line = result_.errors[i].column = 0;
    }
  }
  layers_.push_back(std::move(layer));
}

void Loader::finish(const std::string& main_display) {
  for (size_t i = 0; i < layers_.size(); ++i)
    for (auto& [path, entry] : layers_[i].entries) {
      entry.origin.layer = static_cast<int>(i);
      merged_[path] = entry;
    }
  RunConfig& config = result_.config;
  config = RunConfig{};
  for (const auto& [path, entry] : merged_) {
    set_value(config, *find_key(path), entry.value);
    result_.origins[path] = entry.origin;
  }
  RuleContext ctx{result_.origins, bad_keys_, main_display, options_.check_paths};
  apply_rules(config, ctx, result_.errors, result_.warnings);
  result_.resolved_yaml = config_to_yaml(config);
}

LoadResult load(const std::string& text, const Doc& doc, const std::string& identity, const LoadOptions& options) {
  LoadResult result;
  Loader loader(options, result);
  loader.load_document(text, doc, identity, 0);
  loader.apply_overrides();
  loader.finish(doc.display);
  return result;
}

}  // namespace

LoadResult load_config_file(const std::string& path, const LoadOptions& options) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    LoadResult result;
    std::error_code ec;
    const bool exists = fs::exists(path, ec);
    result.errors.push_back(ConfigError{path, 0, 0, "",
                                        exists ? "cannot read the file (permission denied?)" : "no such file",
                                        exists ? "check the file's permissions" : "check the path"});
    result.resolved_yaml = config_to_yaml(result.config);
    return result;
  }
  std::stringstream ss;
  ss << in.rdbuf();
  std::error_code ec;
  const fs::path p(path);
  const std::string dir = fs::absolute(p, ec).parent_path().lexically_normal().string();
  const std::string identity = fs::weakly_canonical(p, ec).string();
  return load(ss.str(), Doc{path, dir, false}, identity, options);
}

LoadResult load_config_text(const std::string& text, const std::string& display_name, const LoadOptions& options) {
  std::error_code ec;
  std::string dir = options.base_dir;
  const fs::path p(display_name);
  if (dir.empty()) dir = p.has_parent_path() ? fs::absolute(p, ec).parent_path().string() : fs::current_path(ec).string();
  else dir = fs::absolute(dir, ec).string();
  const std::string identity = display_name.empty() ? "<text>" : fs::absolute(p, ec).lexically_normal().string();
  return load(text, Doc{display_name.empty() ? "<text>" : display_name, fs::path(dir).lexically_normal().string(), false},
              identity, options);
}

std::string config_hash(const LoadResult& result) {
  // FNV-1a, 64-bit (offset basis 14695981039346656037, prime 1099511628211).
  uint64_t h = 14695981039346656037ull;
  for (unsigned char c : result.resolved_yaml) {
    h ^= c;
    h *= 1099511628211ull;
  }
  char buf[17];
  std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(h));
  return buf;
}

std::string config_to_yaml(const RunConfig& config) {
  std::string out;
  std::vector<std::string> open;  // the group path segments currently open
  for (const auto& key : schema_keys()) {
    std::vector<std::string> segments;
    std::stringstream ss(key.path);
    for (std::string s; std::getline(ss, s, '.');) segments.push_back(s);
    const std::string name = segments.back();
    segments.pop_back();
    size_t common = 0;
    while (common < open.size() && common < segments.size() && open[common] == segments[common]) ++common;
    open.resize(common);
    for (size_t i = common; i < segments.size(); ++i) {
      out += std::string(2 * i, ' ') + segments[i] + ":\n";
      open.push_back(segments[i]);
    }
    out += std::string(2 * segments.size(), ' ') + name + ": " + value_to_yaml(key, get_value(config, key)) + "\n";
  }
  return out;
}

}  // namespace fathom::config
