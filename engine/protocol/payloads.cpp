// to_json/from_json of the typed payloads. Readers go through the tolerant getters below so that a
// newer or buggy peer can never make the workbench throw: wrong types keep the default.
#include "engine/protocol/payloads.h"

#include <cmath>
#include <limits>

namespace fathom::protocol {

using nlohmann::json;

namespace {

const json* field(const json& j, const char* key) {
  const auto it = j.find(key);
  return it == j.end() ? nullptr : &*it;
}

void read(const json& j, const char* key, std::string& out) {
  if (const json* f = field(j, key); f && f->is_string()) out = f->get<std::string>();
}

// Any JSON number; null means NaN (that is how a NaN was written).
void read(const json& j, const char* key, double& out) {
  const json* f = field(j, key);
  if (!f) return;
  if (f->is_number()) out = f->get<double>();
  else if (f->is_null()) out = std::numeric_limits<double>::quiet_NaN();
}

// Integers, and floats that hold a finite value in range (a writer in another language may
// send 1e9 for 1000000000); the fraction is truncated.
template <class Int>
bool number_to_int(const json& f, Int& out) {
  constexpr auto lo = std::numeric_limits<Int>::min();
  constexpr auto hi = std::numeric_limits<Int>::max();
  if (f.is_number_unsigned()) {
    const auto u = f.get<uint64_t>();
    if (u > static_cast<uint64_t>(hi)) return false;
    out = static_cast<Int>(u);
    return true;
  }
  if (f.is_number_integer()) {
    const auto i = f.get<int64_t>();
    if (i < static_cast<int64_t>(lo) || i > static_cast<int64_t>(hi)) return false;
    out = static_cast<Int>(i);
    return true;
  }
  if (f.is_number_float()) {
    const double d = f.get<double>();
    // Two's complement: hi + 1 == -lo, a power of two that double holds exactly (2^31, 2^63).
    if (!std::isfinite(d) || d < static_cast<double>(lo) || d >= -static_cast<double>(lo)) return false;
    out = static_cast<Int>(d);
    return true;
  }
  return false;
}

void read(const json& j, const char* key, int64_t& out) {
  if (const json* f = field(j, key)) number_to_int(*f, out);
}
void read(const json& j, const char* key, int& out) {
  if (const json* f = field(j, key)) number_to_int(*f, out);
}

void read(const json& j, const char* key, std::optional<double>& out) {
  const json* f = field(j, key);
  if (!f) return;
  if (f->is_number()) out = f->get<double>();
  else if (f->is_null()) out = std::numeric_limits<double>::quiet_NaN();
}

void read(const json& j, const char* key, std::optional<int64_t>& out) {
  int64_t v = 0;
  if (const json* f = field(j, key); f && number_to_int(*f, v)) out = v;
}

void read(const json& j, const char* key, std::vector<std::string>& out) {
  const json* f = field(j, key);
  if (!f || !f->is_array()) return;
  out.clear();
  for (const auto& e : *f)
    if (e.is_string()) out.push_back(e.get<std::string>());
}

// Array of objects; non-object elements are skipped.
template <class T>
void read_objects(const json& j, const char* key, std::vector<T>& out) {
  const json* f = field(j, key);
  if (!f || !f->is_array()) return;
  out.clear();
  for (const auto& e : *f) {
    if (!e.is_object()) continue;
    T item{};
    from_json(e, item);
    out.push_back(std::move(item));
  }
}

template <class V>
void write_opt(json& j, const char* key, const std::optional<V>& v) {
  if (v) j[key] = *v;
}

}  // namespace

// ---- hello ----------------------------------------------------------------------------------------

void to_json(json& j, const DeviceInfo& d) {
  j = json{{"index", d.index}, {"kind", d.kind}, {"name", d.name}, {"memory_total", d.memory_total}};
  if (!d.uuid.empty()) j["uuid"] = d.uuid;
}

void from_json(const json& j, DeviceInfo& d) {
  if (!j.is_object()) return;
  read(j, "index", d.index);
  read(j, "kind", d.kind);
  read(j, "name", d.name);
  read(j, "memory_total", d.memory_total);
  read(j, "uuid", d.uuid);
}

void to_json(json& j, const HelloData& d) {
  j = json{{"protocol_version", d.protocol_version},
           {"engine_version", d.engine_version},
           {"torch_version", d.torch_version},
           {"command", d.command},
           {"run_dir", d.run_dir},
           {"config_hash", d.config_hash},
           {"pid", d.pid},
           {"world_size", d.world_size},
           {"capabilities", d.capabilities},
           {"devices", d.devices}};
}

void from_json(const json& j, HelloData& d) {
  if (!j.is_object()) return;
  read(j, "protocol_version", d.protocol_version);
  read(j, "engine_version", d.engine_version);
  read(j, "torch_version", d.torch_version);
  read(j, "command", d.command);
  read(j, "run_dir", d.run_dir);
  read(j, "config_hash", d.config_hash);
  read(j, "pid", d.pid);
  read(j, "world_size", d.world_size);
  read(j, "capabilities", d.capabilities);
  read_objects(j, "devices", d.devices);
}

// ---- metric ---------------------------------------------------------------------------------------

void to_json(json& j, const MetricData& d) {
  j = json{{"step", d.step},         {"tokens", d.tokens},
           {"loss", d.loss},         {"lr", d.lr},
           {"grad_norm", d.grad_norm}, {"tokens_per_s", d.tokens_per_s},
           {"mfu", d.mfu},           {"step_time_s", d.step_time_s},
           {"data_s", d.data_s},     {"fwd_s", d.fwd_s},
           {"bwd_s", d.bwd_s},       {"opt_s", d.opt_s},
           {"comm_s", d.comm_s}};
  write_opt(j, "loss_scale", d.loss_scale);
  write_opt(j, "val_loss", d.val_loss);
  if (!d.extra.empty()) j["extra"] = d.extra;
}

void from_json(const json& j, MetricData& d) {
  if (!j.is_object()) return;
  read(j, "step", d.step);
  read(j, "tokens", d.tokens);
  read(j, "loss", d.loss);
  read(j, "lr", d.lr);
  read(j, "grad_norm", d.grad_norm);
  read(j, "tokens_per_s", d.tokens_per_s);
  read(j, "mfu", d.mfu);
  read(j, "step_time_s", d.step_time_s);
  read(j, "data_s", d.data_s);
  read(j, "fwd_s", d.fwd_s);
  read(j, "bwd_s", d.bwd_s);
  read(j, "opt_s", d.opt_s);
  read(j, "comm_s", d.comm_s);
  read(j, "loss_scale", d.loss_scale);
  read(j, "val_loss", d.val_loss);
  if (const json* extra = field(j, "extra"); extra && extra->is_object()) {
    d.extra.clear();
    for (auto it = extra->begin(); it != extra->end(); ++it) {
      if (it->is_number()) d.extra[it.key()] = it->get<double>();
      else if (it->is_null()) d.extra[it.key()] = std::numeric_limits<double>::quiet_NaN();
    }
  }
}

// ---- system ---------------------------------------------------------------------------------------

void to_json(json& j, const GpuSample& d) {
  j = json{{"index", d.index}};
  write_opt(j, "util_pct", d.util_pct);
  write_opt(j, "sm_active_pct", d.sm_active_pct);
  write_opt(j, "temperature_c", d.temperature_c);
  write_opt(j, "power_w", d.power_w);
  write_opt(j, "energy_j", d.energy_j);
  write_opt(j, "clock_sm_mhz", d.clock_sm_mhz);
  write_opt(j, "clock_mem_mhz", d.clock_mem_mhz);
  write_opt(j, "fragmentation_pct", d.fragmentation_pct);
  write_opt(j, "mem_used", d.mem_used);
  write_opt(j, "mem_total", d.mem_total);
  write_opt(j, "mem_allocated", d.mem_allocated);
  write_opt(j, "mem_reserved", d.mem_reserved);
}

void from_json(const json& j, GpuSample& d) {
  if (!j.is_object()) return;
  read(j, "index", d.index);
  read(j, "util_pct", d.util_pct);
  read(j, "sm_active_pct", d.sm_active_pct);
  read(j, "temperature_c", d.temperature_c);
  read(j, "power_w", d.power_w);
  read(j, "energy_j", d.energy_j);
  read(j, "clock_sm_mhz", d.clock_sm_mhz);
  read(j, "clock_mem_mhz", d.clock_mem_mhz);
  read(j, "fragmentation_pct", d.fragmentation_pct);
  read(j, "mem_used", d.mem_used);
  read(j, "mem_total", d.mem_total);
  read(j, "mem_allocated", d.mem_allocated);
  read(j, "mem_reserved", d.mem_reserved);
}

void to_json(json& j, const CollectiveSample& d) {
  j = json{{"op", d.op},           {"algorithm", d.algorithm},   {"count", d.count},
           {"bytes", d.bytes},     {"time_ms", d.time_ms},       {"algbw_gbps", d.algbw_gbps},
           {"busbw_gbps", d.busbw_gbps}};
}

void from_json(const json& j, CollectiveSample& d) {
  if (!j.is_object()) return;
  read(j, "op", d.op);
  read(j, "algorithm", d.algorithm);
  read(j, "count", d.count);
  read(j, "bytes", d.bytes);
  read(j, "time_ms", d.time_ms);
  read(j, "algbw_gbps", d.algbw_gbps);
  read(j, "busbw_gbps", d.busbw_gbps);
}

void to_json(json& j, const SystemData& d) {
  j = json::object();
  write_opt(j, "cpu_util_pct", d.cpu_util_pct);
  write_opt(j, "ram_used", d.ram_used);
  write_opt(j, "ram_total", d.ram_total);
  j["gpus"] = d.gpus;
  j["collectives"] = d.collectives;
}

void from_json(const json& j, SystemData& d) {
  if (!j.is_object()) return;
  read(j, "cpu_util_pct", d.cpu_util_pct);
  read(j, "ram_used", d.ram_used);
  read(j, "ram_total", d.ram_total);
  read_objects(j, "gpus", d.gpus);
  read_objects(j, "collectives", d.collectives);
}

// ---- event ----------------------------------------------------------------------------------------

void to_json(json& j, const EventData& d) {
  if (d.fields.is_object()) j = d.fields;
  else if (d.fields.is_null()) j = json::object();
  else j = json{{"value", d.fields}};
  j["name"] = d.name;
}

void from_json(const json& j, EventData& d) {
  if (!j.is_object()) return;
  read(j, "name", d.name);
  d.fields = j;
  d.fields.erase("name");
}

// ---- log, error, exit -----------------------------------------------------------------------------

void to_json(json& j, const LogData& d) { j = json{{"level", d.level}, {"message", d.message}}; }

void from_json(const json& j, LogData& d) {
  if (!j.is_object()) return;
  read(j, "level", d.level);
  read(j, "message", d.message);
}

void to_json(json& j, const ErrorData& d) {
  j = json{{"code", d.code}, {"message", d.message}, {"hint", d.hint}};
}

void from_json(const json& j, ErrorData& d) {
  if (!j.is_object()) return;
  read(j, "code", d.code);
  read(j, "message", d.message);
  read(j, "hint", d.hint);
}

void to_json(json& j, const ExitData& d) {
  j = json{{"status", d.status}, {"code", d.code}, {"reason", d.reason}};
}

void from_json(const json& j, ExitData& d) {
  if (!j.is_object()) return;
  read(j, "status", d.status);
  read(j, "code", d.code);
  read(j, "reason", d.reason);
}

}  // namespace fathom::protocol
