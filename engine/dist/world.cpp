// World over c10d (see world.h). Version notes: LibTorch 1.13 (Debian, CPU) calls the process group
// c10d::ProcessGroup and has Gloo; LibTorch 2.x calls the backend c10d::Backend and adds NCCL. Gloo
// in 1.13 has no reduce_scatter: it is emulated as all_reduce + slice, and reported as such.
#include "engine/dist/world.h"

#include <torch/version.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <iostream>
#include <map>
#include <mutex>
#include <sstream>
#include <thread>

#include <torch/csrc/distributed/c10d/FileStore.hpp>
#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>
// The c10d backend headers are empty unless USE_C10D_<NAME> is defined (LibTorch's CMake config
// does not always pass it on); Gloo's needs the gloo headers (Debian: libgloo-dev).
#if __has_include(<gloo/config.h>)
#ifndef USE_C10D_GLOO
#define USE_C10D_GLOO
#endif
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#define FATHOM_HAVE_GLOO 1
#endif
#if TORCH_VERSION_MAJOR >= 2
#include <torch/csrc/distributed/c10d/Backend.hpp>
#else
#include <torch/csrc/distributed/c10d/ProcessGroup.hpp>
#endif
#if defined(FATHOM_HAVE_CUDA) && TORCH_VERSION_MAJOR >= 2 && __has_include(<nccl.h>)
#ifndef USE_C10D_NCCL
#define USE_C10D_NCCL
#endif
#include <c10/cuda/CUDAFunctions.h>
#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>
#define FATHOM_HAVE_NCCL 1
#endif

#include "engine/protocol/emitter.h"

namespace fathom::dist {
namespace {

using Clock = std::chrono::steady_clock;
#if TORCH_VERSION_MAJOR >= 2
using Group = c10d::Backend;
#else
using Group = c10d::ProcessGroup;
#endif

double secs(Clock::duration d) { return std::chrono::duration<double>(d).count(); }

std::string human_bytes(int64_t b) {
  std::ostringstream s;
  s.precision(3);
  if (b >= (1 << 30)) s << b / double(1 << 30) << " GiB";
  else if (b >= (1 << 20)) s << b / double(1 << 20) << " MiB";
  else if (b >= 1024) s << b / 1024.0 << " KiB";
  else s << b << " B";
  return s.str();
}

std::string join_ranks(const std::vector<int>& r) {
  std::string s;
  for (size_t i = 0; i < r.size(); ++i) s += (i ? ", " : "") + std::to_string(r[i]);
  return s;
}

std::vector<uint8_t> bytes_of(const std::string& s) { return std::vector<uint8_t>(s.begin(), s.end()); }
std::string string_of(const std::vector<uint8_t>& v) { return std::string(v.begin(), v.end()); }

int env_int(const char* name, int fallback) {
  const char* v = std::getenv(name);
  if (!v || !*v) return fallback;
  char* end = nullptr;
  const long x = std::strtol(v, &end, 10);
  if (*end != '\0' || x < 0) throw std::runtime_error(std::string("environment variable ") + name + "='" + v + "' is not a non-negative integer");
  return static_cast<int>(x);
}

// ---- size 1 ------------------------------------------------------------------------------
struct DonePending : Pending {
  void wait() override {}
};

class SoloWorld : public World {
 public:
  SoloWorld() = default;
  std::shared_ptr<Pending> all_reduce_async(torch::Tensor) override { return std::make_shared<DonePending>(); }
  std::shared_ptr<Pending> reduce_scatter_async(torch::Tensor out, torch::Tensor in) override {
    out.copy_(in.view({-1}).narrow(0, 0, out.numel()).view_as(out));
    return std::make_shared<DonePending>();
  }
  std::shared_ptr<Pending> all_gather_async(torch::Tensor out, torch::Tensor in) override {
    if (out.data_ptr() != in.data_ptr()) out.view({-1}).narrow(0, 0, in.numel()).copy_(in.view({-1}));
    return std::make_shared<DonePending>();
  }
  std::shared_ptr<Pending> broadcast_async(torch::Tensor, int) override { return std::make_shared<DonePending>(); }
  void barrier() override {}
  std::vector<OpStats> take_stats(double* busy_s) override {
    if (busy_s) *busy_s = 0;
    return {};
  }
  double take_wait_s() override { return 0; }
  void set_exact_timing(bool) override {}
  void set_fatal_handler(std::function<void(const std::string&, const std::string&, const std::string&)>) override {}
  void store_set(const std::string& key, const std::string& value) override { kv_[key] = value; }
  std::string store_get(const std::string& key) override { return kv_[key]; }
  void store_wait(const std::string&) override {}

 private:
  std::map<std::string, std::string> kv_;
};

// ---- c10d ---------------------------------------------------------------------------------
class C10dWorld;

struct C10dPending : Pending {
  C10dWorld* world = nullptr;
  uint64_t seq = 0;
  std::string op;
  int64_t bytes = 0;
  Clock::time_point t0;
  c10::intrusive_ptr<c10d::Work> work;
  std::shared_ptr<std::atomic<int64_t>> done_ns = std::make_shared<std::atomic<int64_t>>(0);
  std::function<void()> after;  // runs once the op is done (emulations: copy the chunk out)
  bool waited = false;
  void wait() override;
};

class C10dWorld : public World {
 public:
  explicit C10dWorld(const WorldOptions& o) : opt_(o) {
    rank_ = o.rank;
    size_ = o.world_size;
    backend_ = o.backend;
    device_ = o.device;
    rendezvous();
    create_group();
    watchdog_ = std::thread([this] { watchdog_loop(); });
  }
  ~C10dWorld() override {
    {
      std::lock_guard<std::mutex> g(mu_);
      stop_ = true;
    }
    cv_.notify_all();
    if (watchdog_.joinable()) watchdog_.join();
  }

  std::shared_ptr<Pending> all_reduce_async(torch::Tensor t) override {
    return issue("all_reduce", t.numel() * t.element_size(), backend_, [&] {
      std::vector<at::Tensor> v{t};
      return group_->allreduce(v);
    });
  }

  std::shared_ptr<Pending> reduce_scatter_async(torch::Tensor out, torch::Tensor in) override {
    TORCH_CHECK(in.numel() == out.numel() * size_, "reduce_scatter: input must hold world_size chunks of the output");
    const int64_t bytes = in.numel() * in.element_size();
    if (!emulate_rs_) {
      try {
        return issue("reduce_scatter", bytes, backend_, [&] {
#ifdef FATHOM_HAVE_NCCL
          if (backend_ == "nccl") return group_->_reduce_scatter_base(out, in);
#endif
          std::vector<at::Tensor> o{out};
          std::vector<std::vector<at::Tensor>> i(1);
          for (auto& c : in.view({-1}).chunk(size_)) i[0].push_back(c.view_as(out));
          return group_->reduce_scatter(o, i);
        });
      } catch (const c10::Error& e) {
        // Gloo before LibTorch 2.x: "does not support reduce_scatter". Emulate from now on.
        if (std::string(e.what()).find("support") == std::string::npos) throw;
        emulate_rs_ = true;
      }
    }
    auto flat = in.view({-1});
    auto p = issue("reduce_scatter", bytes, backend_ + ":all_reduce+slice", [&] {
      std::vector<at::Tensor> v{flat};
      return group_->allreduce(v);
    });
    const int64_t n = out.numel();
    const int r = rank_;
    p->after = [flat, out, n, r]() mutable { out.view({-1}).copy_(flat.narrow(0, r * n, n)); };
    return p;
  }

  std::shared_ptr<Pending> all_gather_async(torch::Tensor out, torch::Tensor in) override {
    TORCH_CHECK(out.numel() == in.numel() * size_, "all_gather: output must hold world_size chunks of the input");
    const int64_t bytes = out.numel() * out.element_size();
    return issue("all_gather", bytes, backend_, [&] {
#ifdef FATHOM_HAVE_NCCL
      if (backend_ == "nccl") return group_->_allgather_base(out, in);
#endif
      auto src = in;
      // Gloo copies the input into its own output chunk; an aliasing input is copied first.
      const auto* o0 = static_cast<const char*>(out.data_ptr());
      const auto* i0 = static_cast<const char*>(in.data_ptr());
      if (i0 >= o0 && i0 < o0 + out.numel() * out.element_size()) src = in.clone();
      std::vector<std::vector<at::Tensor>> o{std::vector<at::Tensor>()};
      for (auto& c : out.view({-1}).chunk(size_)) o[0].push_back(c.view_as(src));
      std::vector<at::Tensor> i{src};
      return group_->allgather(o, i);
    });
  }

  std::shared_ptr<Pending> broadcast_async(torch::Tensor t, int root) override {
    return issue("broadcast", t.numel() * t.element_size(), backend_, [&] {
      std::vector<at::Tensor> v{t};
      c10d::BroadcastOptions o;
      o.rootRank = root;
      return group_->broadcast(v, o);
    });
  }

  void barrier() override {
    auto t = torch::zeros({1}, torch::TensorOptions().dtype(torch::kFloat32).device(opt_.device));
    all_reduce(t);
    if (opt_.device.is_cuda()) t.cpu();  // host waits for the device
  }

  std::vector<OpStats> take_stats(double* busy_s) override {
    std::lock_guard<std::mutex> g(mu_);
    std::vector<OpStats> out;
    std::vector<std::pair<double, double>> all;
    for (auto& [k, s] : stats_) {
      auto& iv = intervals_[k];
      s.time_s = union_length(iv);
      all.insert(all.end(), iv.begin(), iv.end());
      out.push_back(s);
    }
    if (busy_s) *busy_s = union_length(all);
    stats_.clear();
    intervals_.clear();
    return out;
  }
  static double union_length(std::vector<std::pair<double, double>>& iv) {
    std::sort(iv.begin(), iv.end());
    double total = 0, start = 0, end = -1;
    for (const auto& [a, b] : iv) {
      if (a > end) {
        if (end > start) total += end - start;
        start = a;
        end = b;
      } else {
        end = std::max(end, b);
      }
    }
    if (end > start) total += end - start;
    return total;
  }
  double take_wait_s() override {
    std::lock_guard<std::mutex> g(mu_);
    return std::exchange(wait_s_, 0.0);
  }
  void set_exact_timing(bool on) override { exact_ = on; }
  void set_fatal_handler(std::function<void(const std::string&, const std::string&, const std::string&)> f) override {
    std::lock_guard<std::mutex> g(mu_);
    fatal_ = std::move(f);
  }
  void store_set(const std::string& key, const std::string& value) override { store_->set("user/" + key, bytes_of(value)); }
  std::string store_get(const std::string& key) override { return string_of(store_->get("user/" + key)); }
  void store_wait(const std::string& key) override {
    while (true) {
      try {
        if (store_->check({"user/" + key})) return;
      } catch (const std::exception& e) {
        throw CommError("rank " + std::to_string(rank_) + ": rank 0 is gone (its rendezvous store at " + where_ +
                        " is unreachable) while waiting for '" + key + "'");
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
  }

  void finish(C10dPending& p) {
    if (p.waited) return;
    p.waited = true;
    const auto t_wait = Clock::now();
    try {
      p.work->wait();
    } catch (const std::exception& e) {
      forget(p.seq);
      throw CommError(diagnose(p, e.what()));
    }
    if (exact_ && opt_.device.is_cuda()) torch::cuda::synchronize(opt_.device.index());
    const auto now = Clock::now();
    double op_time = secs(now - p.t0);
    const int64_t done = p.done_ns->load();
    if (done > 0) op_time = std::min(op_time, std::max(0.0, (done - p.t0.time_since_epoch().count()) * 1e-9));
    if (p.after) p.after();
    std::lock_guard<std::mutex> g(mu_);
    inflight_.erase(p.seq);
    wait_s_ += secs(now - t_wait);
    auto key = p.op + "|" + algo_of_[p.seq];
    algo_of_.erase(p.seq);
    auto& s = stats_[key];
    if (s.op.empty()) {
      s.op = p.op;
      s.algorithm = key.substr(p.op.size() + 1);
    }
    ++s.count;
    s.bytes += p.bytes;
    const double a = secs(p.t0.time_since_epoch());
    intervals_[key].emplace_back(a, a + op_time);
  }

 private:
  struct Inflight {
    std::string op;
    int64_t bytes;
    Clock::time_point t0;
    c10::intrusive_ptr<c10d::Work> work;
  };

  template <class F>
  std::shared_ptr<C10dPending> issue(const std::string& op, int64_t bytes, const std::string& algorithm, F&& launch) {
    auto p = std::make_shared<C10dPending>();
    p->world = this;
    p->op = op;
    p->bytes = bytes;
    p->t0 = Clock::now();
    p->seq = ++seq_;
    try {
      p->work = launch();
    } catch (const c10::Error& e) {
      const std::string what = e.what_without_backtrace();
      if (what.find("support") != std::string::npos) throw;  // the caller may emulate
      throw CommError("rank " + std::to_string(rank_) + ": " + op + " #" + std::to_string(p->seq) + " could not start: " + what);
    }
    if (backend_ != "nccl") {
      // Gloo runs the op on its own thread: the future completes when the op does.
      auto done = p->done_ns;
      try {
        p->work->getFuture()->addCallback([done](c10::ivalue::Future&) { done->store(Clock::now().time_since_epoch().count()); });
      } catch (const std::exception&) {
      }
    }
    std::lock_guard<std::mutex> g(mu_);
    inflight_[p->seq] = Inflight{op, bytes, p->t0, p->work};
    algo_of_[p->seq] = algorithm;
    return p;
  }

  void forget(uint64_t seq) {
    std::lock_guard<std::mutex> g(mu_);
    inflight_.erase(seq);
    algo_of_.erase(seq);
  }

  // ---- rendezvous -----------------------------------------------------------------------
  void rendezvous() {
    const auto timeout = std::chrono::milliseconds(static_cast<int64_t>(opt_.timeout_s * 1000));
    const std::string& im = opt_.init_method;
    if (im.rfind("file://", 0) == 0) {
      where_ = im.substr(7);
      store_ = c10::make_intrusive<c10d::FileStore>(where_, size_);
      watch_store_ = c10::make_intrusive<c10d::FileStore>(where_, size_);
      store_->setTimeout(timeout);
    } else {
      std::string host = opt_.master_addr;
      int port = opt_.master_port;
      if (im.rfind("tcp://", 0) == 0) {
        const std::string hp = im.substr(6);
        const auto colon = hp.rfind(':');
        if (colon == std::string::npos) throw std::runtime_error("distributed.init_method '" + im + "' has no port: use tcp://host:port");
        host = hp.substr(0, colon);
        port = std::atoi(hp.c_str() + colon + 1);
      }
      where_ = host + ":" + std::to_string(port);
      c10d::TCPStoreOptions so;
      so.port = static_cast<uint16_t>(port);
      so.isServer = rank_ == 0;
      so.numWorkers = size_;
      so.waitWorkers = false;
      so.timeout = timeout;
      try {
        store_ = c10::make_intrusive<c10d::TCPStore>(host, so);
      } catch (const std::exception& e) {
        if (rank_ == 0)
          throw std::runtime_error("rank 0 could not host the rendezvous store on " + where_ + ": " + first_line(e.what()) +
                                   " (is the port in use? pick another MASTER_PORT)");
        throw std::runtime_error("rank " + std::to_string(rank_) + " could not reach rank 0's rendezvous store at " + where_ +
                                 " within " + std::to_string(static_cast<int64_t>(opt_.timeout_s)) +
                                 " s: rank 0 never arrived (is it running, with the same MASTER_ADDR/MASTER_PORT?)");
      }
      so.isServer = false;
      watch_store_ = c10::make_intrusive<c10d::TCPStore>(host, so);
    }
    // Every rank announces itself; all wait until world_size have, and on a timeout rank 0
    // (which sees the whole store) names the ranks that never came.
    char hostname[256] = {0};
    gethostname(hostname, sizeof(hostname) - 1);
    store_->set("arrived/" + std::to_string(rank_), bytes_of(std::string(hostname) + " pid " + std::to_string(getpid())));
    store_->add("arrived", 1);
    const auto deadline = Clock::now() + timeout;
    while (store_->add("arrived", 0) < size_) {
      if (Clock::now() > deadline) {
        std::vector<int> missing;
        for (int r = 0; r < size_; ++r)
          if (!store_->check({"arrived/" + std::to_string(r)})) missing.push_back(r);
        throw std::runtime_error("rendezvous at " + where_ + " timed out after " + std::to_string(static_cast<int64_t>(opt_.timeout_s)) +
                                 " s: rank" + (missing.size() == 1 ? " " : "s ") + join_ranks(missing) + " of " + std::to_string(size_) +
                                 " never arrived (were they started, with the same MASTER_ADDR/MASTER_PORT and WORLD_SIZE?)");
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
  }

  void create_group() {
    auto prefixed = c10::make_intrusive<c10d::PrefixStore>("pg", store_);
    // The library's own timeout is the last resort; our watchdog reports first.
    const auto timeout = std::chrono::milliseconds(static_cast<int64_t>((opt_.timeout_s + 15) * 1000));
    if (backend_ == "nccl") {
#ifdef FATHOM_HAVE_NCCL
      if (!opt_.device.is_cuda()) throw std::runtime_error("distributed.backend nccl needs run.device cuda");
      c10::cuda::set_device(opt_.device.index());
      auto o = c10d::ProcessGroupNCCL::Options::create();
      o->timeout = timeout;
      group_ = c10::make_intrusive<c10d::ProcessGroupNCCL>(prefixed, rank_, size_, o);
      return;
#else
      throw std::runtime_error("this fathom-engine was built without NCCL (CPU build, or LibTorch 1.x); use distributed.backend: gloo");
#endif
    }
#ifdef FATHOM_HAVE_GLOO
    auto o = c10d::ProcessGroupGloo::Options::create(timeout);
    if (const char* ifname = std::getenv("GLOO_SOCKET_IFNAME"); ifname && *ifname) {
      o->devices.push_back(c10d::ProcessGroupGloo::createDeviceForInterface(ifname));
    } else {
      const std::string host = where_.substr(0, where_.rfind(':'));
      const bool loopback = host.rfind("127.", 0) == 0 || host == "localhost" || opt_.init_method.rfind("file://", 0) == 0;
      o->devices.push_back(loopback ? c10d::ProcessGroupGloo::createDeviceForHostname("127.0.0.1")
                                    : c10d::ProcessGroupGloo::createDefaultDevice());
    }
    o->threads = 2;
    group_ = c10::make_intrusive<c10d::ProcessGroupGloo>(prefixed, rank_, size_, o);
#else
    throw std::runtime_error("this fathom-engine was built without Gloo; use distributed.backend: nccl");
#endif
  }

  static std::string first_line(const std::string& s) {
    auto n = s.find('\n');
    return n == std::string::npos ? s : s.substr(0, n);
  }

  // ---- watchdog -------------------------------------------------------------------------
  // Every ~0.5 s: publish this rank's collective count and a heartbeat to the store (one small
  // write each, off the training thread); and check that no issued collective is older than
  // the timeout. A stuck one is reported with the ranks that never issued it, then the process
  // exits: a hung collective cannot be cancelled.
  void watchdog_loop() {
    int64_t beat = 0;
    uint64_t published = 0;
    // Peers' heartbeats as last seen (value, when it last changed): read only while a collective
    // has been waiting a while, so a quiet run costs one store write per half second.
    std::vector<std::pair<std::string, Clock::time_point>> seen(size_);
    std::optional<Clock::time_point> store_down_since;
    auto last_peer_check = Clock::now();
    std::unique_lock<std::mutex> lock(mu_);
    while (!stop_) {
      cv_.wait_for(lock, std::chrono::milliseconds(500), [&] { return stop_; });
      if (stop_) break;
      std::optional<std::pair<uint64_t, Inflight>> stuck, waiting, pending;
      for (auto& [seq, f] : inflight_) {
        if (f.work->isCompleted()) continue;
        if (!pending) pending.emplace(seq, f);
        const double age = secs(Clock::now() - f.t0);
        if (age > opt_.timeout_s) {
          stuck.emplace(seq, f);
          break;
        }
        if (age > kPeerCheckAfterS && !waiting) waiting.emplace(seq, f);
      }
      const uint64_t issued = seq_.load();
      lock.unlock();
      try {
        watch_store_->set("hb/" + std::to_string(rank_), bytes_of(std::to_string(++beat)));
        if (issued != published) {
          watch_store_->set("seq/" + std::to_string(rank_), bytes_of(std::to_string(issued)));
          published = issued;
        }
        store_down_since.reset();
      } catch (const std::exception&) {
        // The store lives in rank 0: gone with it. Gloo collectives fail by themselves and say
        // so; an NCCL collective would wait for its timeout, hence the check below.
        if (!store_down_since) store_down_since = Clock::now();
      }
      if (stuck) report_stuck(stuck->first, stuck->second);
      if (pending && !store_down_since) {
        // A rank that found a peer gone says so in the store: a collective here that waits on the
        // same peer (or on the rank that found it, which is leaving) will not finish.
        std::string gone;
        try {
          if (watch_store_->check({"gone"})) gone = string_of(watch_store_->get("gone"));
        } catch (const std::exception&) {
        }
        if (!gone.empty()) report_known_gone(pending->first, pending->second, gone);
      }
      if (waiting && secs(Clock::now() - last_peer_check) >= 1.0) {
        last_peer_check = Clock::now();
        if (store_down_since && secs(Clock::now() - *store_down_since) > 5.0)
          report_gone(waiting->first, waiting->second, {0}, "its rendezvous store is unreachable");
        std::vector<int> gone;
        for (int r = 0; r < size_ && !store_down_since; ++r) {
          if (r == rank_) continue;
          std::string v;
          try {
            const std::string key = "hb/" + std::to_string(r);
            if (watch_store_->check({key})) v = string_of(watch_store_->get(key));
          } catch (const std::exception&) {
            break;
          }
          if (seen[r].second == Clock::time_point{} || v != seen[r].first) seen[r] = {v, Clock::now()};
          else if (secs(Clock::now() - seen[r].second) > kPeerSilentS) gone.push_back(r);
        }
        if (!gone.empty())
          report_gone(waiting->first, waiting->second, gone,
                      "no heartbeat for " + std::to_string(static_cast<int>(kPeerSilentS)) + " s");
      } else if (!waiting) {
        for (auto& s : seen) s.second = Clock::time_point{};  // nothing waits: forget the old readings
      }
      lock.lock();
    }
  }

  static constexpr const char* kGoneHint = "the rank named here died first: its stderr says why";

  // The watchdog's way out: the error on stderr and through the trainer's fatal handler, then exit.
  // A rank leaving because a peer is gone leaves through the store first (leave()).
  [[noreturn]] void exit_reporting(const char* code, const std::string& msg, const std::string& hint, int exit_code,
                                   bool peer_gone) {
    std::function<void(const std::string&, const std::string&, const std::string&)> fatal;
    {
      std::lock_guard<std::mutex> g(mu_);
      fatal = fatal_;
    }
    std::cerr << "error: " << msg << "\n  hint: " << hint << std::endl;
    if (fatal) fatal(code, msg, hint);
    if (peer_gone) leave(*watch_store_);
    std::quick_exit(exit_code);
  }

  // A collective waits on peers that are gone (NCCL would otherwise wait for its timeout).
  [[noreturn]] void report_gone(uint64_t seq, const Inflight& f, const std::vector<int>& gone, const std::string& why) {
    std::ostringstream msg;
    msg << "rank " << rank_ << ": " << f.op << " #" << seq << " (" << human_bytes(f.bytes) << ") is waiting on rank"
        << (gone.size() == 1 ? " " : "s ") << join_ranks(gone) << ", which stopped responding (" << why
        << ": exited, crashed, was killed or hangs)";
    exit_reporting("rank_failed", msg.str(), kGoneHint, 1, /*peer_gone=*/true);
  }

  [[noreturn]] void report_known_gone(uint64_t seq, const Inflight& f, const std::string& gone) {
    const std::string msg = "rank " + std::to_string(rank_) + ": " + f.op + " #" + std::to_string(seq) + " (" + human_bytes(f.bytes) +
                            ") cannot finish: " + gone;
    exit_reporting("rank_failed", msg, kGoneHint, 1, /*peer_gone=*/true);
  }

  static constexpr double kPeerCheckAfterS = 5.0;
  static constexpr double kPeerSilentS = 10.0;

 public:
  void leave_after_failure() override { leave(*store_); }

 private:
  // Marks this rank as left; rank 0 (the store's host) then waits until every other rank has
  // left too or its heartbeat stood still for 3 s, at most 10 s. Without the wait a rank still
  // diagnosing its failed collective finds the store gone and blames rank 0 instead of the rank
  // that died first. `store`: the client of the calling thread (clients are not shared).
  void leave(c10d::Store& store) {
    try {
      store.set("left/" + std::to_string(rank_), bytes_of("1"));
    } catch (const std::exception&) {
      return;  // the store is gone already: nobody can read it
    }
    if (rank_ != 0) return;
    const auto t0 = Clock::now();
    std::vector<std::pair<std::string, Clock::time_point>> beat(size_, {std::string(), t0});
    while (secs(Clock::now() - t0) < 10.0) {
      bool all_left = true;
      try {
        for (int r = 1; r < size_; ++r) {
          if (store.check({"left/" + std::to_string(r)})) continue;
          const std::string key = "hb/" + std::to_string(r);
          const std::string v = store.check({key}) ? string_of(store.get(key)) : std::string();
          if (v != beat[r].first) beat[r] = {v, Clock::now()};
          else if (secs(Clock::now() - beat[r].second) > 3.0) continue;  // not beating: gone
          all_left = false;
        }
      } catch (const std::exception&) {
        return;
      }
      if (all_left) return;
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
  }

  [[noreturn]] void report_stuck(uint64_t seq, const Inflight& f) {
    std::ostringstream msg;
    msg << "rank " << rank_ << ": " << f.op << " #" << seq << " (" << human_bytes(f.bytes) << ") did not finish within "
        << static_cast<int64_t>(opt_.timeout_s) << " s (distributed.timeout_s)";
    try {
      std::this_thread::sleep_for(std::chrono::milliseconds(1500));  // let the others publish
      std::vector<int> behind;
      std::vector<std::string> last;
      for (int r = 0; r < size_; ++r) {
        if (r == rank_) continue;
        const std::string key = "seq/" + std::to_string(r);
        const uint64_t s = watch_store_->check({key}) ? std::stoull(string_of(watch_store_->get(key))) : 0;
        if (s < seq) {
          behind.push_back(r);
          last.push_back("#" + std::to_string(s));
        }
      }
      if (behind.empty()) {
        msg << "; every rank has issued it, so the transport itself stalled (network, or a GPU hang)";
      } else {
        msg << "; rank" << (behind.size() == 1 ? " " : "s ") << join_ranks(behind) << (behind.size() == 1 ? " has" : " have")
            << " not reached it (last collective there: ";
        for (size_t i = 0; i < last.size(); ++i) msg << (i ? ", " : "") << last[i];
        msg << ")";
      }
    } catch (const std::exception&) {
      msg << "; the rendezvous store on rank 0 (" << where_ << ") is unreachable: rank 0 exited or was killed";
    }
    exit_reporting("collective_timeout", msg.str(),
                   "a rank that is slower by more than distributed.timeout_s (data loading, a checkpoint, a crash) "
                   "stalls the others; check that rank's stderr, or raise distributed.timeout_s",
                   3, /*peer_gone=*/false);
  }

  // What a failed collective means: which peer went away. Alive ranks keep beating while they
  // look (their watchdog threads run on), so ranks whose heartbeat stands still are the gone ones.
  std::string diagnose(const C10dPending& p, const std::string& what) {
    std::ostringstream msg;
    msg << "rank " << rank_ << ": " << p.op << " #" << p.seq << " failed";
    try {
      // Another rank may have found out already (our error can be the echo of its exit), or does
      // while we look.
      auto named_elsewhere = [&] {
        if (!store_->check({"gone"})) return false;
        msg << ": " << string_of(store_->get("gone")) << " [" << first_line(what) << "]";
        return true;
      };
      if (named_elsewhere()) return msg.str();
      auto read = [&] {
        std::vector<std::string> v(size_);
        for (int r = 0; r < size_; ++r) {
          const std::string key = "hb/" + std::to_string(r);
          if (r != rank_ && store_->check({key})) v[r] = string_of(store_->get(key));
        }
        return v;
      };
      const auto before = read();
      // 2.5 s for the living to beat (every 0.5 s).
      for (int i = 0; i < 25; ++i) {
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
        if (named_elsewhere()) return msg.str();
      }
      const auto after = read();
      std::vector<int> gone;
      for (int r = 0; r < size_; ++r)
        if (r != rank_ && before[r] == after[r]) gone.push_back(r);
      if (!gone.empty()) {
        std::ostringstream g;
        g << "rank" << (gone.size() == 1 ? " " : "s ") << join_ranks(gone) << (gone.size() == 1 ? " is" : " are")
          << " gone (exited, crashed or was killed; seen by rank " << rank_ << ")";
        msg << ": " << g.str();
        if (!store_->check({"gone"})) store_->set("gone", bytes_of(g.str()));  // tell the others (watchdogs poll it)
      } else {
        msg << ": every peer is still alive; the connection itself failed";
      }
    } catch (const std::exception& e) {
      msg << ": rank 0 is gone (exited, crashed or was killed; its rendezvous store at " << where_ << " is unreachable: "
          << first_line(e.what()) << ")";
    }
    msg << " [" << first_line(what) << "]";
    return msg.str();
  }

  WorldOptions opt_;
  std::string where_;
  c10::intrusive_ptr<c10d::Store> store_, watch_store_;
  c10::intrusive_ptr<Group> group_;
  std::atomic<uint64_t> seq_{0};
  std::atomic<bool> exact_{false};
  bool emulate_rs_ = false;
  std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;
  std::thread watchdog_;
  std::map<uint64_t, Inflight> inflight_;
  std::map<uint64_t, std::string> algo_of_;
  std::map<std::string, OpStats> stats_;
  std::map<std::string, std::vector<std::pair<double, double>>> intervals_;
  double wait_s_ = 0;
  std::function<void(const std::string&, const std::string&, const std::string&)> fatal_;
};

void C10dPending::wait() { world->finish(*this); }

}  // namespace

double bus_factor(const std::string& op, int n) {
  if (n <= 1) return 0.0;
  if (op == "all_reduce") return 2.0 * (n - 1) / n;
  if (op == "reduce_scatter" || op == "all_gather") return static_cast<double>(n - 1) / n;
  return 1.0;
}

double OpStats::algbw_gbps(int) const { return time_s > 0 ? bytes / time_s / 1e9 : 0.0; }
double OpStats::busbw_gbps(int world) const { return algbw_gbps(world) * bus_factor(op, world); }

WorldOptions world_options(const std::string& backend, const std::string& init_method, int64_t rank, int64_t world_size,
                           int64_t timeout_s, torch::Device device) {
  WorldOptions o;
  o.backend = backend;
  o.init_method = init_method;
  o.rank = env_int("RANK", static_cast<int>(rank));
  o.world_size = env_int("WORLD_SIZE", static_cast<int>(world_size));
  o.timeout_s = static_cast<double>(timeout_s);
  o.device = device;
  if (const char* a = std::getenv("MASTER_ADDR"); a && *a) o.master_addr = a;
  o.master_port = env_int("MASTER_PORT", o.master_port);
  if (o.world_size < 1) throw std::runtime_error("WORLD_SIZE must be at least 1");
  if (o.rank >= o.world_size)
    throw std::runtime_error("rank " + std::to_string(o.rank) + " is not below world_size " + std::to_string(o.world_size) +
                             " (RANK/WORLD_SIZE or distributed.rank/world_size)");
  return o;
}

std::shared_ptr<World> World::create(const WorldOptions& options) {
  if (options.world_size <= 1) return std::make_shared<SoloWorld>();
  // A rank's sockets (the rendezvous store, Gloo's pairs) outlive peers that die: a write to one
  // whose peer is gone must come back as EPIPE, which the error paths turn into "rank N is gone",
  // not kill this rank silently with SIGPIPE (seen in CI: a survivor of a killed rank exited
  // without a word while it reported to rank 0's store).
  protocol::ignore_sigpipe_if_default();
  return std::make_shared<C10dWorld>(options);
}

double World::all_reduce_sum(double v) {
  if (size_ == 1) return v;
  auto t = torch::full({1}, v, torch::TensorOptions().dtype(torch::kFloat64));
  if (backend_ == "nccl") t = t.to(device_);
  all_reduce(t);
  return t.cpu().item<double>();
}

std::vector<double> World::all_reduce_sum(std::vector<double> v) {
  if (size_ == 1 || v.empty()) return v;
  auto t = torch::tensor(v, torch::kFloat64);
  if (backend_ == "nccl") t = t.to(device_);
  all_reduce(t);
  t = t.cpu();
  return std::vector<double>(t.data_ptr<double>(), t.data_ptr<double>() + t.numel());
}

std::vector<int64_t> World::broadcast_ints(std::vector<int64_t> v, int root) {
  if (size_ == 1) return v;
  auto t = torch::tensor(v, torch::kInt64);
  if (backend_ == "nccl") t = t.to(device_);
  broadcast(t, root);
  t = t.cpu();
  return std::vector<int64_t>(t.data_ptr<int64_t>(), t.data_ptr<int64_t>() + t.numel());
}

}  // namespace fathom::dist
