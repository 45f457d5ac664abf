// MANIFEST.json, verification and durable-write helpers; see manifest.h.
#include "engine/checkpoint/manifest.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

#include "engine/checkpoint/sha256.h"

namespace fathom::ckpt {

namespace {

std::string errno_hint(int err) {
  switch (err) {
    case ENOSPC:
      return " The disk is full: free space (or lower checkpoint.keep_n_latest) and try again.";
    case EDQUOT:
      return " The disk quota is exhausted: free space or raise the quota.";
    case EFBIG:
      return " The file size limit (ulimit -f) or the filesystem's maximum file size was reached.";
    case EROFS:
      return " The filesystem is read-only.";
    case EACCES:
    case EPERM:
      return " Check the permissions of the checkpoint directory.";
    default:
      return "";
  }
}

std::string short_hash(const std::string& h) { return h.size() > 16 ? h.substr(0, 16) + "..." : h; }

bool plain_file_name(const std::string& n) {
  return !n.empty() && n != "." && n != ".." && n.find('/') == std::string::npos && n.find('\0') == std::string::npos;
}

bool is_sha256_hex(const std::string& s) {
  if (s.size() != 64) return false;
  for (char c : s)
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  return true;
}

}  // namespace

uint64_t Manifest::total_bytes() const {
  uint64_t n = 0;
  for (const auto& f : files) n += f.bytes;
  return n;
}

const ManifestFile* Manifest::find(const std::string& name) const {
  for (const auto& f : files)
    if (f.name == name) return &f;
  return nullptr;
}

nlohmann::json manifest_to_json(const Manifest& m) {
  nlohmann::json j;
  j["format"] = kManifestFormat;
  j["version"] = m.version;
  j["step"] = m.step;
  if (m.val_loss) j["val_loss"] = *m.val_loss;
  j["created_unix_ms"] = m.created_unix_ms;
  j["total_bytes"] = m.total_bytes();
  nlohmann::json files = nlohmann::json::array();
  for (const auto& f : m.files) files.push_back({{"name", f.name}, {"bytes", f.bytes}, {"sha256", f.sha256}});
  j["files"] = std::move(files);
  return j;
}

Manifest manifest_from_json(const nlohmann::json& j, const std::string& where) {
  auto bad = [&](const std::string& what) -> CheckpointError {
    return CheckpointError(where + ": invalid manifest: " + what +
                           ". The checkpoint was not written by Fathom or is damaged; use an older checkpoint.");
  };
  if (!j.is_object()) throw bad("not a JSON object");
  if (j.value("format", std::string()) != kManifestFormat) {
    throw bad(std::string("\"format\" is not \"") + kManifestFormat + "\"");
  }
  Manifest m;
  if (!j.contains("version") || !j["version"].is_number_integer()) throw bad("no integer \"version\"");
  m.version = j["version"].get<int>();
  if (m.version > kCheckpointVersion) {
    throw CheckpointError(where + ": manifest version " + std::to_string(m.version) + " is newer than this engine (" +
                          std::to_string(kCheckpointVersion) + "); upgrade fathom-engine to read it.");
  }
  if (!j.contains("step") || !j["step"].is_number_integer() || j["step"].get<int64_t>() < 0) {
    throw bad("no non-negative integer \"step\"");
  }
  m.step = j["step"].get<int64_t>();
  if (j.contains("val_loss") && !j["val_loss"].is_null()) {
    if (!j["val_loss"].is_number()) throw bad("\"val_loss\" is not a number");
    m.val_loss = j["val_loss"].get<double>();
  }
  if (j.contains("created_unix_ms") && j["created_unix_ms"].is_number_integer()) {
    m.created_unix_ms = j["created_unix_ms"].get<int64_t>();
  }
  if (!j.contains("files") || !j["files"].is_array()) throw bad("no \"files\" array");
  for (const auto& f : j["files"]) {
    if (!f.is_object() || !f.contains("name") || !f["name"].is_string() || !f.contains("bytes") ||
        !f["bytes"].is_number_unsigned() || !f.contains("sha256") || !f["sha256"].is_string()) {
      throw bad("a \"files\" entry lacks name/bytes/sha256: " + f.dump());
    }
    ManifestFile mf{f["name"].get<std::string>(), f["bytes"].get<uint64_t>(), f["sha256"].get<std::string>()};
    if (!plain_file_name(mf.name)) throw bad("file name \"" + mf.name + "\" is not a plain name inside the directory");
    if (!is_sha256_hex(mf.sha256)) throw bad("sha256 of \"" + mf.name + "\" is not 64 lowercase hex digits");
    if (m.find(mf.name)) throw bad("\"" + mf.name + "\" is listed twice");
    m.files.push_back(std::move(mf));
  }
  return m;
}

Manifest read_manifest(const std::string& dir) {
  const std::string path = dir + "/" + kManifestFile;
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    struct stat st;
    if (::stat(path.c_str(), &st) != 0 && errno == ENOENT) {
      throw CheckpointError(path + " is missing: the checkpoint was not completely written (the process probably "
                                   "stopped during the save), so it is not a whole checkpoint.");
    }
    throw CheckpointError("cannot read " + path + ": " + std::strerror(errno) + ".");
  }
  std::stringstream ss;
  ss << in.rdbuf();
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(ss.str());
  } catch (const nlohmann::json::exception& e) {
    throw CheckpointError(path + ": not valid JSON (" + e.what() + "); the checkpoint is damaged.");
  }
  return manifest_from_json(j, path);
}

std::string checkpoint_dir_name(int64_t step) {
  if (step < 0) throw CheckpointError("checkpoint step must be >= 0, got " + std::to_string(step));
  return "step-" + std::to_string(step);
}

bool parse_checkpoint_dir_name(const std::string& name, int64_t* step) {
  static const std::string prefix = "step-";
  if (name.size() <= prefix.size() || name.compare(0, prefix.size(), prefix) != 0) return false;
  const std::string digits = name.substr(prefix.size());
  if (digits.size() > 18) return false;  // stays below 2^63
  if (digits.size() > 1 && digits[0] == '0') return false;
  int64_t v = 0;
  for (char c : digits) {
    if (c < '0' || c > '9') return false;
    v = v * 10 + (c - '0');
  }
  *step = v;
  return true;
}

CheckpointInfo verify_checkpoint(const std::string& dir, VerifyLevel level) {
  CheckpointInfo info;
  info.path = dir;
  std::string base = dir;
  while (base.size() > 1 && base.back() == '/') base.pop_back();
  const size_t slash = base.find_last_of('/');
  int64_t step_from_name = -1;
  parse_checkpoint_dir_name(slash == std::string::npos ? base : base.substr(slash + 1), &step_from_name);
  info.step = step_from_name;
  try {
    const Manifest m = read_manifest(dir);
    info.step = m.step;
    info.val_loss = m.val_loss;
    info.bytes = static_cast<int64_t>(m.total_bytes());
    if (step_from_name >= 0 && step_from_name != m.step) {
      throw CheckpointError(dir + "/" + kManifestFile + " says step " + std::to_string(m.step) +
                            " but the directory is named for step " + std::to_string(step_from_name) +
                            "; it was renamed or copied over another checkpoint.");
    }
    for (const char* required : {kModelFile, kStateFile}) {
      if (!m.find(required)) {
        throw CheckpointError(dir + "/" + kManifestFile + " does not list " + required +
                              "; this is not a Fathom training checkpoint.");
      }
    }
    for (const auto& f : m.files) {
      const std::string path = dir + "/" + f.name;
      struct stat st;
      if (::stat(path.c_str(), &st) != 0) {
        throw CheckpointError(path + " is listed in " + kManifestFile + " but " +
                              (errno == ENOENT ? std::string("does not exist") : std::strerror(errno)) +
                              "; the checkpoint is incomplete.");
      }
      if (!S_ISREG(st.st_mode)) throw CheckpointError(path + " is not a regular file.");
      if (static_cast<uint64_t>(st.st_size) != f.bytes) {
        throw CheckpointError(path + " is " + std::to_string(st.st_size) + " bytes but " + kManifestFile + " records " +
                              std::to_string(f.bytes) +
                              (static_cast<uint64_t>(st.st_size) < f.bytes
                                   ? " (truncated: an interrupted copy, or the disk filled up)."
                                   : " (the file was modified after the checkpoint was written)."));
      }
    }
    if (level == VerifyLevel::VERIFY_LEVEL_SHA256) {
      for (const auto& f : m.files) {
        const std::string path = dir + "/" + f.name;
        std::string actual;
        try {
          actual = sha256_file(path);
        } catch (const std::exception& e) {
          throw CheckpointError(e.what());
        }
        if (actual != f.sha256) {
          throw CheckpointError(path + " is corrupted: its sha256 is " + short_hash(actual) + " but " + kManifestFile +
                                " records " + short_hash(f.sha256) +
                                " (the bytes changed on disk after the checkpoint was written).");
        }
      }
    }
    info.verified = true;
  } catch (const std::exception& e) {
    info.verified = false;
    info.error = e.what();
  }
  return info;
}

// ---- durability helpers -----------------------------------------------------------------------

void write_file_durable(const std::string& path, const std::string& contents) {
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) {
    const int err = errno;
    throw CheckpointError("cannot create " + path + ": " + std::strerror(err) + "." + errno_hint(err));
  }
  const char* p = contents.data();
  size_t left = contents.size();
  auto fail = [&](const char* what) {
    const int err = errno;
    ::close(fd);
    ::unlink(path.c_str());
    throw CheckpointError(std::string("cannot ") + what + " " + path + ": " + std::strerror(err) + "." +
                          errno_hint(err));
  };
  while (left > 0) {
    const ssize_t w = ::write(fd, p, left);
    if (w < 0) {
      if (errno == EINTR) continue;
      fail("write");
    }
    p += w;
    left -= static_cast<size_t>(w);
  }
  if (::fsync(fd) != 0) fail("fsync");
  if (::close(fd) != 0) {
    const int err = errno;
    ::unlink(path.c_str());
    throw CheckpointError("cannot close " + path + ": " + std::strerror(err) + "." + errno_hint(err));
  }
}

void fsync_directory(const std::string& dir) {
  const int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) throw CheckpointError("cannot open directory " + dir + " to fsync it: " + std::strerror(errno) + ".");
  if (::fsync(fd) != 0 && errno != EINVAL && errno != EROFS) {
    const int err = errno;
    ::close(fd);
    throw CheckpointError("cannot fsync directory " + dir + ": " + std::strerror(err) + "." + errno_hint(err));
  }
  ::close(fd);
}

void write_file_atomic(const std::string& path, const std::string& contents) {
  const std::string tmp = path + ".tmp";
  write_file_durable(tmp, contents);
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    const int err = errno;
    ::unlink(tmp.c_str());
    throw CheckpointError("cannot rename " + tmp + " to " + path + ": " + std::strerror(err) + ".");
  }
  const size_t slash = path.find_last_of('/');
  fsync_directory(slash == std::string::npos ? std::string(".") : (slash == 0 ? "/" : path.substr(0, slash)));
}

}  // namespace fathom::ckpt
