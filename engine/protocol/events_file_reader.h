// Workbench side of re-attach: follows a run's events.jsonl from a byte offset, returning only
// complete lines, so a line the engine is still writing is never mis-parsed. POSIX file I/O;
// one reader per thread (not thread-safe); the file is opened per read_new(), never held.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "engine/protocol/record.h"

namespace fathom::protocol {

class EventsFileReader {
 public:
  explicit EventsFileReader(std::string path, std::size_t max_line_bytes = kMaxLineBytes);

  // Records of the complete lines appended since the last call. A file that does not exist
  // (yet) gives {}. A file that shrank below offset(), was replaced (new inode) or no longer has a
  // line end just before offset() is read again from the start, with last_seq() cleared and
  // restarts() incremented. `max_bytes` > 0 stops after the first line end past that many bytes
  // (keeps a GUI poll short on a huge file); 0 reads to the end as it was when the call began
  // (what is appended meanwhile comes next time). Never throws on file content;
  // I/O errors other than "not found" are described in last_error().
  std::vector<Record> read_new(std::size_t max_bytes = 0);

  // Bytes of complete lines consumed: persist it to re-attach later with seek().
  int64_t offset() const { return offset_; }
  // Continue from `offset` (normally a value offset() returned). If it is not at a line start,
  // the rest of that line is skipped (not counted as malformed).
  void seek(int64_t offset);

  // Highest seq seen for `rank` since the start (or the last restart); 0 when none.
  int64_t last_seq(int rank) const;
  const std::map<int, int64_t>& last_seqs() const { return last_seq_; }

  int64_t malformed_count() const { return malformed_; }
  int64_t unknown_type_count() const { return unknown_; }
  int64_t restarts() const { return restarts_; }
  // "<path> at byte N: <reason>" for the last malformed line or I/O error; empty when none.
  const std::string& last_error() const { return last_error_; }
  const std::string& path() const { return path_; }

 private:
  void restart();

  std::string path_;
  std::size_t max_line_bytes_;
  int64_t offset_ = 0;
  bool have_identity_ = false;
  uint64_t dev_ = 0, ino_ = 0;
  bool after_seek_ = false;        // next read: a missing line end before offset_ means "skip", not "restart"
  int64_t skip_scanned_ = -1;      // >= 0: skipping an over-long line, scanned up to this offset
  bool skip_counts_ = false;       // the line being skipped counts as malformed (over-long) or not (seek)
  std::map<int, int64_t> last_seq_;
  int64_t malformed_ = 0, unknown_ = 0, restarts_ = 0;
  std::string last_error_;
};

// Highest seq of `rank` in the events file at `path`, scanning backwards from the end (usually a
// few lines); 0 when the file does not exist or holds no record of that rank. Throws
// std::runtime_error naming the path when the file exists but cannot be read.
int64_t scan_last_seq(const std::string& path, int rank);

}  // namespace fathom::protocol
