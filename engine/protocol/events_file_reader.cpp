// Follows events.jsonl by byte offset (pread, no stdio buffering) and scans it backwards for the
// Emitter's seq continuation. Only complete lines are ever decoded.
#include "engine/protocol/events_file_reader.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <stdexcept>
#include <string_view>
#include <utility>

namespace fathom::protocol {

namespace {

constexpr std::size_t kReadChunk = std::size_t{1} << 20;

struct Fd {
  int fd;
  ~Fd() {
    if (fd >= 0) ::close(fd);
  }
};

// pread that retries on EINTR; -1 with errno set on error.
ssize_t pread_retry(int fd, char* buf, std::size_t n, int64_t at) {
  for (;;) {
    const ssize_t r = ::pread(fd, buf, n, static_cast<off_t>(at));
    if (r >= 0 || errno != EINTR) return r;
  }
}

bool is_blank(std::string_view s) { return s.find_first_not_of(" \t\r\n") == std::string_view::npos; }

}  // namespace

EventsFileReader::EventsFileReader(std::string path, std::size_t max_line_bytes)
    : path_(std::move(path)), max_line_bytes_(max_line_bytes) {}

void EventsFileReader::restart() {
  offset_ = 0;
  skip_scanned_ = -1;
  after_seek_ = false;
  last_seq_.clear();
  ++restarts_;
}

void EventsFileReader::seek(int64_t offset) {
  offset_ = std::max<int64_t>(0, offset);
  skip_scanned_ = -1;
  after_seek_ = true;
}

int64_t EventsFileReader::last_seq(int rank) const {
  const auto it = last_seq_.find(rank);
  return it == last_seq_.end() ? 0 : it->second;
}

std::vector<Record> EventsFileReader::read_new(std::size_t max_bytes) {
  std::vector<Record> out;
  Fd f{::open(path_.c_str(), O_RDONLY | O_CLOEXEC)};
  if (f.fd < 0) {
    if (errno != ENOENT)
      last_error_ = path_ + ": cannot open for reading: " + std::strerror(errno) + "; check the path and its permissions";
    return out;
  }
  struct stat st {};
  if (::fstat(f.fd, &st) != 0) {
    last_error_ = path_ + ": cannot stat: " + std::strerror(errno);
    return out;
  }
  const int64_t size = st.st_size;
  if (have_identity_ && (static_cast<uint64_t>(st.st_dev) != dev_ || static_cast<uint64_t>(st.st_ino) != ino_))
    restart();  // replaced (e.g. the run directory was re-created)
  have_identity_ = true;
  dev_ = static_cast<uint64_t>(st.st_dev);
  ino_ = static_cast<uint64_t>(st.st_ino);
  if (size < offset_ || size < skip_scanned_) restart();  // truncated

  // The byte before offset_ must end a line; otherwise the file was rewritten in place (restart),
  // or a seek landed mid-line (skip to the next line).
  if (offset_ > 0 && skip_scanned_ < 0) {
    char c = 0;
    if (pread_retry(f.fd, &c, 1, offset_ - 1) != 1 || c != '\n') {
      if (after_seek_) {
        skip_scanned_ = offset_;
        skip_counts_ = false;
      } else {
        restart();
      }
    }
  }
  after_seek_ = false;

  auto take = [&](std::string_view line, int64_t at) {
    if (is_blank(line)) return;
    if (line.size() > max_line_bytes_) {
      ++malformed_;
      last_error_ = path_ + " at byte " + std::to_string(at) + ": line longer than " +
                    std::to_string(max_line_bytes_) + " bytes; skipped";
      return;
    }
    std::string why;
    auto r = decode_line(line, &why);
    if (!r) {
      ++malformed_;
      last_error_ = path_ + " at byte " + std::to_string(at) + ": " + why;
      return;
    }
    if (r->type == RecordType::unknown) ++unknown_;
    auto& last = last_seq_[r->rank];
    last = std::max(last, r->seq);
    out.push_back(std::move(*r));
  };

  const int64_t start_offset = offset_;
  std::string chunk(std::min<int64_t>(kReadChunk, std::max<int64_t>(size - offset_, 0) + 4096), '\0');
  std::string buf;  // bytes [offset_, offset_ + buf.size()): an unterminated line so far
  int64_t pos = skip_scanned_ >= 0 ? skip_scanned_ : offset_;
  for (;;) {
    // Only what the file held when this call began: a writer that appends faster than this
    // loop decodes (a fast engine against a slow or instrumented reader) must not keep it here.
    if (pos >= size) break;
    const ssize_t n = pread_retry(f.fd, chunk.data(), static_cast<std::size_t>(std::min<int64_t>(static_cast<int64_t>(chunk.size()), size - pos)), pos);
    if (n < 0) {
      last_error_ = path_ + " at byte " + std::to_string(pos) + ": read failed: " + std::strerror(errno);
      break;
    }
    if (n == 0) break;
    const int64_t chunk_at = pos;
    pos += n;
    std::string_view data(chunk.data(), static_cast<std::size_t>(n));

    if (skip_scanned_ >= 0) {
      const auto nl = data.find('\n');
      if (nl == std::string_view::npos) {
        skip_scanned_ = pos;
        continue;
      }
      if (skip_counts_) {
        ++malformed_;
        last_error_ = path_ + " at byte " + std::to_string(offset_) + ": line longer than " +
                      std::to_string(max_line_bytes_) + " bytes; skipped";
      }
      offset_ = chunk_at + static_cast<int64_t>(nl) + 1;
      skip_scanned_ = -1;
      data.remove_prefix(nl + 1);
    }

    std::size_t search_from = buf.size();
    buf.append(data);
    std::size_t line_start = 0;
    bool budget_spent = false;
    for (;;) {
      const auto nl = buf.find('\n', search_from);
      if (nl == std::string::npos) break;
      take(std::string_view(buf).substr(line_start, nl - line_start), offset_);
      offset_ += static_cast<int64_t>(nl - line_start + 1);
      line_start = search_from = nl + 1;
      if (max_bytes > 0 && offset_ - start_offset >= static_cast<int64_t>(max_bytes)) {
        budget_spent = true;
        break;
      }
    }
    if (budget_spent) break;  // the unread rest is read again from offset_ next time
    buf.erase(0, line_start);
    if (buf.size() > max_line_bytes_) {
      skip_scanned_ = pos;
      skip_counts_ = true;
      buf.clear();
    }
  }
  return out;
}

int64_t scan_last_seq(const std::string& path, int rank) {
  Fd f{::open(path.c_str(), O_RDONLY | O_CLOEXEC)};
  if (f.fd < 0) {
    if (errno == ENOENT) return 0;
    throw std::runtime_error("cannot read events file '" + path + "' to continue its seq: " + std::strerror(errno) +
                             "; check its permissions");
  }
  struct stat st {};
  if (::fstat(f.fd, &st) != 0)
    throw std::runtime_error("cannot stat events file '" + path + "': " + std::strerror(errno));

  // Walk blocks from the end. `tail` holds the start of the file-later line that the block just
  // read ends inside, i.e. bytes [block end, next line end). Lines are decoded newest first.
  constexpr std::size_t kBlock = 64 * 1024;
  std::string block(kBlock, '\0');
  std::string tail;
  bool dropping = false;  // inside an over-long line: ignore bytes until an earlier '\n'
  int64_t pos = st.st_size;
  while (pos > 0) {
    const std::size_t n = static_cast<std::size_t>(std::min<int64_t>(kBlock, pos));
    pos -= static_cast<int64_t>(n);
    std::size_t got = 0;
    while (got < n) {
      const ssize_t r = pread_retry(f.fd, block.data() + got, n - got, pos + static_cast<int64_t>(got));
      if (r < 0)
        throw std::runtime_error("cannot read events file '" + path + "': " + std::strerror(errno));
      if (r == 0) break;  // shrank under us: treat the rest as empty
      got += static_cast<std::size_t>(r);
    }
    std::string data(block.data(), got);
    if (dropping) {
      const auto nl = data.rfind('\n');
      if (nl == std::string::npos) continue;
      data.resize(nl + 1);
      dropping = false;
    } else {
      data += tail;
    }
    // Every segment after a '\n' is a complete line; the first one is complete only at file start.
    std::size_t end = data.size();
    for (;;) {
      const auto nl = end == 0 ? std::string::npos : data.rfind('\n', end - 1);
      const std::size_t begin = nl == std::string::npos ? 0 : nl + 1;
      if (nl == std::string::npos && pos > 0) break;  // belongs to a line that starts earlier
      const std::string_view line(data.data() + begin, end - begin);
      if (!is_blank(line)) {
        if (auto r = decode_line(line); r && r->rank == rank) return r->seq;
      }
      if (nl == std::string::npos) break;
      end = nl;
    }
    tail.assign(data, 0, data.find('\n') == std::string::npos ? data.size() : data.find('\n'));
    if (tail.size() > kMaxLineBytes) {
      tail.clear();
      dropping = true;
    }
  }
  return 0;
}

}  // namespace fathom::protocol
