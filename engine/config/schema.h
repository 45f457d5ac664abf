// The run-config schema, defined once: every key's path, type, default, range, unit, choices and
// description. Validation, defaults, the docs and the Designer's forms are all generated from it.
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include "engine/config/config.h"

namespace fathom::config {

enum class KeyType { Bool, Int, Float, String, Enum, StringList, IntList };
const char* key_type_name(KeyType type);  // "bool", "int", "float", "string", "enum", ...

// A typed value of one key. Enums are held as std::string.
using Value = std::variant<bool, int64_t, double, std::string, std::vector<std::string>,
                           std::vector<int64_t>>;

// How string values are post-processed after parsing.
enum class PathKind {
  None,         // plain text, taken verbatim
  Expand,       // ${VAR} and a leading ~ are expanded; relative stays relative (to the run dir)
  FileRelative  // expanded, then a relative path is resolved against the setting file's directory
};

// Pointer to the RunConfig field that holds a key (the alternative matches KeyInfo::type).
using FieldPtr = std::variant<bool*, int64_t*, double*, std::string*, std::vector<std::string>*,
                              std::vector<int64_t>*>;
using FieldFn = FieldPtr (*)(RunConfig&);

struct KeyInfo {
  std::string path;                  // "train.micro_batch_size"
  KeyType type = KeyType::Int;
  Value default_value;               // read from RunConfig{}
  std::optional<double> min, max;    // ints, floats and the elements of int lists
  bool min_exclusive = false, max_exclusive = false;
  std::string unit;                  // "steps", "s", "bytes", "tokens", ... ("" = none)
  std::vector<std::string> choices;  // enums
  std::string description;           // one line; says what 0 / "" mean where special
  PathKind path_kind = PathKind::None;
  FieldFn field = nullptr;

  std::string section() const;       // "model.moe.top_k" -> "model"
  std::string name() const;          // "model.moe.top_k" -> "top_k"
};

// A section ("train") or a nested group ("model.moe") with a title for docs and forms.
struct SectionInfo {
  std::string path;
  std::string description;
};

const std::vector<KeyInfo>& schema_keys();          // in documentation order
const std::vector<SectionInfo>& schema_sections();  // top-level sections and nested groups
const KeyInfo* find_key(const std::string& path);   // nullptr when unknown
const SectionInfo* find_section(const std::string& path);
// Immediate children (keys and groups, by name) of a group path; "" = the top level.
std::vector<std::string> schema_children(const std::string& group_path);

Value get_value(const RunConfig& config, const KeyInfo& key);
void set_value(RunConfig& config, const KeyInfo& key, const Value& value);
// Human text of a value: 3e-4 -> "0.0003", lists -> "[a, b]", strings unquoted.
std::string value_to_string(const Value& value);
// YAML text of a value, as written into resolved_yaml (strings double-quoted).
std::string value_to_yaml(const KeyInfo& key, const Value& value);

// Documentation generated from the schema.
std::string schema_markdown();     // docs/config-reference.md
std::string schema_json_schema();  // JSON Schema draft-07, pretty-printed

// Shortest decimal text that parses back to the same double, always with a '.' or exponent.
std::string format_double(double value);

}  // namespace fathom::config
