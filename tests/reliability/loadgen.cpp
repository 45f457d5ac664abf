// fathom-loadgen: a bounded HTTP/1.1 load client for `fathom-engine serve` (no dependencies beyond
// the C++ library and nlohmann-json). N client threads, each with one keep-alive connection, send
// POST requests in a closed loop for D seconds and count what comes back: 2xx, 429, 503, other
// statuses, transport errors and timeouts, with latency percentiles. A share of the clients can ask
// for a stream and hang up after a few events (a client that goes away mid-stream). With --pid it
// samples the server's resident memory (VmRSS) once a second. Prints one JSON object on stdout;
// exits 0 when every request got a 2xx or a deliberate 429/503 (no other status, no error, no
// timeout) and, with --pid, the memory stayed flat; else 1. Usage: fathom-loadgen --help.
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iostream>
#include <mutex>
#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <thread>
#include <vector>

namespace {

using Clock = std::chrono::steady_clock;
using json = nlohmann::json;

struct Options {
  std::string host = "127.0.0.1";
  int port = 8000;
  int clients = 200;
  double duration_s = 10;
  double timeout_s = 60;  // per request: connect + whole response
  std::string path = "/v1/completions";
  std::string body = R"({"prompt":"The Congress shall","max_tokens":8,"temperature":0})";
  double stream_drop_fraction = 0;  // share of clients that stream and hang up mid-stream
  int stream_drop_after = 2;        // SSE events read before hanging up
  int busy_backoff_ms = 100;        // pause after a 429/503 (a well-behaved client backs off)
  int pid = 0;                      // server process whose VmRSS is sampled
  double warmup_s = -1;             // RSS reference point; default duration/6
  double flat_tolerance = 0.10;     // end RSS may exceed the post-warm-up RSS by this share
};

struct Counts {
  uint64_t ok = 0, s429 = 0, s503 = 0, other = 0, errors = 0, timeouts = 0, dropped = 0, connects = 0;
  std::vector<float> latency_ok_ms, latency_all_ms;
  std::vector<std::string> samples;  // first few unexpected answers, for the report
};

std::atomic<bool> g_stop{false};

int64_t rss_kib(int pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(in, line))
    if (line.rfind("VmRSS:", 0) == 0) return std::atoll(line.c_str() + 6);
  return -1;
}

double ms_since(Clock::time_point t0) { return std::chrono::duration<double, std::milli>(Clock::now() - t0).count(); }

// One client: a socket and a read buffer that survives between keep-alive responses.
class Connection {
 public:
  Connection(const Options& o) : o_(o) {}
  ~Connection() { close(); }
  void close() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
    buf_.clear();
  }
  bool open() const { return fd_ >= 0; }

  // Connects within the deadline. "" on success, else the reason.
  std::string connect(Clock::time_point deadline) {
    close();
    fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd_ < 0) return std::string("socket: ") + std::strerror(errno);
    int one = 1;
    ::setsockopt(fd_, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(static_cast<uint16_t>(o_.port));
    ::inet_pton(AF_INET, o_.host.c_str(), &a.sin_addr);
    if (::connect(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 && errno != EINPROGRESS) {
      const std::string e = std::string("connect: ") + std::strerror(errno);
      close();
      return e;
    }
    if (!wait_for(POLLOUT, deadline)) {
      close();
      return "timeout";
    }
    int err = 0;
    socklen_t len = sizeof err;
    ::getsockopt(fd_, SOL_SOCKET, SO_ERROR, &err, &len);
    if (err != 0) {
      close();
      return std::string("connect: ") + std::strerror(err);
    }
    return "";
  }

  std::string send_all(const std::string& data, Clock::time_point deadline) {
    size_t off = 0;
    while (off < data.size()) {
      const ssize_t n = ::send(fd_, data.data() + off, data.size() - off, MSG_NOSIGNAL);
      if (n > 0) {
        off += static_cast<size_t>(n);
      } else if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
        if (!wait_for(POLLOUT, deadline)) return "timeout";
      } else {
        return std::string("send: ") + std::strerror(errno);
      }
    }
    return "";
  }

  // Reads one response. status/body filled; with drop_after >= 0 and a streamed body, returns
  // after that many SSE events with *dropped = true (the caller hangs up).
  std::string read_response(Clock::time_point deadline, int* status, bool* keep_alive, int drop_after, bool* dropped) {
    *dropped = false;
    size_t header_end;
    while ((header_end = buf_.find("\r\n\r\n")) == std::string::npos)
      if (auto e = fill(deadline); !e.empty()) return e;
    const std::string head = buf_.substr(0, header_end);
    buf_.erase(0, header_end + 4);
    if (head.compare(0, 9, "HTTP/1.1 ") != 0 && head.compare(0, 9, "HTTP/1.0 ") != 0) return "bad status line";
    *status = std::atoi(head.c_str() + 9);
    std::string lower = head;
    std::transform(lower.begin(), lower.end(), lower.begin(), [](unsigned char c) { return std::tolower(c); });
    *keep_alive = lower.find("\r\nconnection: close") == std::string::npos && head.compare(0, 8, "HTTP/1.1") == 0;
    if (lower.find("\r\ntransfer-encoding: chunked") != std::string::npos) {
      int events = 0;
      while (true) {  // chunk: size CRLF data CRLF; 0 CRLF CRLF ends
        size_t eol;
        while ((eol = buf_.find("\r\n")) == std::string::npos)
          if (auto e = fill(deadline); !e.empty()) return e;
        const size_t n = std::strtoul(buf_.c_str(), nullptr, 16);
        while (buf_.size() < eol + 2 + n + 2)
          if (auto e = fill(deadline); !e.empty()) return e;
        const std::string data = buf_.substr(eol + 2, n);
        buf_.erase(0, eol + 2 + n + 2);
        if (n == 0) return "";
        for (size_t p = 0; (p = data.find("data: ", p)) != std::string::npos; p += 6) ++events;
        if (drop_after >= 0 && events >= drop_after) {
          *dropped = true;
          return "";
        }
      }
    }
    size_t length = 0;
    if (auto p = lower.find("\r\ncontent-length:"); p != std::string::npos) length = std::strtoul(lower.c_str() + p + 17, nullptr, 10);
    while (buf_.size() < length)
      if (auto e = fill(deadline); !e.empty()) return e;
    body_ = buf_.substr(0, length);
    buf_.erase(0, length);
    return "";
  }
  const std::string& body() const { return body_; }

 private:
  bool wait_for(short events, Clock::time_point deadline) {
    while (true) {
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
      if (left <= 0) return false;
      pollfd p{fd_, events, 0};
      const int r = ::poll(&p, 1, static_cast<int>(std::min<int64_t>(left, 200)));
      if (r > 0) return true;
      if (r < 0 && errno != EINTR) return false;
    }
  }
  std::string fill(Clock::time_point deadline) {
    char tmp[16384];
    while (true) {
      const ssize_t n = ::recv(fd_, tmp, sizeof tmp, 0);
      if (n > 0) {
        buf_.append(tmp, static_cast<size_t>(n));
        return "";
      }
      if (n == 0) return "closed by server";
      if (errno != EAGAIN && errno != EINTR) return std::string("recv: ") + std::strerror(errno);
      if (!wait_for(POLLIN, deadline)) return "timeout";
    }
  }

  const Options& o_;
  int fd_ = -1;
  std::string buf_, body_;
};

void client_loop(const Options& o, int index, Clock::time_point end, Counts* c, std::mutex* samples_mu, std::vector<std::string>* samples) {
  // Clients with index < drop_share ask for a stream and hang up after a few events.
  const bool dropper = index < static_cast<int>(o.stream_drop_fraction * o.clients + 0.5);
  std::string body = o.body;
  if (dropper) {
    auto j = json::parse(body);
    j["stream"] = true;
    j["max_tokens"] = std::max<int>(j.value("max_tokens", 16), o.stream_drop_after + 8);
    j["ignore_eos"] = true;
    body = j.dump();
  }
  const std::string request = "POST " + o.path + " HTTP/1.1\r\nHost: " + o.host + ":" + std::to_string(o.port) +
                              "\r\nContent-Type: application/json\r\nContent-Length: " + std::to_string(body.size()) +
                              "\r\n\r\n" + body;
  Connection conn(o);
  std::mt19937 rng(static_cast<uint32_t>(index) * 7919u + 1);
  // Spread the first connects over 200 ms, as clients that do not arrive all in one instant.
  std::this_thread::sleep_for(std::chrono::microseconds(std::uniform_int_distribution<int>(0, 200000)(rng)));
  auto note = [&](const std::string& what) {
    std::lock_guard<std::mutex> g(*samples_mu);
    if (samples->size() < 20) samples->push_back(what);
  };
  while (Clock::now() < end && !g_stop) {
    const auto t0 = Clock::now();
    const auto deadline = t0 + std::chrono::milliseconds(static_cast<int64_t>(o.timeout_s * 1000));
    std::string err;
    if (!conn.open()) {
      err = conn.connect(deadline);
      ++c->connects;
    }
    if (err.empty()) err = conn.send_all(request, deadline);
    int status = 0;
    bool keep_alive = false, dropped = false;
    if (err.empty()) err = conn.read_response(deadline, &status, &keep_alive, dropper ? o.stream_drop_after : -1, &dropped);
    const float ms = static_cast<float>(ms_since(t0));
    if (err == "timeout") {
      ++c->timeouts;
      note("timeout after " + std::to_string(static_cast<int>(ms)) + " ms");
      conn.close();
      continue;
    }
    if (!err.empty()) {
      ++c->errors;
      note("error: " + err);
      conn.close();
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
      continue;
    }
    c->latency_all_ms.push_back(ms);
    if (dropped) {
      ++c->dropped;
      conn.close();  // hang up mid-stream
      continue;
    }
    if (status >= 200 && status < 300) {
      ++c->ok;
      c->latency_ok_ms.push_back(ms);
    } else if (status == 429 || status == 503) {
      (status == 429 ? c->s429 : c->s503)++;
    } else {
      ++c->other;
      note("status " + std::to_string(status) + ": " + conn.body().substr(0, 200));
    }
    if (!keep_alive) conn.close();
    if ((status == 429 || status == 503) && o.busy_backoff_ms > 0)
      std::this_thread::sleep_for(std::chrono::milliseconds(o.busy_backoff_ms));
  }
}

json percentiles(std::vector<float> v) {
  if (v.empty()) return json::object();
  std::sort(v.begin(), v.end());
  auto at = [&](double q) { return v[std::min(v.size() - 1, static_cast<size_t>(q * static_cast<double>(v.size())))]; };
  return json{{"p50", at(0.50)}, {"p90", at(0.90)}, {"p99", at(0.99)}, {"max", v.back()}};
}

void usage() {
  std::cerr << "fathom-loadgen --port P [--host 127.0.0.1] [--clients 200] [--duration 10] [--timeout 60]\n"
               "  [--path /v1/completions] [--body JSON] [--stream-drop FRACTION] [--stream-drop-after EVENTS]\n"
               "  [--busy-backoff-ms 100] [--pid SERVER_PID] [--warmup SECONDS] [--flat-tolerance 0.10]\n";
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto next = [&]() -> std::string {
      if (i + 1 >= argc) {
        usage();
        std::exit(2);
      }
      return argv[++i];
    };
    if (a == "--host") o.host = next();
    else if (a == "--port") o.port = std::stoi(next());
    else if (a == "--clients") o.clients = std::stoi(next());
    else if (a == "--duration") o.duration_s = std::stod(next());
    else if (a == "--timeout") o.timeout_s = std::stod(next());
    else if (a == "--path") o.path = next();
    else if (a == "--body") o.body = next();
    else if (a == "--stream-drop") o.stream_drop_fraction = std::stod(next());
    else if (a == "--stream-drop-after") o.stream_drop_after = std::stoi(next());
    else if (a == "--busy-backoff-ms") o.busy_backoff_ms = std::stoi(next());
    else if (a == "--pid") o.pid = std::stoi(next());
    else if (a == "--warmup") o.warmup_s = std::stod(next());
    else if (a == "--flat-tolerance") o.flat_tolerance = std::stod(next());
    else {
      usage();
      return a == "--help" || a == "-h" ? 0 : 2;
    }
  }
  if (o.warmup_s < 0) o.warmup_s = o.duration_s / 6;
  // One descriptor per client (and the server needs as many): lift the soft limit to the hard one.
  rlimit rl{};
  if (::getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    ::setrlimit(RLIMIT_NOFILE, &rl);
  }

  std::vector<int64_t> rss;  // one sample a second, KiB
  std::thread sampler;
  if (o.pid > 0) {
    rss.push_back(rss_kib(o.pid));
    sampler = std::thread([&] {
      auto t = Clock::now();
      while (!g_stop) {
        t += std::chrono::seconds(1);
        std::this_thread::sleep_until(t);
        if (!g_stop) rss.push_back(rss_kib(o.pid));
      }
    });
  }
  const auto t0 = Clock::now();
  const auto end = t0 + std::chrono::milliseconds(static_cast<int64_t>(o.duration_s * 1000));
  std::vector<Counts> counts(static_cast<size_t>(o.clients));
  std::mutex samples_mu;
  std::vector<std::string> samples;
  std::vector<std::thread> threads;
  threads.reserve(static_cast<size_t>(o.clients));
  for (int i = 0; i < o.clients; ++i)
    threads.emplace_back(client_loop, std::cref(o), i, end, &counts[static_cast<size_t>(i)], &samples_mu, &samples);
  for (auto& t : threads) t.join();
  const double elapsed = std::chrono::duration<double>(Clock::now() - t0).count();
  g_stop = true;
  if (sampler.joinable()) sampler.join();

  Counts total;
  for (auto& c : counts) {
    total.ok += c.ok;
    total.s429 += c.s429;
    total.s503 += c.s503;
    total.other += c.other;
    total.errors += c.errors;
    total.timeouts += c.timeouts;
    total.dropped += c.dropped;
    total.connects += c.connects;
    total.latency_ok_ms.insert(total.latency_ok_ms.end(), c.latency_ok_ms.begin(), c.latency_ok_ms.end());
    total.latency_all_ms.insert(total.latency_all_ms.end(), c.latency_all_ms.begin(), c.latency_all_ms.end());
  }
  const uint64_t answered = total.ok + total.s429 + total.s503 + total.other + total.dropped;
  json out{{"clients", o.clients},
           {"duration_s", elapsed},
           {"requests", answered + total.errors + total.timeouts},
           {"answered", answered},
           {"ok_2xx", total.ok},
           {"busy_429", total.s429},
           {"busy_503", total.s503},
           {"other_status", total.other},
           {"errors", total.errors},
           {"timeouts", total.timeouts},
           {"stream_dropped", total.dropped},
           {"connections", total.connects},
           {"requests_per_s", static_cast<double>(answered) / elapsed},
           {"latency_ms_2xx", percentiles(total.latency_ok_ms)},
           {"latency_ms_all", percentiles(total.latency_all_ms)},
           {"unexpected", samples}};
  bool flat = true;
  if (o.pid > 0 && rss.size() >= 2) {
    const size_t warm = std::min(rss.size() - 1, static_cast<size_t>(o.warmup_s));
    const int64_t after_warmup = rss[warm], peak = *std::max_element(rss.begin(), rss.end()), last = rss.back();
    // Flat: the end within the tolerance of the post-warm-up value (plus 2 MiB for allocator noise).
    flat = static_cast<double>(last) <= static_cast<double>(after_warmup) * (1 + o.flat_tolerance) + 2048;
    out["rss_kib"] = json{{"start", rss.front()}, {"after_warmup", after_warmup}, {"peak", peak}, {"end", last},
                          {"flat", flat}, {"series", rss}};
  }
  const bool pass = total.other == 0 && total.errors == 0 && total.timeouts == 0 && (total.ok + total.dropped) > 0 && flat;
  out["pass"] = pass;
  std::cout << out.dump() << std::endl;
  return pass ? 0 : 1;
}
