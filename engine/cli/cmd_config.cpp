// fathom-engine validate | estimate | config: check a run config, estimate its cost, print the
// schema and presets. Their output is the product, so it goes to stdout (no protocol records).
#include <CLI/CLI.hpp>
#include <cctype>
#include <iostream>
#include <sstream>
#include <nlohmann/json.hpp>

#include "engine/cli/commands.h"
#include "engine/config/config.h"
#include "engine/config/estimate.h"
#include "engine/config/schema.h"

namespace fathom::cli {
namespace {

namespace cfg = fathom::config;

// CLI11 parses argv[1..]; argv[0] is the subcommand name, shown in usage as "fathom-engine <name>".
int parse_cli(CLI::App& app, int argc, char** argv) {
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? -1 : 2;  // -1: --help was printed, exit 0
  }
  return 0;
}

void add_set_option(CLI::App& app, std::vector<std::string>& sets) {
  app.add_option("--set", sets, "Override a key: --set train.lr=1e-3 (repeatable; value is YAML)")
      ->allow_extra_args(false)
      ->type_name("KEY=VALUE");
}

void print_problems(const cfg::LoadResult& r, std::ostream& out) {
  // With errors present, warnings derived from a half-read config (e.g. "no training data" after
  // an unknown preset) mislead more than they help: show the errors alone.
  if (r.errors.empty())
    for (const auto& w : r.warnings) out << "warning: " << w.message() << "\n";
  for (const auto& e : r.errors) out << e.message() << "\n";
}

nlohmann::json problems_json(const std::vector<cfg::ConfigError>& list) {
  nlohmann::json a = nlohmann::json::array();
  for (const auto& e : list)
    a.push_back({{"file", e.file}, {"line", e.line}, {"column", e.column}, {"key", e.key_path}, {"rule", e.rule},
                 {"fix", e.fix}, {"message", e.message()}});
  return a;
}

int cmd_validate(int argc, char** argv) {
  CLI::App app{"Check a run config: every error with file:line:col, key, rule and fix.", "fathom-engine validate"};
  std::string path;
  std::vector<std::string> sets;
  bool print = false, json = false, no_path_checks = false;
  app.add_option("config", path, "Run config (YAML)")->required();
  add_set_option(app, sets);
  app.add_flag("--print", print, "Print the resolved YAML (presets expanded, overrides applied, defaults filled)");
  app.add_flag("--json", json, "Print the result as one JSON object");
  app.add_flag("--no-path-checks", no_path_checks, "Do not warn about data/tokenizer paths missing on this machine");
  if (int rc = parse_cli(app, argc, argv)) return rc < 0 ? 0 : rc;

  cfg::LoadOptions options;
  options.overrides = sets;
  options.check_paths = !no_path_checks;
  const cfg::LoadResult r = cfg::load_config_file(path, options);
  if (json) {
    nlohmann::json j = {{"ok", r.ok()}, {"file", path}, {"hash", cfg::config_hash(r)}, {"errors", problems_json(r.errors)},
                        {"warnings", problems_json(r.warnings)}, {"sources", r.sources}};
    if (print) j["resolved_yaml"] = r.resolved_yaml;
    std::cout << j.dump(2) << "\n";
    return r.ok() ? 0 : 1;
  }
  print_problems(r, std::cout);
  if (!r.ok()) {
    std::cerr << "validate: " << r.errors.size() << (r.errors.size() == 1 ? " error" : " errors") << " in " << path << "\n";
    return 1;
  }
  if (print) {
    std::cout << r.resolved_yaml;
    std::cerr << "OK: " << path << " (resolved hash " << cfg::config_hash(r) << ")\n";
  } else {
    std::cout << "OK: " << path << " (resolved hash " << cfg::config_hash(r) << ")\n";
  }
  return 0;
}

int cmd_estimate(int argc, char** argv) {
  CLI::App app{"Estimate parameters, FLOPs per token and memory per rank, and whether it fits.", "fathom-engine estimate"};
  std::string path, devices_text;
  std::vector<std::string> sets;
  bool json = false;
  app.add_option("config", path, "Run config (YAML)")->required();
  app.add_option("--devices", devices_text,
                 "Devices, one rank each: cpu, h200, h200:2, a100-80g:4, v100-32g, mem=24GiB (comma-separated)");
  add_set_option(app, sets);
  app.add_flag("--json", json, "Print JSON instead of a table");
  if (int rc = parse_cli(app, argc, argv)) return rc < 0 ? 0 : rc;

  cfg::LoadOptions options;
  options.overrides = sets;
  options.check_paths = false;  // estimating needs no data
  const cfg::LoadResult r = cfg::load_config_file(path, options);
  if (!r.ok()) {
    print_problems(r, std::cout);
    std::cerr << "estimate: fix the config first (" << r.errors.size() << (r.errors.size() == 1 ? " error" : " errors") << ")\n";
    return 1;
  }
  if (devices_text.empty() && r.config.run.device == "cpu") devices_text = "cpu";
  std::vector<cfg::DeviceSpec> devices;
  if (!devices_text.empty()) {
    std::string error;
    devices = cfg::parse_devices(devices_text, &error);
    if (devices.empty()) {
      std::cerr << "fathom-engine estimate: --devices: " << error << "\n";
      return 2;
    }
  }
  const cfg::Estimate e = cfg::estimate(r.config, devices);
  if (json) {
    std::cout << cfg::estimate_to_json(e);
  } else {
    std::cout << cfg::format_estimate(r.config, e);
    if (devices.empty()) std::cout << "\n(give --devices h200:2, a100-80g, cpu, mem=24GiB ... for a fits / does-not-fit verdict)\n";
  }
  return 0;
}

int cmd_config(int argc, char** argv) {
  CLI::App app{"Print the run-config schema or the embedded presets.", "fathom-engine config"};
  bool schema = false, markdown = false, json_schema = false, presets = false;
  std::string preset;
  app.add_flag("--schema", schema, "Print the schema (Markdown unless --json-schema)");
  app.add_flag("--markdown", markdown, "With --schema: Markdown (docs/config-reference.md)");
  app.add_flag("--json-schema", json_schema, "Print the schema as JSON Schema draft-07");
  app.add_flag("--presets", presets, "List the embedded presets");
  app.add_option("--preset", preset, "Print the YAML of one preset");
  if (int rc = parse_cli(app, argc, argv)) return rc < 0 ? 0 : rc;

  if (json_schema) {
    std::cout << cfg::schema_json_schema();
  } else if (schema || markdown) {
    std::cout << cfg::schema_markdown();
  } else if (presets) {
    for (const auto& name : cfg::preset_names()) {
      // The opening comment says what the preset is for; show its first sentence.
      std::istringstream text(cfg::preset_text(name));
      std::string line, summary;
      while (std::getline(text, line) && line.rfind("# ", 0) == 0) summary += (summary.empty() ? "" : " ") + line.substr(2);
      if (summary.rfind(name + ": ", 0) == 0) summary = summary.substr(name.size() + 2);
      for (size_t i = 0; i + 2 < summary.size(); ++i)
        if (summary[i] == '.' && summary[i + 1] == ' ' && std::isupper(static_cast<unsigned char>(summary[i + 2]))) {
          summary.resize(i + 1);
          break;
        }
      line = summary;
      std::cout << name << std::string(name.size() < 20 ? 20 - name.size() : 1, ' ') << line << "\n";
    }
  } else if (!preset.empty()) {
    const std::string text = cfg::preset_text(preset);
    if (text.empty()) {
      std::string names;
      for (const auto& n : cfg::preset_names()) names += (names.empty() ? "" : ", ") + n;
      std::cerr << "fathom-engine config: no preset '" << preset << "' (presets: " << names << ")\n";
      return 1;
    }
    std::cout << text;
  } else {
    std::cerr << app.help();
    return 2;
  }
  return 0;
}

}  // namespace

FATHOM_REGISTER_COMMAND("validate", "check a run config (errors with file:line:col and fixes)", cmd_validate);
FATHOM_REGISTER_COMMAND("estimate", "parameters, FLOPs and memory of a run config; fits which GPUs", cmd_estimate);
FATHOM_REGISTER_COMMAND("config", "print the config schema (--schema, --json-schema) or presets", cmd_config);

}  // namespace fathom::cli
