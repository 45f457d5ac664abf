// Prometheus exposition of a training run's protocol records (see prometheus.h). Naming follows
// https://prometheus.io/docs/practices/naming/: base units as suffixes (_seconds, _bytes, _joules,
// _ratio for fractions in [0, 1]), `_total` on counters, one label set per family.
#include "engine/telemetry/prometheus.h"

#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <limits>
#include <map>
#include <sstream>

#include "engine/config/config.h"
#include "engine/protocol/emitter.h"
#include "engine/protocol/events_file_reader.h"
#include "engine/protocol/payloads.h"

#if __has_include(<httplib.h>)
#include <httplib.h>
#define FATHOM_PROMETHEUS_HTTP 1
#endif

namespace fathom::telemetry {

namespace proto = fathom::protocol;

const std::vector<MetricFamilyInfo>& PrometheusExporter::families() {
  static const std::vector<MetricFamilyInfo> f = {
      {"fathom_train_info", "gauge", "Always 1; labels name the run and the engine version.", "host,run,engine_version"},
      {"fathom_train_exporter_records_total", "counter", "Protocol records the exporter has read, by type.", "host,type"},
      {"fathom_train_exporter_malformed_lines_total", "counter", "Lines of events.jsonl that were not protocol records.", "host"},
      {"fathom_train_last_record_timestamp_seconds", "gauge", "Unix time of the newest record of each rank.", "host,rank"},
      {"fathom_train_step", "gauge", "Optimizer step of the newest metric record.", "host,rank"},
      {"fathom_train_tokens_total", "counter", "Tokens trained on so far, all ranks together (resumed runs count from the checkpoint).", "host,rank"},
      {"fathom_train_loss", "gauge", "Training loss of the newest logged step.", "host,rank"},
      {"fathom_train_validation_loss", "gauge", "Loss on the held-out data at the newest evaluation.", "host,rank"},
      {"fathom_train_learning_rate", "gauge", "Learning rate of the newest logged step.", "host,rank"},
      {"fathom_train_grad_norm", "gauge", "Gradient norm before clipping.", "host,rank"},
      {"fathom_train_loss_scale", "gauge", "fp16 dynamic loss scale.", "host,rank"},
      {"fathom_train_tokens_per_second", "gauge", "Training throughput over the last logging interval, all ranks.", "host,rank"},
      {"fathom_train_mfu_ratio", "gauge", "Model FLOPs utilisation (PaLM appendix B) as a fraction of the device peak.", "host,rank"},
      {"fathom_train_step_duration_seconds", "gauge", "Mean wall time of one optimizer step over the last logging interval.", "host,rank"},
      {"fathom_train_step_phase_duration_seconds", "gauge", "Time of one step spent per phase (data, forward, backward, optimizer, comm).", "host,rank,phase"},
      {"fathom_train_grad_sync_duration_seconds", "gauge", "Gradient-synchronisation latency after backward, per step.", "host,rank"},
      {"fathom_train_comm_wait_ratio", "gauge", "Share of wall time this rank spent blocked on communication.", "host,rank"},
      {"fathom_train_energy_per_token_joules", "gauge", "GPU energy (NVML counter) per token trained since the exporter started.", "host,rank"},
      {"fathom_train_nan_skipped_total", "counter", "Steps skipped for a non-finite loss or gradient.", "host,rank"},
      {"fathom_train_errors_total", "counter", "Error records, by code.", "host,rank,code"},
      {"fathom_train_checkpoint_duration_seconds", "histogram", "Time to write a checkpoint (tensors, fsync, rename).", "host,rank"},
      {"fathom_train_checkpoint_last_duration_seconds", "gauge", "Time the newest checkpoint took to write.", "host,rank"},
      {"fathom_train_checkpoint_size_bytes", "gauge", "Size of the newest checkpoint.", "host,rank"},
      {"fathom_train_checkpoint_written_bytes_total", "counter", "Checkpoint bytes written.", "host,rank"},
      {"fathom_gpu_utilization_ratio", "gauge", "Share of time a kernel ran on the GPU (NVML).", "host,rank,gpu"},
      {"fathom_gpu_sm_active_ratio", "gauge", "Share of SMs active (SM activity), where the engine measures it.", "host,rank,gpu"},
      {"fathom_gpu_memory_used_bytes", "gauge", "Device memory in use, all processes (NVML).", "host,rank,gpu"},
      {"fathom_gpu_memory_total_bytes", "gauge", "Device memory size.", "host,rank,gpu"},
      {"fathom_gpu_memory_allocated_bytes", "gauge", "Memory in live tensors (CUDA caching allocator).", "host,rank,gpu"},
      {"fathom_gpu_memory_reserved_bytes", "gauge", "Memory held by the CUDA caching allocator.", "host,rank,gpu"},
      {"fathom_gpu_memory_fragmentation_ratio", "gauge", "(reserved - allocated) / reserved: cached memory not in use.", "host,rank,gpu"},
      {"fathom_gpu_temperature_celsius", "gauge", "GPU temperature.", "host,rank,gpu"},
      {"fathom_gpu_power_watts", "gauge", "GPU power draw.", "host,rank,gpu"},
      {"fathom_gpu_energy_joules_total", "counter", "GPU energy since the driver loaded (NVML total energy consumption).", "host,rank,gpu"},
      {"fathom_gpu_sm_clock_hertz", "gauge", "SM clock.", "host,rank,gpu"},
      {"fathom_gpu_memory_clock_hertz", "gauge", "Memory clock.", "host,rank,gpu"},
      {"fathom_host_cpu_utilization_ratio", "gauge", "Whole-machine CPU utilisation.", "host,rank"},
      {"fathom_host_memory_used_bytes", "gauge", "Machine RAM in use.", "host,rank"},
      {"fathom_host_memory_total_bytes", "gauge", "Machine RAM.", "host,rank"},
      {"fathom_comm_operations_total", "counter", "Collective calls, by operation (all_reduce, reduce_scatter, ...).", "host,rank,op"},
      {"fathom_comm_transferred_bytes_total", "counter", "Collective payload bytes, by operation.", "host,rank,op"},
      {"fathom_comm_duration_seconds_total", "counter", "Time spent in collectives, by operation.", "host,rank,op"},
      {"fathom_comm_bus_bandwidth_bytes_per_second", "gauge", "NCCL bus bandwidth (nccl-tests busbw) over the last interval.", "host,rank,op"},
      {"fathom_comm_algorithm_bandwidth_bytes_per_second", "gauge", "Algorithm bandwidth (bytes / time) over the last interval.", "host,rank,op"},
  };
  return f;
}

namespace {

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();
const double kCheckpointBuckets[] = {0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600};
constexpr size_t kNumBuckets = sizeof(kCheckpointBuckets) / sizeof(kCheckpointBuckets[0]);

std::string format_value(double v) {
  if (std::isnan(v)) return "NaN";
  if (std::isinf(v)) return v > 0 ? "+Inf" : "-Inf";
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.17g", v);
  // Shortest form that reads back exactly (17 digits print 0.1 as 0.10000000000000001).
  for (int p = 6; p < 17; ++p) {
    char shorter[64];
    std::snprintf(shorter, sizeof shorter, "%.*g", p, v);
    if (std::strtod(shorter, nullptr) == v) return shorter;
  }
  return buf;
}

std::string escape_label(const std::string& s) {
  std::string out;
  for (char c : s) {
    if (c == '\\') out += "\\\\";
    else if (c == '"') out += "\\\"";
    else if (c == '\n') out += "\\n";
    else out += c;
  }
  return out;
}

struct Collective {
  int64_t count = 0, bytes = 0;
  double seconds = 0, busbw = kNaN, algbw = kNaN;
};

struct Rank {
  int64_t last_t_ms = 0;
  bool have_metric = false;
  proto::MetricData metric;
  double val_loss = kNaN;
  int64_t nan_skipped = 0;
  std::map<std::string, int64_t> errors;
  // Checkpoints.
  int64_t ckpt_count = 0;
  double ckpt_sum = 0, ckpt_last = kNaN, ckpt_last_bytes = kNaN, ckpt_bytes_total = 0;
  int64_t ckpt_buckets[kNumBuckets] = {};
  // Hardware.
  bool have_system = false;
  proto::SystemData system;
  std::map<int, proto::GpuSample> gpus;
  std::map<std::string, Collective> comm;
  // Energy per token: GPU energy and the run's token count when the first energy reading came.
  double energy0 = kNaN, tokens0 = kNaN, energy_per_token = kNaN;
};

}  // namespace

struct PrometheusExporter::State {
  std::unique_ptr<proto::EventsFileReader> reader;
  std::map<int, Rank> ranks;
  std::map<std::string, int64_t> records;  // by type
  int64_t malformed_base = 0;
  double tokens_latest = kNaN;  // newest cumulative token count of any rank (all ranks together)
#ifdef FATHOM_PROMETHEUS_HTTP
  std::unique_ptr<httplib::Server> http;
#endif
};

PrometheusExporter::PrometheusExporter(PrometheusOptions options) : opt_(std::move(options)), state_(std::make_unique<State>()) {
  if (opt_.host.empty()) {
    char name[256] = {};
    opt_.host = ::gethostname(name, sizeof name - 1) == 0 ? name : "localhost";
  }
  if (!opt_.events_path.empty()) {
    state_->reader = std::make_unique<proto::EventsFileReader>(opt_.events_path);
    // Only this process's session: a resumed run's earlier records stay out of the counters.
    std::error_code ec;
    const auto size = std::filesystem::file_size(opt_.events_path, ec);
    if (!ec && size > 0) state_->reader->seek(static_cast<int64_t>(size));
  }
}

PrometheusExporter::~PrometheusExporter() { stop(); }

void PrometheusExporter::observe(const proto::Record& r) {
  if (r.rank < opt_.rank_first || r.rank >= opt_.rank_end) return;
  std::lock_guard<std::mutex> lock(mu_);
  State& s = *state_;
  s.records[r.type_name.empty() ? proto::to_string(r.type) : r.type_name]++;
  Rank& k = s.ranks[r.rank];
  k.last_t_ms = std::max(k.last_t_ms, r.t_ms);
  switch (r.type) {
    case proto::RecordType::metric: {
      k.metric = proto::as<proto::MetricData>(r);
      k.have_metric = true;
      if (k.metric.val_loss) k.val_loss = *k.metric.val_loss;
      const double t = static_cast<double>(k.metric.tokens);
      if (std::isnan(s.tokens_latest) || t > s.tokens_latest) s.tokens_latest = t;
      break;
    }
    case proto::RecordType::system: {
      k.system = proto::as<proto::SystemData>(r);
      k.have_system = true;
      double energy = 0;
      bool have_energy = false;
      for (const auto& g : k.system.gpus) {
        k.gpus[g.index] = g;
        if (g.energy_j) {
          energy += *g.energy_j;
          have_energy = true;
        }
      }
      for (const auto& c : k.system.collectives) {
        Collective& col = k.comm[c.op];
        col.count += c.count;
        col.bytes += c.bytes;
        col.seconds += c.time_ms / 1e3;
        col.busbw = c.busbw_gbps * 1e9;
        col.algbw = c.algbw_gbps * 1e9;
      }
      if (have_energy) {
        const double tokens = std::isnan(s.tokens_latest) ? 0.0 : s.tokens_latest;
        if (std::isnan(k.energy0)) {
          k.energy0 = energy;
          k.tokens0 = tokens;
        } else if (tokens > k.tokens0) {
          // Tokens count every rank; this rank's GPUs trained 1/world_size of them.
          const double rank_tokens = (tokens - k.tokens0) / std::max(1, opt_.world_size);
          k.energy_per_token = (energy - k.energy0) / rank_tokens;
        }
      }
      break;
    }
    case proto::RecordType::event: {
      const auto e = proto::as<proto::EventData>(r);
      if (e.name == proto::event_name::checkpoint_saved) {
        const double sec = e.fields.value("seconds", kNaN);
        const double bytes = e.fields.contains("bytes") && e.fields["bytes"].is_number() ? e.fields["bytes"].get<double>() : kNaN;
        if (!std::isnan(sec)) {
          k.ckpt_count++;
          k.ckpt_sum += sec;
          k.ckpt_last = sec;
          for (size_t i = 0; i < kNumBuckets; ++i)
            if (sec <= kCheckpointBuckets[i]) k.ckpt_buckets[i]++;
        }
        if (!std::isnan(bytes)) {
          k.ckpt_last_bytes = bytes;
          k.ckpt_bytes_total += bytes;
        }
      } else if (e.name == proto::event_name::nan_skipped) {
        k.nan_skipped++;
      } else if (e.name == proto::event_name::eval) {
        k.val_loss = e.fields.value("val_loss", k.val_loss);
      }
      break;
    }
    case proto::RecordType::error: {
      const auto e = proto::as<proto::ErrorData>(r);
      k.errors[e.code.empty() ? "unknown" : e.code]++;
      break;
    }
    default:
      break;
  }
}

std::string PrometheusExporter::render() {
  if (state_->reader) {
    std::vector<proto::Record> fresh;
    {
      std::lock_guard<std::mutex> lock(mu_);
      fresh = state_->reader->read_new();
    }
    for (const auto& r : fresh) observe(r);
  }
  std::lock_guard<std::mutex> lock(mu_);
  const State& s = *state_;
  std::map<std::string, std::string> body;  // family name -> sample lines
  const std::string host = "host=\"" + escape_label(opt_.host) + "\"";
  auto add = [&](const char* family, const std::string& suffix, const std::string& labels, double v) {
    if (std::isnan(v) && std::string(family).find("_total") != std::string::npos) return;
    body[family] += std::string(family) + suffix + "{" + labels + "} " + format_value(v) + "\n";
  };
  auto opt = [](const std::optional<double>& v, double scale = 1.0) { return v ? *v * scale : kNaN; };
  auto opt_i = [](const std::optional<int64_t>& v) { return v ? static_cast<double>(*v) : kNaN; };

  add("fathom_train_info", "", host + ",run=\"" + escape_label(opt_.run_id) + "\",engine_version=\"" FATHOM_VERSION "\"", 1);
  for (const auto& [type, n] : s.records) add("fathom_train_exporter_records_total", "", host + ",type=\"" + escape_label(type) + "\"", static_cast<double>(n));
  add("fathom_train_exporter_malformed_lines_total", "", host, s.reader ? static_cast<double>(s.reader->malformed_count()) : 0.0);

  for (const auto& [rank, k] : s.ranks) {
    const std::string rl = host + ",rank=\"" + std::to_string(rank) + "\"";
    add("fathom_train_last_record_timestamp_seconds", "", rl, static_cast<double>(k.last_t_ms) / 1e3);
    if (k.have_metric) {
      const auto& m = k.metric;
      add("fathom_train_step", "", rl, static_cast<double>(m.step));
      add("fathom_train_tokens_total", "", rl, static_cast<double>(m.tokens));
      add("fathom_train_loss", "", rl, m.loss);
      add("fathom_train_learning_rate", "", rl, m.lr);
      add("fathom_train_grad_norm", "", rl, m.grad_norm);
      if (m.loss_scale) add("fathom_train_loss_scale", "", rl, *m.loss_scale);
      add("fathom_train_tokens_per_second", "", rl, m.tokens_per_s);
      add("fathom_train_mfu_ratio", "", rl, m.mfu);
      add("fathom_train_step_duration_seconds", "", rl, m.step_time_s);
      const std::pair<const char*, double> phases[] = {
          {"data", m.data_s}, {"forward", m.fwd_s}, {"backward", m.bwd_s}, {"optimizer", m.opt_s}, {"comm", m.comm_s}};
      for (const auto& [phase, v] : phases) add("fathom_train_step_phase_duration_seconds", "", rl + ",phase=\"" + phase + "\"", v);
      if (auto it = m.extra.find("comm.sync_s"); it != m.extra.end()) add("fathom_train_grad_sync_duration_seconds", "", rl, it->second);
      if (auto it = m.extra.find("comm.wait_frac"); it != m.extra.end()) add("fathom_train_comm_wait_ratio", "", rl, it->second);
    }
    if (!std::isnan(k.val_loss)) add("fathom_train_validation_loss", "", rl, k.val_loss);
    if (!std::isnan(k.energy_per_token)) add("fathom_train_energy_per_token_joules", "", rl, k.energy_per_token);
    add("fathom_train_nan_skipped_total", "", rl, static_cast<double>(k.nan_skipped));
    for (const auto& [code, n] : k.errors) add("fathom_train_errors_total", "", rl + ",code=\"" + escape_label(code) + "\"", static_cast<double>(n));

    // Checkpoint histogram: cumulative buckets, +Inf = count.
    for (size_t i = 0; i < kNumBuckets; ++i)
      add("fathom_train_checkpoint_duration_seconds", "_bucket", rl + ",le=\"" + format_value(kCheckpointBuckets[i]) + "\"",
          static_cast<double>(k.ckpt_buckets[i]));
    add("fathom_train_checkpoint_duration_seconds", "_bucket", rl + ",le=\"+Inf\"", static_cast<double>(k.ckpt_count));
    add("fathom_train_checkpoint_duration_seconds", "_sum", rl, k.ckpt_sum);
    add("fathom_train_checkpoint_duration_seconds", "_count", rl, static_cast<double>(k.ckpt_count));
    if (!std::isnan(k.ckpt_last)) add("fathom_train_checkpoint_last_duration_seconds", "", rl, k.ckpt_last);
    if (!std::isnan(k.ckpt_last_bytes)) add("fathom_train_checkpoint_size_bytes", "", rl, k.ckpt_last_bytes);
    add("fathom_train_checkpoint_written_bytes_total", "", rl, k.ckpt_bytes_total);

    for (const auto& [index, g] : k.gpus) {
      const std::string gl = rl + ",gpu=\"" + std::to_string(index) + "\"";
      auto add_if = [&](const char* family, double v) {
        if (!std::isnan(v)) add(family, "", gl, v);
      };
      add_if("fathom_gpu_utilization_ratio", opt(g.util_pct, 0.01));
      add_if("fathom_gpu_sm_active_ratio", opt(g.sm_active_pct, 0.01));
      add_if("fathom_gpu_memory_used_bytes", opt_i(g.mem_used));
      add_if("fathom_gpu_memory_total_bytes", opt_i(g.mem_total));
      add_if("fathom_gpu_memory_allocated_bytes", opt_i(g.mem_allocated));
      add_if("fathom_gpu_memory_reserved_bytes", opt_i(g.mem_reserved));
      add_if("fathom_gpu_memory_fragmentation_ratio", opt(g.fragmentation_pct, 0.01));
      add_if("fathom_gpu_temperature_celsius", opt(g.temperature_c));
      add_if("fathom_gpu_power_watts", opt(g.power_w));
      add_if("fathom_gpu_energy_joules_total", opt(g.energy_j));
      add_if("fathom_gpu_sm_clock_hertz", opt(g.clock_sm_mhz, 1e6));
      add_if("fathom_gpu_memory_clock_hertz", opt(g.clock_mem_mhz, 1e6));
    }
    if (k.have_system) {
      if (k.system.cpu_util_pct) add("fathom_host_cpu_utilization_ratio", "", rl, *k.system.cpu_util_pct / 100.0);
      if (k.system.ram_used) add("fathom_host_memory_used_bytes", "", rl, static_cast<double>(*k.system.ram_used));
      if (k.system.ram_total) add("fathom_host_memory_total_bytes", "", rl, static_cast<double>(*k.system.ram_total));
    }
    for (const auto& [op, c] : k.comm) {
      const std::string ol = rl + ",op=\"" + escape_label(op) + "\"";
      add("fathom_comm_operations_total", "", ol, static_cast<double>(c.count));
      add("fathom_comm_transferred_bytes_total", "", ol, static_cast<double>(c.bytes));
      add("fathom_comm_duration_seconds_total", "", ol, c.seconds);
      add("fathom_comm_bus_bandwidth_bytes_per_second", "", ol, c.busbw);
      add("fathom_comm_algorithm_bandwidth_bytes_per_second", "", ol, c.algbw);
    }
  }

  std::ostringstream out;
  for (const auto& f : families()) {
    const auto it = body.find(f.name);
    if (it == body.end()) continue;
    out << "# HELP " << f.name << " " << f.help << "\n# TYPE " << f.name << " " << f.type << "\n" << it->second;
  }
  return out.str();
}

int PrometheusExporter::start(std::string* error) {
#ifdef FATHOM_PROMETHEUS_HTTP
  if (state_->http) return -1;
  auto http = std::make_unique<httplib::Server>();
  http->new_task_queue = [] { return new httplib::ThreadPool(2); };
  // httplib's default socket options add SO_REUSEPORT, with which a second run configured with the
  // same port would bind it too and scrapes would alternate between the two runs: not here.
  http->set_socket_options([](socket_t sock) {
    int yes = 1;
    ::setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof yes);
  });
  http->Get("/metrics", [this](const httplib::Request&, httplib::Response& res) {
    res.set_content(render(), "text/plain; version=0.0.4; charset=utf-8");
  });
  http->Get("/", [](const httplib::Request&, httplib::Response& res) {
    res.set_content("<html><body><a href=\"/metrics\">/metrics</a></body></html>\n", "text/html");
  });
  const int port = opt_.port == 0 ? http->bind_to_any_port(opt_.bind) : (http->bind_to_port(opt_.bind, opt_.port) ? opt_.port : -1);
  if (port < 0) {
    if (error)
      *error = "cannot listen on " + opt_.bind + ":" + std::to_string(opt_.port) +
               " (port in use, or not an address of this machine); set telemetry.prometheus_port to a free port";
    return -1;
  }
  state_->http = std::move(http);
  thread_ = std::thread([h = state_->http.get()] { h->listen_after_bind(); });
  return port;
#else
  if (error) *error = "this fathom-engine was built without cpp-httplib: no Prometheus endpoint";
  return -1;
#endif
}

void PrometheusExporter::stop() {
#ifdef FATHOM_PROMETHEUS_HTTP
  if (state_ && state_->http) state_->http->stop();
  if (thread_.joinable()) thread_.join();
#endif
}

std::unique_ptr<PrometheusExporter> start_prometheus(const config::TelemetryConfig& telemetry, proto::Emitter& emitter,
                                                     int world_size) {
  if (telemetry.prometheus_port <= 0) return nullptr;
  // One exporter per host: every rank here appends to the same events.jsonl, so one reader sees all.
  const char* local_rank_env = std::getenv("LOCAL_RANK");
  const int local_rank = local_rank_env ? std::atoi(local_rank_env) : emitter.rank();
  if (local_rank != 0) return nullptr;
  PrometheusOptions o;
  if (local_rank_env) {
    const char* local_world = std::getenv("LOCAL_WORLD_SIZE");
    o.rank_first = emitter.rank();
    if (local_world && std::atoi(local_world) > 0) o.rank_end = o.rank_first + std::atoi(local_world);
  }
  o.bind = telemetry.prometheus_bind.empty() ? "127.0.0.1" : telemetry.prometheus_bind;
  o.port = static_cast<int>(telemetry.prometheus_port);
  o.events_path = emitter.events_path();
  o.run_id = emitter.run_id();
  o.world_size = world_size;
  auto exporter = std::make_unique<PrometheusExporter>(o);
  std::string error;
  const int port = exporter->start(&error);
  if (port < 0) {
    emitter.emit(proto::LogData{"warn", "prometheus: " + error + "; training goes on without /metrics"});
    return nullptr;
  }
  const std::string host = o.bind == "0.0.0.0" ? "<this host>" : o.bind;
  emitter.emit(proto::LogData{"info", "prometheus: serving http://" + host + ":" + std::to_string(port) + "/metrics"});
  return exporter;
}

}  // namespace fathom::telemetry
