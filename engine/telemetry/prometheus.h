// Prometheus /metrics for `train` (opt-in: telemetry.prometheus_port). The exporter is fed by the
// very records the Emitter writes: it follows <run_dir>/events.jsonl from where it stood when the
// exporter started, so every rank that appends to that file on this host is exported (labels rank,
// gpu, host) and the trainer's only hook is start_prometheus(). Text exposition format 0.0.4.
// Without cpp-httplib in the build, start() fails with a message and nothing else changes.
#pragma once

#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "engine/protocol/record.h"

namespace fathom::config {
struct TelemetryConfig;
}
namespace fathom::protocol {
class Emitter;
}

namespace fathom::telemetry {

struct PrometheusOptions {
  std::string bind = "127.0.0.1";
  int port = 0;             // 0 = any free port (start() returns it)
  std::string events_path;  // events.jsonl to follow; "" = only what observe() is given
  std::string host;         // value of the `host` label; "" = gethostname()
  std::string run_id;
  int world_size = 1;       // tokens in metric records count all ranks: energy/token divides by it
  // Ranks exported, [rank_first, rank_end): this host's, where run_dir is on a file system that
  // several hosts share (each host's exporter then shows its own ranks under its own host label).
  int rank_first = 0, rank_end = 1 << 30;
};

// One metric family the exporter can write (for `fathom-engine metrics --list` and the Grafana test).
struct MetricFamilyInfo {
  const char* name;
  const char* type;  // gauge | counter | histogram
  const char* help;
  const char* labels;  // comma-separated label names
};

class PrometheusExporter {
 public:
  explicit PrometheusExporter(PrometheusOptions options);
  ~PrometheusExporter();
  PrometheusExporter(const PrometheusExporter&) = delete;
  PrometheusExporter& operator=(const PrometheusExporter&) = delete;

  // Binds and serves GET /metrics (and GET / with a link) on its own thread. Returns the port, or
  // -1 with `error` saying why (address in use, not an address of this machine, no cpp-httplib).
  int start(std::string* error = nullptr);
  void stop();  // idempotent; the destructor calls it

  // Feeds one record (what the events file would give); safe from any thread.
  void observe(const protocol::Record& record);
  // Reads what was appended to the events file since the last call, then writes the exposition text.
  std::string render();

  // Every family render() can write, in the order it writes them.
  static const std::vector<MetricFamilyInfo>& families();

 private:
  struct State;
  PrometheusOptions opt_;
  std::unique_ptr<State> state_;
  std::mutex mu_;
  std::thread thread_;
};

// The trainer's hook: with telemetry.prometheus_port set and on this host's first process
// (LOCAL_RANK 0, or rank 0 when LOCAL_RANK is unset; this host's ranks from LOCAL_WORLD_SIZE), starts an exporter that follows the
// emitter's events file and says where it listens (a `log` record); otherwise returns null.
// A port that cannot be bound is a warning, never fatal: the run goes on without /metrics.
std::unique_ptr<PrometheusExporter> start_prometheus(const config::TelemetryConfig& telemetry, protocol::Emitter& emitter,
                                                     int world_size);

}  // namespace fathom::telemetry
