// Typed payloads: full round trips, optional-vs-zero, NaN, tolerant reading of missing, extra and
// wrongly typed fields, event flattening, typed access helpers, and the realistic fixture.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>

#include "engine/protocol/protocol.h"
#include "protocol/protocol_test_util.h"

using namespace fathom::protocol;
using fathom::protocol::test::fixture;
using nlohmann::json;

namespace {

template <class T>
T through_json(const T& in) {
  // Through text, as on the wire.
  return json::parse(json(in).dump()).get<T>();
}

HelloData full_hello() {
  HelloData h;
  h.protocol_version = 1;
  h.engine_version = "0.1.0";
  h.torch_version = "2.11.0";
  h.command = "train";
  h.run_dir = "/runs/a";
  h.config_hash = "abc123";
  h.pid = 987654;
  h.world_size = 8;
  h.capabilities = {"control.checkpoint", "nccl"};
  h.devices = {DeviceInfo{0, "cuda", "NVIDIA H200", 150754820096, "GPU-aa"}, DeviceInfo{1, "cpu", "EPYC", 1 << 30, ""}};
  return h;
}

MetricData full_metric() {
  MetricData m;
  m.step = 123456;
  m.tokens = 9876543210;
  m.loss = 2.345678901234;
  m.lr = 3e-4;
  m.grad_norm = 0.91;
  m.tokens_per_s = 512400.5;
  m.mfu = 0.431;
  m.step_time_s = 1.25;
  m.data_s = 0.01;
  m.fwd_s = 0.4;
  m.bwd_s = 0.7;
  m.opt_s = 0.1;
  m.comm_s = 0.04;
  m.loss_scale = 32768;
  m.val_loss = 2.5;
  m.extra = {{"moe.load.0", 0.26}, {"moe.load.3", 0.24}};
  return m;
}

SystemData full_system() {
  SystemData s;
  s.cpu_util_pct = 55.5;
  s.ram_used = int64_t{12} << 30;
  s.ram_total = int64_t{64} << 30;
  GpuSample g;
  g.index = 3;
  g.util_pct = 99;
  g.sm_active_pct = 87.5;
  g.temperature_c = 71;
  g.power_w = 612.5;
  g.energy_j = 1.5e6;
  g.clock_sm_mhz = 1980;
  g.clock_mem_mhz = 2619;
  g.fragmentation_pct = 4.2;
  g.mem_used = int64_t{120} << 30;
  g.mem_total = int64_t{141} << 30;
  g.mem_allocated = int64_t{100} << 30;
  g.mem_reserved = int64_t{110} << 30;
  s.gpus = {g, GpuSample{}};
  s.collectives = {CollectiveSample{"all_reduce", "ring", 40, int64_t{10} << 30, 85.2, 126.1, 220.7},
                   CollectiveSample{"all_gather", "", 8, 1 << 20, 0.3, 3.5, 3.0}};
  return s;
}

void expect_eq(const DeviceInfo& a, const DeviceInfo& b) {
  EXPECT_EQ(a.index, b.index);
  EXPECT_EQ(a.kind, b.kind);
  EXPECT_EQ(a.name, b.name);
  EXPECT_EQ(a.memory_total, b.memory_total);
  EXPECT_EQ(a.uuid, b.uuid);
}

void expect_eq(const HelloData& a, const HelloData& b) {
  EXPECT_EQ(a.protocol_version, b.protocol_version);
  EXPECT_EQ(a.engine_version, b.engine_version);
  EXPECT_EQ(a.torch_version, b.torch_version);
  EXPECT_EQ(a.command, b.command);
  EXPECT_EQ(a.run_dir, b.run_dir);
  EXPECT_EQ(a.config_hash, b.config_hash);
  EXPECT_EQ(a.pid, b.pid);
  EXPECT_EQ(a.world_size, b.world_size);
  EXPECT_EQ(a.capabilities, b.capabilities);
  ASSERT_EQ(a.devices.size(), b.devices.size());
  for (std::size_t i = 0; i < a.devices.size(); ++i) expect_eq(a.devices[i], b.devices[i]);
}

void expect_eq(const MetricData& a, const MetricData& b) {
  EXPECT_EQ(a.step, b.step);
  EXPECT_EQ(a.tokens, b.tokens);
  EXPECT_EQ(a.loss, b.loss);  // exact: JSON keeps 17 significant digits
  EXPECT_EQ(a.lr, b.lr);
  EXPECT_EQ(a.grad_norm, b.grad_norm);
  EXPECT_EQ(a.tokens_per_s, b.tokens_per_s);
  EXPECT_EQ(a.mfu, b.mfu);
  EXPECT_EQ(a.step_time_s, b.step_time_s);
  EXPECT_EQ(a.data_s, b.data_s);
  EXPECT_EQ(a.fwd_s, b.fwd_s);
  EXPECT_EQ(a.bwd_s, b.bwd_s);
  EXPECT_EQ(a.opt_s, b.opt_s);
  EXPECT_EQ(a.comm_s, b.comm_s);
  EXPECT_EQ(a.loss_scale, b.loss_scale);
  EXPECT_EQ(a.val_loss, b.val_loss);
  EXPECT_EQ(a.extra, b.extra);
}

void expect_eq(const GpuSample& a, const GpuSample& b) {
  EXPECT_EQ(a.index, b.index);
  EXPECT_EQ(a.util_pct, b.util_pct);
  EXPECT_EQ(a.sm_active_pct, b.sm_active_pct);
  EXPECT_EQ(a.temperature_c, b.temperature_c);
  EXPECT_EQ(a.power_w, b.power_w);
  EXPECT_EQ(a.energy_j, b.energy_j);
  EXPECT_EQ(a.clock_sm_mhz, b.clock_sm_mhz);
  EXPECT_EQ(a.clock_mem_mhz, b.clock_mem_mhz);
  EXPECT_EQ(a.fragmentation_pct, b.fragmentation_pct);
  EXPECT_EQ(a.mem_used, b.mem_used);
  EXPECT_EQ(a.mem_total, b.mem_total);
  EXPECT_EQ(a.mem_allocated, b.mem_allocated);
  EXPECT_EQ(a.mem_reserved, b.mem_reserved);
}

void expect_eq(const CollectiveSample& a, const CollectiveSample& b) {
  EXPECT_EQ(a.op, b.op);
  EXPECT_EQ(a.algorithm, b.algorithm);
  EXPECT_EQ(a.count, b.count);
  EXPECT_EQ(a.bytes, b.bytes);
  EXPECT_EQ(a.time_ms, b.time_ms);
  EXPECT_EQ(a.algbw_gbps, b.algbw_gbps);
  EXPECT_EQ(a.busbw_gbps, b.busbw_gbps);
}

void expect_eq(const SystemData& a, const SystemData& b) {
  EXPECT_EQ(a.cpu_util_pct, b.cpu_util_pct);
  EXPECT_EQ(a.ram_used, b.ram_used);
  EXPECT_EQ(a.ram_total, b.ram_total);
  ASSERT_EQ(a.gpus.size(), b.gpus.size());
  for (std::size_t i = 0; i < a.gpus.size(); ++i) expect_eq(a.gpus[i], b.gpus[i]);
  ASSERT_EQ(a.collectives.size(), b.collectives.size());
  for (std::size_t i = 0; i < a.collectives.size(); ++i) expect_eq(a.collectives[i], b.collectives[i]);
}

}  // namespace

TEST(Payloads, HelloRoundTrip) { expect_eq(full_hello(), through_json(full_hello())); }
TEST(Payloads, MetricRoundTrip) { expect_eq(full_metric(), through_json(full_metric())); }
TEST(Payloads, SystemRoundTrip) { expect_eq(full_system(), through_json(full_system())); }

TEST(Payloads, LogErrorExitRoundTrip) {
  const LogData l = through_json(LogData{"warn", "loss scale reduced to 1024"});
  EXPECT_EQ(l.level, "warn");
  EXPECT_EQ(l.message, "loss scale reduced to 1024");
  const ErrorData e = through_json(ErrorData{"config_invalid", "run.yaml:3:5 train.lr: must be > 0", "set train.lr"});
  EXPECT_EQ(e.code, "config_invalid");
  EXPECT_EQ(e.message, "run.yaml:3:5 train.lr: must be > 0");
  EXPECT_EQ(e.hint, "set train.lr");
  const ExitData x = through_json(ExitData{exit_status::killed, 137, "SIGKILL"});
  EXPECT_EQ(x.status, "killed");
  EXPECT_EQ(x.code, 137);
  EXPECT_EQ(x.reason, "SIGKILL");
}

TEST(Payloads, EventIsFlat) {
  EventData e{event_name::checkpoint_saved, json{{"step", 100}, {"path", "checkpoints/step-100"}, {"bytes", 1234}}};
  const json j = e;
  EXPECT_EQ(j, (json{{"name", "checkpoint_saved"}, {"step", 100}, {"path", "checkpoints/step-100"}, {"bytes", 1234}}));
  const EventData back = through_json(e);
  EXPECT_EQ(back.name, "checkpoint_saved");
  EXPECT_EQ(back.fields, e.fields);
  EXPECT_FALSE(back.fields.contains("name"));
}

TEST(Payloads, EventNameWinsOverAFieldCalledName) {
  const json j = EventData{"eval", json{{"name", "shadow"}, {"step", 1}}};
  EXPECT_EQ(j["name"], "eval");
  const json k = EventData{"x", json::array({1})};
  EXPECT_EQ(k, (json{{"name", "x"}, {"value", json::array({1})}}));
}

TEST(Payloads, AbsentOptionalsAreOmittedAndZeroIsKept) {
  MetricData m;
  json j = m;
  EXPECT_FALSE(j.contains("loss_scale"));
  EXPECT_FALSE(j.contains("val_loss"));
  EXPECT_FALSE(j.contains("extra"));
  m.loss_scale = 0.0;
  j = m;
  ASSERT_TRUE(j.contains("loss_scale"));
  EXPECT_EQ(through_json(m).loss_scale, std::optional<double>(0.0));
  EXPECT_FALSE(through_json(MetricData{}).loss_scale.has_value());

  const json g = GpuSample{};
  EXPECT_EQ(g, (json{{"index", 0}}));
  const json s = SystemData{};
  EXPECT_FALSE(s.contains("cpu_util_pct"));
  EXPECT_FALSE(through_json(SystemData{}).ram_used.has_value());
}

TEST(Payloads, NanSurvivesAsNull) {
  MetricData m;
  m.loss = std::numeric_limits<double>::quiet_NaN();
  m.val_loss = std::numeric_limits<double>::infinity();
  m.extra["x"] = std::numeric_limits<double>::quiet_NaN();
  const std::string text = json(m).dump();
  EXPECT_NE(text.find("\"loss\":null"), std::string::npos) << text;
  const MetricData back = json::parse(text).get<MetricData>();
  EXPECT_TRUE(std::isnan(back.loss));
  ASSERT_TRUE(back.val_loss.has_value());
  EXPECT_TRUE(std::isnan(*back.val_loss));
  EXPECT_TRUE(std::isnan(back.extra.at("x")));
}

TEST(Payloads, MissingFieldsKeepDefaults) {
  const MetricData m = json{{"step", 5}}.get<MetricData>();
  EXPECT_EQ(m.step, 5);
  EXPECT_EQ(m.tokens, 0);
  EXPECT_EQ(m.loss, 0);
  EXPECT_FALSE(m.val_loss);
  const HelloData h = json::object().get<HelloData>();
  EXPECT_EQ(h.protocol_version, kProtocolVersion);
  EXPECT_EQ(h.world_size, 1);
  const ExitData x = json{{"status", "completed"}}.get<ExitData>();
  EXPECT_EQ(x.code, 0);
}

TEST(Payloads, WrongTypesKeepDefaultsAndNeverThrow) {
  const json bad_metric = {{"step", "ten"},    {"tokens", json::array()}, {"loss", "nan"},
                           {"lr", true},       {"val_loss", "x"},         {"loss_scale", json::object()},
                           {"extra", {{"a", "str"}, {"b", 2}, {"c", nullptr}, {"d", json::array()}}}};
  MetricData m;
  ASSERT_NO_THROW(m = bad_metric.get<MetricData>());
  EXPECT_EQ(m.step, 0);
  EXPECT_EQ(m.tokens, 0);
  EXPECT_EQ(m.loss, 0);
  EXPECT_EQ(m.lr, 0);
  EXPECT_FALSE(m.val_loss);
  EXPECT_FALSE(m.loss_scale);
  ASSERT_EQ(m.extra.size(), 2u);
  EXPECT_EQ(m.extra.at("b"), 2);
  EXPECT_TRUE(std::isnan(m.extra.at("c")));

  const json bad_system = {{"cpu_util_pct", "high"},
                           {"ram_used", -1.5e300},
                           {"gpus", {1, "x", {{"index", "0"}, {"util_pct", 50}}, nullptr}},
                           {"collectives", "none"}};
  SystemData s;
  ASSERT_NO_THROW(s = bad_system.get<SystemData>());
  EXPECT_FALSE(s.cpu_util_pct);
  EXPECT_FALSE(s.ram_used);
  ASSERT_EQ(s.gpus.size(), 1u);  // only the object element
  EXPECT_EQ(s.gpus[0].index, 0);
  EXPECT_EQ(s.gpus[0].util_pct, std::optional<double>(50));
  EXPECT_TRUE(s.collectives.empty());

  HelloData h;
  const json bad_hello = {{"pid", "1"},
                          {"world_size", 1e20},
                          {"capabilities", {"a", 1, "b"}},
                          {"devices", {{{"index", 1}, {"memory_total", "big"}}}}};
  ASSERT_NO_THROW(h = bad_hello.get<HelloData>());
  EXPECT_EQ(h.pid, 0);
  EXPECT_EQ(h.world_size, 1);  // 1e20 does not fit an int
  EXPECT_EQ(h.capabilities, (std::vector<std::string>{"a", "b"}));
  ASSERT_EQ(h.devices.size(), 1u);
  EXPECT_EQ(h.devices[0].index, 1);
  EXPECT_EQ(h.devices[0].memory_total, 0);

  for (const json& not_object : {json(nullptr), json(3), json("s"), json::array({1, 2})}) {
    EXPECT_NO_THROW(not_object.get<MetricData>());
    EXPECT_NO_THROW(not_object.get<SystemData>());
    EXPECT_NO_THROW(not_object.get<EventData>());
    EXPECT_NO_THROW(not_object.get<HelloData>());
    EXPECT_NO_THROW(not_object.get<ExitData>());
  }
}

TEST(Payloads, IntegersAcceptIntegralFloatsInRange) {
  const MetricData m = json{{"step", 1e3}, {"tokens", 2.9}}.get<MetricData>();
  EXPECT_EQ(m.step, 1000);
  EXPECT_EQ(m.tokens, 2);
  EXPECT_EQ(json({{"step", 9.3e18}}).get<MetricData>().step, 0);  // beyond int64
  EXPECT_EQ(json({{"step", uint64_t{1} << 63}}).get<MetricData>().step, 0);
  EXPECT_EQ(json({{"code", -2147483648.0}}).get<ExitData>().code, std::numeric_limits<int>::min());
  EXPECT_EQ(json({{"code", 2147483648.0}}).get<ExitData>().code, 0);
}

TEST(Payloads, UnknownFieldsAreIgnored) {
  const ErrorData e = json{{"code", "x"}, {"message", "m"}, {"hint", "h"}, {"future", {{"a", 1}}}}.get<ErrorData>();
  EXPECT_EQ(e.code, "x");
  EXPECT_EQ(e.hint, "h");
}

TEST(TypedAccess, MakeRecordAsAndTryAs) {
  const Record r = make_record(full_metric());
  EXPECT_EQ(r.type, RecordType::metric);
  EXPECT_EQ(r.type_name, "metric");
  expect_eq(as<MetricData>(r), full_metric());
  ASSERT_TRUE(try_as<MetricData>(r));
  EXPECT_FALSE(try_as<LogData>(r));
  EXPECT_EQ(make_record(LogData{"info", "x"}).type, RecordType::log);
  EXPECT_EQ(make_record(ErrorData{}).type, RecordType::error);
  EXPECT_EQ(make_record(ExitData{}).type, RecordType::exit);
  EXPECT_EQ(make_record(EventData{"eval", {}}).type, RecordType::event);
  EXPECT_EQ(make_record(SystemData{}).type, RecordType::system);
  EXPECT_EQ(make_record(HelloData{}).type, RecordType::hello);
}

TEST(Fixture, RealisticRunDecodesIntoTypedPayloads) {
  EventsFileReader reader(fixture("events.jsonl"));
  const auto records = reader.read_new();
  ASSERT_EQ(records.size(), 24u);
  EXPECT_EQ(reader.malformed_count(), 0) << reader.last_error();
  int metrics = 0, checkpoints = 0;
  int64_t last_step = 0;
  double first_loss = 0, last_loss = 0;
  for (const Record& r : records) {
    EXPECT_EQ(r.run, "sotu-debug-20250114-153012");
    if (auto m = try_as<MetricData>(r)) {
      EXPECT_GT(m->step, last_step);
      last_step = m->step;
      if (metrics++ == 0) first_loss = m->loss;
      last_loss = m->loss;
      EXPECT_NEAR(m->data_s + m->fwd_s + m->bwd_s + m->opt_s + m->comm_s, m->step_time_s, 0.02);
    } else if (auto e = try_as<EventData>(r); e && e->name == event_name::checkpoint_saved) {
      ++checkpoints;
      EXPECT_GT(e->fields.value("bytes", 0), 0);
    }
  }
  EXPECT_EQ(metrics, 10);
  EXPECT_EQ(last_step, 100);
  EXPECT_EQ(checkpoints, 2);
  EXPECT_LT(last_loss, first_loss);
  EXPECT_EQ(as<HelloData>(records.front()).world_size, 2);
  EXPECT_EQ(as<ExitData>(records.back()).status, "completed");
  const SystemData s = as<SystemData>(records[7]);
  EXPECT_EQ(records[7].type, RecordType::system);
  ASSERT_EQ(s.collectives.size(), 1u);
  EXPECT_EQ(s.collectives[0].op, "all_reduce");
}
