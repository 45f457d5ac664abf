// Typed payloads of the record types (the `data` object) with nlohmann to_json/from_json.
// from_json is tolerant and never throws: a missing, null or wrongly typed field keeps its default,
// unknown fields are ignored. std::optional marks fields where "absent" differs from 0; an absent
// optional is omitted from the JSON. JSON has no NaN: a NaN/inf double is written as null and a
// null read into a double gives NaN (a NaN loss is information, not a missing value).
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "engine/protocol/record.h"

namespace fathom::protocol {

// ---- hello: first record of every run, one per rank ---------------------------------------------
struct DeviceInfo {
  int index = 0;
  std::string kind;          // "cpu" | "cuda"
  std::string name;          // e.g. "NVIDIA H200"
  int64_t memory_total = 0;  // bytes
  std::string uuid;          // "GPU-..." for CUDA devices; empty for cpu
};

struct HelloData {
  int protocol_version = kProtocolVersion;
  std::string engine_version, torch_version;
  std::string command;      // train | finetune | generate | serve | bench | ...
  std::string run_dir;
  std::string config_hash;  // sha256 of the resolved config.yaml
  int64_t pid = 0;
  int world_size = 1;
  std::vector<std::string> capabilities;  // e.g. "control.sample", "cuda", "nccl"
  std::vector<DeviceInfo> devices;
};

// ---- metric: one per optimizer step (or logging interval) ---------------------------------------
struct MetricData {
  int64_t step = 0;
  int64_t tokens = 0;  // tokens seen so far (cumulative, all ranks)
  double loss = 0, lr = 0, grad_norm = 0, tokens_per_s = 0;
  double mfu = 0;  // model FLOPs utilisation as a fraction in [0, 1] (PaLM appendix B)
  // Step wall time and its split; data + fwd + bwd + opt + comm <= step_time_s (overlap aside).
  double step_time_s = 0, data_s = 0, fwd_s = 0, bwd_s = 0, opt_s = 0, comm_s = 0;
  std::optional<double> loss_scale;  // fp16 dynamic loss scaling only
  std::optional<double> val_loss;    // on steps that ran an evaluation
  std::map<std::string, double> extra;  // free-form series, e.g. "moe.load.3" (JSON: "extra":{...})
};

// ---- system: periodic hardware sample -----------------------------------------------------------
struct GpuSample {
  int index = 0;
  std::optional<double> util_pct, sm_active_pct, temperature_c, power_w, energy_j, clock_sm_mhz,
      clock_mem_mhz, fragmentation_pct;
  // Bytes. mem_used/mem_total: device view (NVML); allocated/reserved: the caching allocator's view.
  std::optional<int64_t> mem_used, mem_total, mem_allocated, mem_reserved;
};

struct CollectiveSample {
  std::string op;         // all_reduce, reduce_scatter, all_gather, broadcast, ...
  std::string algorithm;  // e.g. "ring", "tree"; empty when unknown
  int64_t count = 0;      // calls in the sample window
  int64_t bytes = 0;      // payload bytes in the window
  double time_ms = 0;
  // nccl-tests conventions: algbw = bytes / time; busbw = algbw * factor(op, world size),
  // e.g. all_reduce 2(n-1)/n.
  double algbw_gbps = 0, busbw_gbps = 0;
};

struct SystemData {
  std::optional<double> cpu_util_pct;
  std::optional<int64_t> ram_used, ram_total;  // bytes
  std::vector<GpuSample> gpus;
  std::vector<CollectiveSample> collectives;
};

// ---- event: something happened; JSON is flat: {"name": ..., ...fields} -------------------------
// A "name" key inside `fields` is dropped on write (the event name wins).
struct EventData {
  std::string name;
  nlohmann::json fields = nlohmann::json::object();
};

// Event names the engine uses, with their fields (docs/protocol.md has the full list).
namespace event_name {
constexpr const char* checkpoint_saved = "checkpoint_saved";      // step, path, seconds, bytes
constexpr const char* checkpoint_skipped = "checkpoint_skipped";  // step, reason
constexpr const char* eval = "eval";                              // step, val_loss, val_ppl
constexpr const char* sample = "sample";                          // step, prompt, text, temperature
constexpr const char* nan_skipped = "nan_skipped";                // step, consecutive
constexpr const char* resumed = "resumed";                        // step, path
constexpr const char* data_ready = "data_ready";                  // tokens, shards, ...
constexpr const char* pong = "pong";                              // answer to {"op":"ping"}
}  // namespace event_name

// ---- log, error, exit ---------------------------------------------------------------------------
struct LogData {
  std::string level;  // debug | info | warn | error
  std::string message;
};

struct ErrorData {
  std::string code;     // stable machine-readable id, e.g. "config_invalid", "cuda_oom"
  std::string message;  // what happened, where
  std::string hint;     // what to do
};

struct ExitData {
  std::string status;  // completed | stopped | failed | killed
  int code = 0;        // process exit code
  std::string reason;
};

namespace exit_status {
constexpr const char* completed = "completed";
constexpr const char* stopped = "stopped";
constexpr const char* failed = "failed";
constexpr const char* killed = "killed";
}  // namespace exit_status

void to_json(nlohmann::json& j, const DeviceInfo& d);
void from_json(const nlohmann::json& j, DeviceInfo& d);
void to_json(nlohmann::json& j, const HelloData& d);
void from_json(const nlohmann::json& j, HelloData& d);
void to_json(nlohmann::json& j, const MetricData& d);
void from_json(const nlohmann::json& j, MetricData& d);
void to_json(nlohmann::json& j, const GpuSample& d);
void from_json(const nlohmann::json& j, GpuSample& d);
void to_json(nlohmann::json& j, const CollectiveSample& d);
void from_json(const nlohmann::json& j, CollectiveSample& d);
void to_json(nlohmann::json& j, const SystemData& d);
void from_json(const nlohmann::json& j, SystemData& d);
void to_json(nlohmann::json& j, const EventData& d);
void from_json(const nlohmann::json& j, EventData& d);
void to_json(nlohmann::json& j, const LogData& d);
void from_json(const nlohmann::json& j, LogData& d);
void to_json(nlohmann::json& j, const ErrorData& d);
void from_json(const nlohmann::json& j, ErrorData& d);
void to_json(nlohmann::json& j, const ExitData& d);
void from_json(const nlohmann::json& j, ExitData& d);

// ---- typed access -------------------------------------------------------------------------------
// payload_traits<T>::type is the record type that carries T.
template <class T>
struct payload_traits;
template <> struct payload_traits<HelloData> { static constexpr RecordType type = RecordType::hello; };
template <> struct payload_traits<MetricData> { static constexpr RecordType type = RecordType::metric; };
template <> struct payload_traits<SystemData> { static constexpr RecordType type = RecordType::system; };
template <> struct payload_traits<EventData> { static constexpr RecordType type = RecordType::event; };
template <> struct payload_traits<LogData> { static constexpr RecordType type = RecordType::log; };
template <> struct payload_traits<ErrorData> { static constexpr RecordType type = RecordType::error; };
template <> struct payload_traits<ExitData> { static constexpr RecordType type = RecordType::exit; };

// Record of the matching type carrying `payload`: make_record(MetricData{...}).
template <class T>
Record make_record(const T& payload) {
  return make_record(payload_traits<T>::type, nlohmann::json(payload));
}

// The payload of `record` read as T, tolerant, never throws; does not check record.type.
//   if (rec.type == RecordType::metric) { auto m = as<MetricData>(rec); ... }
template <class T>
T as(const Record& record) {
  T out{};
  from_json(record.data, out);
  return out;
}

// As as<T>, but std::nullopt when record.type is not the type that carries T.
template <class T>
std::optional<T> try_as(const Record& record) {
  if (record.type != payload_traits<T>::type) return std::nullopt;
  return as<T>(record);
}

}  // namespace fathom::protocol
