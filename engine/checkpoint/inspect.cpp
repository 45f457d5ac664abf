// Reports for `fathom-engine inspect`; see inspect.h.
#include "engine/checkpoint/inspect.h"

#include <sys/stat.h>

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <sstream>

#include "engine/checkpoint/fs_posix.h"
#include "engine/checkpoint/manifest.h"
#include "engine/checkpoint/safetensors.h"
#include "engine/checkpoint/sha256.h"

namespace fathom::ckpt {

namespace {

nlohmann::json summarize_header(const SafetensorsHeader& h) {
  nlohmann::json dtypes = nlohmann::json::object();
  uint64_t params = 0;
  for (const auto& t : h.tensors) {
    auto& d = dtypes[dtype_name(t.dtype)];
    if (d.is_null()) d = {{"tensors", 0}, {"params", 0}, {"bytes", 0}};
    d["tensors"] = d["tensors"].get<uint64_t>() + 1;
    d["params"] = d["params"].get<uint64_t>() + t.numel();
    d["bytes"] = d["bytes"].get<uint64_t>() + t.nbytes();
    params += t.numel();
  }
  return {{"tensor_count", h.tensors.size()}, {"total_params", params}, {"bytes", h.data_bytes}, {"dtypes", dtypes}};
}

nlohmann::json inspect_safetensors(const std::string& path) {
  const SafetensorsHeader h = SafetensorsFile::read_header_only(path);
  nlohmann::json r = summarize_header(h);
  r["kind"] = "safetensors";
  r["path"] = path;
  r["file_bytes"] = h.file_bytes;
  r["header_bytes"] = h.header_bytes;
  r["data_bytes"] = h.data_bytes;
  r["metadata"] = h.metadata;
  nlohmann::json tensors = nlohmann::json::array();
  for (const auto& t : h.tensors) {
    tensors.push_back({{"name", t.name},
                       {"dtype", dtype_name(t.dtype)},
                       {"shape", t.shape},
                       {"params", t.numel()},
                       {"bytes", t.nbytes()},
                       {"offset", t.begin}});
  }
  r["tensors"] = std::move(tensors);
  r.erase("bytes");  // same as data_bytes here
  return r;
}

// Top-level keys of state.json: scalars as they are, containers as a size.
nlohmann::json summarize_state(const nlohmann::json& state) {
  nlohmann::json s = nlohmann::json::object();
  for (auto it = state.begin(); it != state.end(); ++it) {
    const auto& v = it.value();
    if (v.is_object()) {
      s[it.key()] = "{" + std::to_string(v.size()) + " keys}";
    } else if (v.is_array()) {
      s[it.key()] = "[" + std::to_string(v.size()) + " items]";
    } else if (v.is_string() && v.get<std::string>().size() > 120) {
      s[it.key()] = v.get<std::string>().substr(0, 117) + "...";
    } else {
      s[it.key()] = v;
    }
  }
  return s;
}

nlohmann::json inspect_checkpoint(const std::string& dir, const InspectOptions& opt) {
  nlohmann::json r;
  r["kind"] = "checkpoint";
  r["path"] = dir;
  r["verify_level"] = opt.verify_sha256 ? "sha256" : "sizes";
  const CheckpointInfo info =
      verify_checkpoint(dir, opt.verify_sha256 ? VerifyLevel::VERIFY_LEVEL_SHA256 : VerifyLevel::VERIFY_LEVEL_SIZES);
  r["step"] = info.step;
  r["val_loss"] = info.val_loss ? nlohmann::json(*info.val_loss) : nlohmann::json(nullptr);
  r["verified"] = info.verified;
  r["error"] = info.error;
  r["bytes"] = info.bytes;

  // Per-file status, so that every damaged file shows (verify stops at the first).
  nlohmann::json files = nlohmann::json::array();
  try {
    const Manifest m = read_manifest(dir);
    for (const auto& f : m.files) {
      const std::string p = dir + "/" + f.name;
      nlohmann::json e = {{"name", f.name}, {"bytes", f.bytes}, {"sha256", f.sha256}, {"status", "ok"}, {"detail", ""}};
      struct stat st;
      if (::stat(p.c_str(), &st) != 0) {
        e["status"] = "missing";
      } else if (static_cast<uint64_t>(st.st_size) != f.bytes) {
        e["status"] = "size mismatch";
        e["detail"] = "file has " + std::to_string(st.st_size) + " bytes";
      } else if (opt.verify_sha256) {
        try {
          const std::string actual = sha256_file(p);
          if (actual != f.sha256) {
            e["status"] = "sha256 mismatch";
            e["detail"] = "file hashes to " + actual;
          }
        } catch (const std::exception& ex) {
          e["status"] = "unreadable";
          e["detail"] = ex.what();
        }
      } else {
        e["status"] = "not checked";
      }
      files.push_back(std::move(e));
    }
  } catch (const std::exception&) {
    // No usable manifest: list what is there (info.error says why).
    for (const auto& n : posix::list_directory(dir)) {
      const int64_t size = posix::file_size(dir + "/" + n);
      files.push_back({{"name", n},
                       {"bytes", size < 0 ? 0 : size},
                       {"sha256", ""},
                       {"status", "not in manifest"},
                       {"detail", ""}});
    }
  }
  r["files"] = std::move(files);

  std::ifstream in(dir + "/" + kStateFile, std::ios::binary);
  if (in) {
    std::stringstream ss;
    ss << in.rdbuf();
    try {
      r["state"] = summarize_state(nlohmann::json::parse(ss.str()));
    } catch (const std::exception& e) {
      r["state"] = {{"error", std::string("state.json is not valid JSON: ") + e.what()}};
    }
  }
  for (const auto& [key, file] : {std::pair<const char*, const char*>{"model", kModelFile}, {"optimizer", kOptimizerFile}}) {
    const std::string p = dir + "/" + file;
    if (!posix::exists(p)) continue;
    try {
      r[key] = summarize_header(SafetensorsFile::read_header_only(p));
    } catch (const std::exception& e) {
      r[key] = {{"error", e.what()}};
    }
  }
  return r;
}

nlohmann::json inspect_checkpoint_dir(const std::string& dir) {
  nlohmann::json r;
  r["kind"] = "checkpoint_dir";
  r["path"] = dir;
  std::ifstream latest(dir + "/" + kLatestFile);
  std::string name;
  if (latest && std::getline(latest, name)) {
    r["latest"] = name;
  } else {
    r["latest"] = nullptr;
  }
  std::vector<std::pair<int64_t, std::string>> steps;
  for (const std::string& n : posix::list_directory(dir)) {
    int64_t step;
    if (parse_checkpoint_dir_name(n, &step) && posix::is_directory(dir + "/" + n)) steps.emplace_back(step, n);
  }
  std::sort(steps.begin(), steps.end());
  nlohmann::json list = nlohmann::json::array();
  for (const auto& [step, n] : steps) {
    const CheckpointInfo info = verify_checkpoint(dir + "/" + n, VerifyLevel::VERIFY_LEVEL_SIZES);
    list.push_back({{"name", n},
                    {"step", step},
                    {"val_loss", info.val_loss ? nlohmann::json(*info.val_loss) : nlohmann::json(nullptr)},
                    {"bytes", info.bytes},
                    {"whole", info.verified},
                    {"error", info.error}});
  }
  r["checkpoints"] = std::move(list);
  return r;
}

// Names and metadata come from files: show control characters escaped, not raw.
std::string printable(const std::string& s) {
  for (unsigned char c : s) {
    if (c < 0x20 || c == 0x7F) return nlohmann::json(s).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  }
  return s;
}

// Columns count code points, not bytes, so non-ASCII names line up (wide CJK glyphs aside).
size_t display_width(const std::string& s) {
  size_t n = 0;
  for (unsigned char c : s) n += (c & 0xC0) != 0x80;
  return n;
}

std::string format_loss(double v) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%.4f", v);
  return buf;
}

std::string pad(std::string s, size_t width) {
  const size_t w = display_width(s);
  if (w < width) s.append(width - w, ' ');
  return s;
}

std::string plural(uint64_t n, const char* word) {
  return std::to_string(n) + " " + word + (n == 1 ? "" : "s");
}

std::string shape_text(const nlohmann::json& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i].get<int64_t>());
  return s + "]";
}

std::string scalar_text(const nlohmann::json& v) { return v.is_string() ? v.get<std::string>() : v.dump(); }

void format_summary(std::ostringstream& o, const nlohmann::json& s, const std::string& indent) {
  o << indent << plural(s.value("tensor_count", uint64_t{0}), "tensor") << ", " << format_count(s.value("total_params", uint64_t{0}))
    << " parameters, " << format_bytes(s.value("bytes", uint64_t{0})) << "\n";
  if (s.contains("dtypes")) {
    for (auto it = s["dtypes"].begin(); it != s["dtypes"].end(); ++it) {
      o << indent << "  " << pad(it.key(), 8) << pad(plural(it.value()["tensors"].get<uint64_t>(), "tensor"), 14)
        << pad(format_count(it.value()["params"].get<uint64_t>()) + " params", 16)
        << format_bytes(it.value()["bytes"].get<uint64_t>()) << "\n";
    }
  }
}

}  // namespace

std::string format_bytes(uint64_t bytes) {
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB"};
  if (bytes < 1024) return std::to_string(bytes) + " B";
  double v = static_cast<double>(bytes);
  int u = 0;
  while (v >= 1024 && u < 5) {
    v /= 1024;
    ++u;
  }
  char buf[32];
  std::snprintf(buf, sizeof buf, v < 10 ? "%.2f %s" : v < 100 ? "%.1f %s" : "%.0f %s", v, units[u]);
  return buf;
}

std::string format_count(uint64_t n) {
  if (n < 1000) return std::to_string(n);
  const char* units[] = {"", "K", "M", "B", "T"};
  double v = static_cast<double>(n);
  int u = 0;
  while (v >= 1000 && u < 4) {
    v /= 1000;
    ++u;
  }
  char buf[32];
  std::snprintf(buf, sizeof buf, v < 10 ? "%.2f%s" : v < 100 ? "%.1f%s" : "%.0f%s", v, units[u]);
  return buf;
}

nlohmann::json inspect_path(const std::string& path, const InspectOptions& options) {
  if (!posix::exists(path)) throw CheckpointError("cannot inspect " + path + ": no such file or directory.");
  if (!posix::is_directory(path)) return inspect_safetensors(path);
  std::string dir = path;
  while (dir.size() > 1 && dir.back() == '/') dir.pop_back();
  for (const char* marker : {kManifestFile, kStateFile, kModelFile}) {
    if (posix::exists(dir + "/" + marker)) return inspect_checkpoint(dir, options);
  }
  nlohmann::json r = inspect_checkpoint_dir(dir);
  if (r["checkpoints"].empty() && r["latest"].is_null()) {
    throw CheckpointError("cannot inspect " + path + ": it is neither a checkpoint (no " + kManifestFile +
                          ") nor a checkpoint directory (no step-<N> subdirectories). Pass a .safetensors file, a "
                          "step-<N> directory or a run's checkpoints/ directory.");
  }
  return r;
}

int inspect_exit_code(const nlohmann::json& r) {
  const std::string kind = r.value("kind", "");
  if (kind == "checkpoint") return r.value("verified", false) ? 0 : 1;
  return 0;
}

std::string format_inspect_report(const nlohmann::json& r) {
  std::ostringstream o;
  const std::string kind = r.value("kind", "");
  if (kind == "safetensors") {
    o << r["path"].get<std::string>() << "  (safetensors, " << format_bytes(r["file_bytes"].get<uint64_t>())
      << ", header " << format_bytes(r["header_bytes"].get<uint64_t>()) << ")\n";
    if (!r["metadata"].empty()) {
      o << "metadata:\n";
      for (auto it = r["metadata"].begin(); it != r["metadata"].end(); ++it) {
        o << "  " << printable(it.key()) << ": " << printable(it.value().get<std::string>()) << "\n";
      }
    }
    nlohmann::json s = r;
    s["bytes"] = r["data_bytes"];
    format_summary(o, s, "");
    size_t w = 4;
    for (const auto& t : r["tensors"]) w = std::max(w, display_width(printable(t["name"].get<std::string>())));
    w = std::min<size_t>(w, 80) + 2;
    if (!r["tensors"].empty()) {
      o << "\n" << pad("name", w) << pad("dtype", 9) << pad("shape", 22) << pad("params", 10) << "bytes\n";
      for (const auto& t : r["tensors"]) {
        o << pad(printable(t["name"].get<std::string>()), w) << pad(t["dtype"].get<std::string>(), 9)
          << pad(shape_text(t["shape"]), 22) << pad(format_count(t["params"].get<uint64_t>()), 10)
          << format_bytes(t["bytes"].get<uint64_t>()) << "\n";
      }
    }
  } else if (kind == "checkpoint") {
    const bool ok = r.value("verified", false);
    o << r["path"].get<std::string>() << "  (checkpoint, step " << r["step"].get<int64_t>() << ", "
      << format_bytes(r.value("bytes", uint64_t{0})) << ")\n";
    o << "verification (" << r["verify_level"].get<std::string>() << "): "
      << (ok ? "OK" : "FAILED: " + r["error"].get<std::string>()) << "\n";
    if (!r["val_loss"].is_null()) o << "val_loss: " << format_loss(r["val_loss"].get<double>()) << "\n";
    o << "files:\n";
    for (const auto& f : r["files"]) {
      const std::string sha = f["sha256"].get<std::string>();
      o << "  " << pad(f["name"].get<std::string>(), 24) << pad(format_bytes(f["bytes"].get<uint64_t>()), 12)
        << pad(sha.empty() ? "-" : sha.substr(0, 16), 18) << f["status"].get<std::string>();
      if (!f["detail"].get<std::string>().empty()) o << " (" << f["detail"].get<std::string>() << ")";
      o << "\n";
    }
    if (r.contains("state")) {
      o << "state.json:\n";
      for (auto it = r["state"].begin(); it != r["state"].end(); ++it) {
        o << "  " << pad(printable(it.key()) + ":", 20) << printable(scalar_text(it.value())) << "\n";
      }
    }
    for (const char* key : {"model", "optimizer"}) {
      if (!r.contains(key)) continue;
      o << key << ":\n";
      if (r[key].contains("error")) {
        o << "  unreadable: " << r[key]["error"].get<std::string>() << "\n";
      } else {
        format_summary(o, r[key], "  ");
      }
    }
  } else if (kind == "checkpoint_dir") {
    o << r["path"].get<std::string>() << "  (checkpoint directory, latest: "
      << (r["latest"].is_null() ? std::string("none") : r["latest"].get<std::string>()) << ")\n";
    o << "  " << pad("checkpoint", 16) << pad("size", 12) << pad("val_loss", 12) << "status\n";
    for (const auto& c : r["checkpoints"]) {
      o << "  " << pad(c["name"].get<std::string>(), 16) << pad(format_bytes(c["bytes"].get<uint64_t>()), 12)
        << pad(c["val_loss"].is_null() ? "-" : format_loss(c["val_loss"].get<double>()), 12)
        << (c["whole"].get<bool>() ? "whole (sizes checked)" : "NOT WHOLE: " + c["error"].get<std::string>()) << "\n";
    }
    o << "`fathom-engine inspect <dir>/step-<N>` verifies one checkpoint's sha256.\n";
  }
  return o.str();
}

}  // namespace fathom::ckpt
