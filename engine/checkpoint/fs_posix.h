// POSIX file-system helpers for the checkpoint code. std::filesystem is avoided on purpose:
// PyTorch's Linux binaries (2.5 and later, pytorch/pytorch#133437) export a statically linked
// copy of libstdc++'s filesystem operations, and a program linking LibTorch may bind to that copy
// (seen here: std::filesystem::remove_all jumping to address 0 with LibTorch 2.11).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace fathom::ckpt::posix {

bool exists(const std::string& path);        // follows symlinks
bool is_directory(const std::string& path);  // follows symlinks
bool is_regular_file(const std::string& path);
int64_t file_size(const std::string& path);  // -1 when missing or not a regular file

// Entry names (no "." / ".."), sorted. On failure returns {} and sets *error when given.
std::vector<std::string> list_directory(const std::string& dir, std::string* error = nullptr);

// rm -rf without following symlinks. True when nothing is left (also when it never existed).
bool remove_tree(const std::string& path, std::string* error = nullptr);

// mkdir -p (mode 0755). Throws std::runtime_error naming the path and the OS error.
void make_directories(const std::string& path);
// One mkdir; false with *error set when it exists already or cannot be created.
bool make_directory(const std::string& path, std::string* error = nullptr);

// "a/b/c" -> "a/b"; "c" -> "."; "/c" -> "/". Trailing slashes are ignored.
std::string parent_directory(const std::string& path);
// "a/b/c/" -> "c".
std::string base_name(const std::string& path);

}  // namespace fathom::ckpt::posix
