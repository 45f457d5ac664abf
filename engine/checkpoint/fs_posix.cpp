// POSIX file-system helpers; see fs_posix.h for why not std::filesystem.
#include "engine/checkpoint/fs_posix.h"

#include <dirent.h>
#include <ftw.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <stdexcept>

namespace fathom::ckpt::posix {

namespace {
std::string trim_slashes(std::string p) {
  while (p.size() > 1 && p.back() == '/') p.pop_back();
  return p;
}

// nftw's callback has no user pointer; the first failure of the current walk goes here.
thread_local std::string g_remove_error;

int remove_entry(const char* path, const struct stat*, int type, struct FTW*) {
  const int rc = (type == FTW_DP || type == FTW_D) ? ::rmdir(path) : ::unlink(path);
  if (rc != 0 && errno != ENOENT && g_remove_error.empty()) {
    g_remove_error = std::string("cannot remove ") + path + ": " + std::strerror(errno);
  }
  return 0;  // keep going: remove as much as possible
}
}  // namespace

bool exists(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0;
}

bool is_directory(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

bool is_regular_file(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode);
}

int64_t file_size(const std::string& path) {
  struct stat st;
  if (::stat(path.c_str(), &st) != 0 || !S_ISREG(st.st_mode)) return -1;
  return static_cast<int64_t>(st.st_size);
}

std::vector<std::string> list_directory(const std::string& dir, std::string* error) {
  std::vector<std::string> names;
  DIR* d = ::opendir(dir.c_str());
  if (!d) {
    if (error) *error = "cannot list " + dir + ": " + std::strerror(errno);
    return names;
  }
  while (const dirent* e = ::readdir(d)) {
    const std::string n = e->d_name;
    if (n != "." && n != "..") names.push_back(n);
  }
  ::closedir(d);
  std::sort(names.begin(), names.end());
  return names;
}

bool remove_tree(const std::string& path, std::string* error) {
  struct stat st;
  if (::lstat(path.c_str(), &st) != 0) return errno == ENOENT;
  g_remove_error.clear();
  if (!S_ISDIR(st.st_mode)) {
    if (::unlink(path.c_str()) != 0 && errno != ENOENT) g_remove_error = "cannot remove " + path + ": " + std::strerror(errno);
  } else if (::nftw(path.c_str(), remove_entry, 16, FTW_DEPTH | FTW_PHYS) != 0 && g_remove_error.empty()) {
    g_remove_error = "cannot walk " + path + ": " + std::strerror(errno);
  }
  const bool gone = ::lstat(path.c_str(), &st) != 0 && errno == ENOENT;
  if (!gone && error) *error = g_remove_error.empty() ? "cannot remove " + path : g_remove_error;
  return gone;
}

bool make_directory(const std::string& path, std::string* error) {
  if (::mkdir(path.c_str(), 0755) == 0) return true;
  if (error) *error = "cannot create directory " + path + ": " + std::strerror(errno);
  return false;
}

void make_directories(const std::string& path) {
  const std::string p = trim_slashes(path);
  if (p.empty()) throw std::runtime_error("cannot create a directory with an empty name");
  size_t pos = 0;
  while (true) {
    pos = p.find('/', pos + 1);
    const std::string prefix = p.substr(0, pos);
    if (!prefix.empty() && ::mkdir(prefix.c_str(), 0755) != 0 && errno != EEXIST) {
      throw std::runtime_error("cannot create directory " + prefix + ": " + std::strerror(errno));
    }
    if (pos == std::string::npos) break;
  }
  if (!is_directory(p)) throw std::runtime_error("cannot create directory " + p + ": a file with that name exists");
}

std::string parent_directory(const std::string& path) {
  const std::string p = trim_slashes(path);
  const size_t slash = p.find_last_of('/');
  if (slash == std::string::npos) return ".";
  if (slash == 0) return "/";
  return p.substr(0, slash);
}

std::string base_name(const std::string& path) {
  const std::string p = trim_slashes(path);
  const size_t slash = p.find_last_of('/');
  return slash == std::string::npos ? p : p.substr(slash + 1);
}

}  // namespace fathom::ckpt::posix
