// Emitter: one mutex orders seq assignment and both writes, so within a process the seq order is
// the line order on stdout and in the file. Across processes, O_APPEND makes each write(2) land
// whole at the end of the file (the kernel positions and writes under the inode lock).
#include "engine/protocol/emitter.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <stdexcept>
#include <utility>

#include "engine/protocol/events_file_reader.h"

namespace fathom::protocol {

namespace {

// Writes all of `s`; a short write (disk full, signal) continues with the remainder. Returns 0 or
// the errno of the failure.
int write_all(int fd, const std::string& s) {
  std::size_t done = 0;
  while (done < s.size()) {
    const ssize_t r = ::write(fd, s.data() + done, s.size() - done);
    if (r < 0) {
      if (errno == EINTR) continue;
      return errno;
    }
    done += static_cast<std::size_t>(r);
  }
  return 0;
}

int64_t unix_ms_now() {
  using namespace std::chrono;
  return duration_cast<milliseconds>(system_clock::now().time_since_epoch()).count();
}

}  // namespace

void ignore_sigpipe_if_default() {
  struct sigaction current {};
  if (::sigaction(SIGPIPE, nullptr, &current) == 0 && current.sa_handler == SIG_DFL) {
    struct sigaction ignore {};
    ignore.sa_handler = SIG_IGN;
    sigemptyset(&ignore.sa_mask);
    ::sigaction(SIGPIPE, &ignore, nullptr);
  }
}

Emitter::Emitter(std::string run_id, int rank, std::string events_path, bool to_stdout)
    : run_(std::move(run_id)), rank_(rank), path_(std::move(events_path)), to_stdout_(to_stdout) {
  if (to_stdout_) ignore_sigpipe_if_default();
  if (path_.empty()) return;

  next_seq_ = scan_last_seq(path_, rank_) + 1;
  // O_RDWR, not O_WRONLY: the pread of the last byte below needs read access.
  fd_ = ::open(path_.c_str(), O_RDWR | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
  if (fd_ < 0)
    throw std::runtime_error("cannot open events file '" + path_ + "' for appending: " + std::strerror(errno) +
                             "; check that the run directory exists and is writable");
  // A writer that died mid-line left no '\n'; terminate that line so ours start clean (the torn
  // line is then one malformed line for readers, and a concurrent opener adds at most a blank one).
  struct stat st {};
  if (::fstat(fd_, &st) == 0 && st.st_size > 0) {
    char last = '\n';
    if (::pread(fd_, &last, 1, st.st_size - 1) == 1 && last != '\n') {
      if (const int err = write_all(fd_, "\n"))
        note_error("cannot write to events file '" + path_ + "': " + std::strerror(err));
    }
  }
}

Emitter::~Emitter() { close(); }

void Emitter::note_error(const std::string& what) {
  ++write_errors_;
  last_error_ = what;
  if (!reported_) {
    reported_ = true;
    std::fprintf(stderr, "fathom-engine rank %d: %s (further write errors are counted, not printed)\n", rank_,
                 what.c_str());
  }
}

int64_t Emitter::emit(RecordType type, nlohmann::json data) {
  Record r;
  r.type = type;
  r.type_name = to_string(type);
  r.run = run_;
  r.rank = rank_;
  if (data.is_object()) r.data = std::move(data);
  else if (!data.is_null()) r.data = nlohmann::json{{"value", std::move(data)}};

  std::lock_guard<std::mutex> lock(mu_);
  r.seq = next_seq_++;
  r.t_ms = unix_ms_now();
  const std::string line = encode_line(r);
  // File first: it is the truth, and a stdout blocked by a stalled reader must not hold it back.
  if (fd_ >= 0) {
    if (const int err = write_all(fd_, line))
      note_error("cannot append to events file '" + path_ + "': " + std::strerror(err) +
                 "; check free disk space");
  }
  if (to_stdout_) {
    std::fflush(stdout);  // keep order with anything stdio still buffers (there should be nothing)
    if (const int err = write_all(stdout_fd_, line)) {
      if (err == EPIPE) {
        to_stdout_ = false;  // the reader is gone; events.jsonl still has everything
        note_error("stdout closed by the reader (EPIPE); records continue in " +
                   (path_.empty() ? std::string("no events file") : "'" + path_ + "'"));
      } else {
        note_error(std::string("cannot write a record to stdout: ") + std::strerror(err));
      }
    }
  }
  return r.seq;
}

void Emitter::set_stdout(bool on) {
  std::lock_guard<std::mutex> lock(mu_);
  if (on && !to_stdout_) ignore_sigpipe_if_default();
  to_stdout_ = on;
}

bool Emitter::stdout_enabled() const {
  std::lock_guard<std::mutex> lock(mu_);
  return to_stdout_;
}

void Emitter::set_stdout_fd(int fd) {
  std::lock_guard<std::mutex> lock(mu_);
  stdout_fd_ = fd;
}

void Emitter::close() {
  std::lock_guard<std::mutex> lock(mu_);
  if (fd_ < 0) return;
  if (::fsync(fd_) != 0 && errno != EINVAL)  // EINVAL: a pipe or special file, nothing to sync
    note_error("cannot fsync events file '" + path_ + "': " + std::strerror(errno));
  ::close(fd_);
  fd_ = -1;
}

int64_t Emitter::next_seq() const {
  std::lock_guard<std::mutex> lock(mu_);
  return next_seq_;
}

int64_t Emitter::write_errors() const {
  std::lock_guard<std::mutex> lock(mu_);
  return write_errors_;
}

std::string Emitter::last_error() const {
  std::lock_guard<std::mutex> lock(mu_);
  return last_error_;
}

}  // namespace fathom::protocol
