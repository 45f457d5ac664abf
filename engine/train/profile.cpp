// Step profiler (see profile.h): Kineto through LibTorch's C++ profiler API.
#include "engine/train/profile.h"

#include <torch/csrc/autograd/profiler_kineto.h>
#include <torch/torch.h>

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <stdexcept>
#include <unordered_map>
#include <vector>

namespace fathom::train {
namespace kp = torch::autograd::profiler;
namespace pi = torch::profiler::impl;

namespace {

// Kineto's times are microseconds in LibTorch 1.x and nanoseconds from 2.1.
#if TORCH_VERSION_MAJOR >= 2 && (TORCH_VERSION_MAJOR > 2 || TORCH_VERSION_MINOR >= 1)
double start_us(const kp::KinetoEvent& e) { return static_cast<double>(e.startNs()) / 1e3; }
double duration_us(const kp::KinetoEvent& e) { return static_cast<double>(e.durationNs()) / 1e3; }
#else
double start_us(const kp::KinetoEvent& e) { return static_cast<double>(e.startUs()); }
double duration_us(const kp::KinetoEvent& e) { return static_cast<double>(e.durationUs()); }
#endif

bool contains(const std::string& s, const char* what) { return s.find(what) != std::string::npos; }

struct Tally {
  double us = 0;
  int64_t calls = 0;
};

nlohmann::json ranked(const std::unordered_map<std::string, Tally>& by, double total_us, int64_t steps, size_t limit,
                      const char* key) {
  std::vector<std::pair<std::string, Tally>> v(by.begin(), by.end());
  std::sort(v.begin(), v.end(), [](const auto& a, const auto& b) { return a.second.us > b.second.us; });
  if (v.size() > limit) v.resize(limit);
  auto out = nlohmann::json::array();
  for (const auto& [name, t] : v)
    out.push_back({{key, name},
                   {"ms_per_step", t.us / 1e3 / static_cast<double>(steps)},
                   {"calls_per_step", static_cast<double>(t.calls) / static_cast<double>(steps)},
                   {"share", total_us > 0 ? t.us / total_us : 0.0}});
  return out;
}

void write_trace(const kp::ProfilerResult& result, const std::string& path) {
  auto events = nlohmann::json::array();
  for (const auto& e : result.events()) {
    const bool gpu = e.deviceType() != c10::DeviceType::CPU;
    events.push_back({{"name", e.name()},
                      {"ph", "X"},
                      {"cat", gpu ? "kernel" : "cpu_op"},
                      {"ts", start_us(e)},
                      {"dur", duration_us(e)},
                      {"pid", gpu ? 1 : 0},
                      {"tid", gpu ? e.deviceResourceId() : static_cast<int64_t>(e.startThreadId())}});
  }
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  if (!out) throw std::runtime_error("cannot write " + path);
  out << nlohmann::json{{"traceEvents", events}}.dump();
  if (!out.flush()) throw std::runtime_error("cannot write " + path);
}

}  // namespace

std::string kernel_category(const std::string& n) {
  if (contains(n, "nccl")) return "communication (NCCL)";
  if (contains(n, "fathom::kernels")) return "Fathom kernels";
  if (contains(n, "flash") || contains(n, "fmha") || contains(n, "attention") || contains(n, "cudnn") ||
      contains(n, "sdpa"))
    return "attention";
  if (contains(n, "gemm") || contains(n, "Gemm") || contains(n, "nvjet") || contains(n, "cutlass") ||
      contains(n, "xmma") || contains(n, "cublas") || contains(n, "s16816") || contains(n, "s1688"))
    return "matrix products";
  if (contains(n, "Memcpy") || contains(n, "Memset") || contains(n, "memcpy") || contains(n, "memset") ||
      contains(n, "copy_kernel") || contains(n, "CatArray") || contains(n, "cat_"))
    return "copies";
  if (contains(n, "reduce_kernel") || contains(n, "Reduce") || contains(n, "softmax") || contains(n, "norm"))
    return "reductions";
  if (contains(n, "elementwise") || contains(n, "Elementwise") || contains(n, "foreach") || contains(n, "index"))
    return "elementwise";
  return "other";
}

StepProfiler::StepProfiler(bool cuda) : cuda_(cuda) {
  std::set<pi::ActivityType> activities{pi::ActivityType::CPU};
  if (cuda_) activities.insert(pi::ActivityType::CUDA);
  // Input shapes in the trace: which tensor a copy or cast kernel moved is then readable from it.
  const pi::ProfilerConfig config(pi::ProfilerState::KINETO, /*report_input_shapes=*/true);
  try {
    kp::prepareProfiler(config, activities);
    kp::enableProfiler(config, activities);
  } catch (const c10::Error& e) {
    throw std::runtime_error(std::string("the profiler could not start: ") + e.what_without_backtrace());
  }
  running_ = true;
}

StepProfiler::~StepProfiler() {
  if (running_) {
    try {
      kp::disableProfiler();
    } catch (...) {
    }
  }
}

nlohmann::json StepProfiler::stop(const std::string& trace_path, int64_t steps, int top_n) {
  running_ = false;
  auto result = kp::disableProfiler();
  steps = std::max<int64_t>(1, steps);
  nlohmann::json s{{"device", cuda_ ? "cuda" : "cpu"}, {"steps", steps}};
  if (!trace_path.empty()) {
    try {
      result->save(trace_path);
      s["trace"] = trace_path;
    } catch (const std::exception&) {
      // A LibTorch without Kineto (Debian's) keeps the events but cannot save them: write the
      // Chrome trace from the events (operators on pid 0 by thread, GPU work on pid 1).
      try {
        write_trace(*result, trace_path);
        s["trace"] = trace_path;
      } catch (const std::exception& e) {
        s["trace_error"] = e.what();
      }
    }
  }
  std::unordered_map<std::string, Tally> by_name, by_category;
  double total_us = 0;
  if (cuda_) {
    // Device time: every CUDA kernel, copy and set the GPU ran in the span.
    for (const auto& e : result->events()) {
      if (e.deviceType() != c10::DeviceType::CUDA) continue;
      const double us = duration_us(e);
      const std::string name = e.name();
      by_name[name].us += us;
      ++by_name[name].calls;
      auto& c = by_category[kernel_category(name)];
      c.us += us;
      ++c.calls;
      total_us += us;
    }
  } else {
    // CPU operators by self time: per thread, in start order, each operator's time less its children's.
    std::map<uint64_t, std::vector<const kp::KinetoEvent*>> per_thread;
    for (const auto& e : result->events())
      if (e.deviceType() == c10::DeviceType::CPU) per_thread[e.startThreadId()].push_back(&e);
    for (auto& [tid, evs] : per_thread) {
      (void)tid;
      std::sort(evs.begin(), evs.end(), [](const auto* a, const auto* b) {
        return start_us(*a) < start_us(*b) || (start_us(*a) == start_us(*b) && duration_us(*a) > duration_us(*b));
      });
      struct Open {
        const kp::KinetoEvent* e;
        double end, child_us;
      };
      std::vector<Open> stack;
      auto close = [&](const Open& o) {
        const double self = std::max(0.0, duration_us(*o.e) - o.child_us);
        const std::string name = o.e->name();
        by_name[name].us += self;
        ++by_name[name].calls;
        total_us += self;
      };
      for (const auto* e : evs) {
        const double t0 = start_us(*e);
        while (!stack.empty() && stack.back().end <= t0) {
          close(stack.back());
          stack.pop_back();
        }
        if (!stack.empty()) stack.back().child_us += duration_us(*e);
        stack.push_back({e, t0 + duration_us(*e), 0.0});
      }
      while (!stack.empty()) {
        close(stack.back());
        stack.pop_back();
      }
    }
  }
  s["total_ms_per_step"] = total_us / 1e3 / static_cast<double>(steps);
  if (cuda_) {
    // Where the GPU sat idle: the span from the first device event to the last, less the time some
    // event was running (the union of their intervals), split into short gaps (< 10 µs: one kernel
    // launched behind another) and long ones (the GPU waiting for the host).
    std::vector<std::pair<double, double>> spans;
    for (const auto& e : result->events())
      if (e.deviceType() == c10::DeviceType::CUDA) spans.emplace_back(start_us(e), start_us(e) + duration_us(e));
    std::sort(spans.begin(), spans.end());
    double idle_short = 0, idle_long = 0, end = spans.empty() ? 0.0 : spans.front().second;
    for (size_t i = 1; i < spans.size(); ++i) {
      const double gap = spans[i].first - end;
      if (gap > 0) (gap < 10.0 ? idle_short : idle_long) += gap;
      end = std::max(end, spans[i].second);
    }
    const double per_step = 1e3 * static_cast<double>(steps);
    s["span_ms_per_step"] = spans.empty() ? 0.0 : (end - spans.front().first) / per_step;
    s["idle_ms_per_step"] = (idle_short + idle_long) / per_step;
    s["idle_long_gaps_ms_per_step"] = idle_long / per_step;
    s["categories"] = ranked(by_category, total_us, steps, by_category.size(), "category");
  }
  s["top"] = ranked(by_name, total_us, steps, static_cast<size_t>(std::max(1, top_n)), "name");
  return s;
}

std::string format_profile(const nlohmann::json& s) {
  std::ostringstream o;
  char line[512];
  const bool cuda = s.value("device", "") == "cuda";
  std::snprintf(line, sizeof line, "profile over %lld steps: %.2f ms of %s time per step\n",
                static_cast<long long>(s.value("steps", int64_t{0})), s.value("total_ms_per_step", 0.0),
                cuda ? "GPU" : "CPU operator (self)");
  o << line;
  if (s.contains("idle_ms_per_step")) {
    std::snprintf(line, sizeof line, "  GPU idle between its work: %.2f ms per step (%.2f ms in gaps of 10 µs or more), over a span of %.2f ms\n",
                  s.value("idle_ms_per_step", 0.0), s.value("idle_long_gaps_ms_per_step", 0.0), s.value("span_ms_per_step", 0.0));
    o << line;
  }
  auto table = [&](const nlohmann::json& rows, const char* key, const char* title) {
    std::snprintf(line, sizeof line, "  %-72s %10s %8s %7s\n", title, "ms/step", "calls", "share");
    o << line;
    for (const auto& r : rows) {
      std::string name = r.value(key, "");
      if (name.size() > 72) name = name.substr(0, 69) + "...";
      std::snprintf(line, sizeof line, "  %-72s %10.3f %8.1f %6.1f%%\n", name.c_str(), r.value("ms_per_step", 0.0),
                    r.value("calls_per_step", 0.0), 100.0 * r.value("share", 0.0));
      o << line;
    }
  };
  if (s.contains("categories")) table(s["categories"], "category", "category");
  if (s.contains("top")) table(s["top"], "name", cuda ? "kernel" : "operator (self time)");
  if (s.contains("trace")) o << "  trace: " << s["trace"].get<std::string>() << "\n";
  return o.str();
}

}  // namespace fathom::train
