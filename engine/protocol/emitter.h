// Engine side of the protocol: stamps records with run, rank, seq and time, writes each as one line
// to stdout and appends it to <run_dir>/events.jsonl. Thread-safe; POSIX only (open/write/fsync).
#pragma once

#include <cstdint>
#include <mutex>
#include <string>

#include <nlohmann/json.hpp>

#include "engine/protocol/payloads.h"
#include "engine/protocol/record.h"

namespace fathom::protocol {

// SIGPIPE to SIG_IGN if it is at its default: a write to a pipe or socket whose reader is gone then
// fails with EPIPE instead of killing the process (used for stdout to a workbench, and by
// distributed ranks for their peers' sockets).
void ignore_sigpipe_if_default();

class Emitter {
 public:
  // `events_path` "" = no file. An existing file is scanned for this rank's last seq so that a
  // resumed run continues at last + 1 (seqs start at 1); a torn last line (a writer that died
  // mid-line) is terminated with '\n' first so our lines never glue onto it.
  // One Emitter per (events file, rank) at a time: two writers of the same rank would reuse seqs.
  // Throws std::runtime_error naming the path when the file cannot be opened for appending.
  // With to_stdout, SIGPIPE is set to SIG_IGN if it was at its default: a workbench that lost the
  // pipe must not kill the run; stdout output is then switched off and events.jsonl carries on.
  Emitter(std::string run_id, int rank, std::string events_path = "", bool to_stdout = true);
  ~Emitter();
  Emitter(const Emitter&) = delete;
  Emitter& operator=(const Emitter&) = delete;

  // Stamps and writes one record; returns its seq. The line goes first to the events file (one
  // write(2) on an O_APPEND descriptor, so several processes can append to one file without
  // interleaving), then to stdout (one write(2), after flushing stdio's stdout). Write failures never throw:
  // they are counted (write_errors) and described (last_error), and reported once on stderr.
  int64_t emit(RecordType type, nlohmann::json data);
  // emit(MetricData{...}), emit(LogData{"info", "..."}), ...
  template <class T>
  int64_t emit(const T& payload) {
    return emit(payload_traits<T>::type, nlohmann::json(payload));
  }

  void set_stdout(bool on);
  bool stdout_enabled() const;
  // Descriptor used for "stdout" records (default 1); for tests and embedders. Not owned.
  void set_stdout_fd(int fd);

  // fsyncs and closes the events file; idempotent. Later emits still go to stdout.
  void close();

  const std::string& run_id() const { return run_; }
  int rank() const { return rank_; }
  const std::string& events_path() const { return path_; }
  // The seq the next emit will use.
  int64_t next_seq() const;
  int64_t write_errors() const;
  std::string last_error() const;

 private:
  void note_error(const std::string& what);

  const std::string run_;
  const int rank_;
  const std::string path_;
  mutable std::mutex mu_;
  int fd_ = -1;
  int stdout_fd_ = 1;
  bool to_stdout_;
  int64_t next_seq_ = 1;
  int64_t write_errors_ = 0;
  bool reported_ = false;
  std::string last_error_;
};

}  // namespace fathom::protocol
