// Prometheus /metrics: the exporter on hand-made records (values, units, labels); a real
// `fathom-engine train` with telemetry.prometheus_port scraped while it runs; a real `serve`
// scraped after requests. Every scrape goes through a strict parser of the text exposition format
// 0.0.4 below and, where Debian's promtool is installed, `promtool check metrics` (naming lint).
// Last, packaging/grafana/fathom.json: every PromQL expression names only metrics the engine exports
// (the train families, which include the GPU ones a CPU run cannot show, and the serve scrape), and
// where promtool is installed the expressions parse (`promtool check rules`).
#include <gtest/gtest.h>
#include <httplib.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>

#include <cmath>
#include <map>
#include <nlohmann/json.hpp>
#include <regex>
#include <set>

#include "engine/engine_process.h"
#include "engine/protocol/payloads.h"
#include "engine/telemetry/prometheus.h"

namespace fs = std::filesystem;
using namespace fathom::testing;
using json = nlohmann::json;
namespace proto = fathom::protocol;
using fathom::telemetry::PrometheusExporter;

namespace {

// ---- a strict parser of the text exposition format 0.0.4 -----------------------------------------
struct Sample {
  std::string name;
  std::map<std::string, std::string> labels;
  double value = 0;
};
struct Family {
  std::string type = "untyped", help;
  bool typed = false;
  std::vector<Sample> samples;
};
using Exposition = std::map<std::string, Family>;

bool is_metric_name(const std::string& s) { return std::regex_match(s, std::regex("[a-zA-Z_:][a-zA-Z0-9_:]*")); }
bool is_label_name(const std::string& s) { return std::regex_match(s, std::regex("[a-zA-Z_][a-zA-Z0-9_]*")); }

bool parse_value(const std::string& s, double* out) {
  if (s == "NaN") return *out = NAN, true;
  if (s == "+Inf" || s == "Inf") return *out = INFINITY, true;
  if (s == "-Inf") return *out = -INFINITY, true;
  if (!std::regex_match(s, std::regex("[-+]?([0-9]+\\.?[0-9]*|\\.[0-9]+)([eE][-+]?[0-9]+)?"))) return false;
  *out = std::strtod(s.c_str(), nullptr);
  return true;
}

// The family a sample belongs to: histogram/summary samples carry suffixes.
std::string family_of(const std::string& sample, const Exposition& fams) {
  for (const char* suf : {"_bucket", "_sum", "_count"}) {
    const std::string s(suf);
    if (sample.size() > s.size() && sample.compare(sample.size() - s.size(), s.size(), s) == 0) {
      const std::string base = sample.substr(0, sample.size() - s.size());
      auto it = fams.find(base);
      if (it != fams.end() && (it->second.type == "histogram" || it->second.type == "summary")) return base;
    }
  }
  return sample;
}

// Throws std::runtime_error("line N: ...") on anything the format does not allow.
Exposition parse_exposition(const std::string& text) {
  Exposition fams;
  std::set<std::string> closed;  // families whose samples ended (a family's lines must be contiguous)
  std::set<std::string> series;
  std::string current;
  int line_no = 0;
  std::istringstream in(text);
  std::string line;
  auto fail = [&](const std::string& why) { throw std::runtime_error("line " + std::to_string(line_no) + ": " + why + ": " + line); };
  auto enter = [&](const std::string& fam) {
    if (fam == current) return;
    if (closed.count(fam)) fail("family '" + fam + "' appears in two places");
    if (!current.empty()) closed.insert(current);
    current = fam;
  };
  if (!text.empty() && text.back() != '\n') throw std::runtime_error("the exposition does not end with a line feed");
  while (std::getline(in, line)) {
    ++line_no;
    if (line.empty()) continue;
    if (line[0] == '#') {
      std::istringstream ls(line.substr(1));
      std::string kw, name;
      ls >> kw >> name;
      if (kw != "HELP" && kw != "TYPE") continue;  // a comment
      if (!is_metric_name(name)) fail("bad metric name in " + kw);
      std::string rest;
      std::getline(ls, rest);
      if (!rest.empty() && rest[0] == ' ') rest.erase(0, 1);
      enter(name);
      Family& f = fams[name];
      if (kw == "HELP") {
        if (!f.help.empty()) fail("second HELP");
        for (size_t i = 0; i < rest.size(); ++i)
          if (rest[i] == '\\' && (i + 1 >= rest.size() || (rest[i + 1] != '\\' && rest[i + 1] != 'n'))) fail("bad escape in HELP");
        f.help = rest.empty() ? " " : rest;
      } else {
        static const std::set<std::string> types{"counter", "gauge", "histogram", "summary", "untyped"};
        if (!types.count(rest)) fail("unknown type");
        if (!f.samples.empty()) fail("TYPE after samples");
        if (f.typed) fail("second TYPE");
        f.type = rest;
        f.typed = true;
      }
      continue;
    }
    // name{labels} value [timestamp]
    size_t i = 0;
    while (i < line.size() && line[i] != '{' && line[i] != ' ') ++i;
    Sample s;
    s.name = line.substr(0, i);
    if (!is_metric_name(s.name)) fail("bad metric name");
    if (i < line.size() && line[i] == '{') {
      ++i;
      while (true) {
        if (i < line.size() && line[i] == '}') {
          ++i;
          break;
        }
        size_t j = i;
        while (j < line.size() && line[j] != '=') ++j;
        const std::string lname = line.substr(i, j - i);
        if (!is_label_name(lname) || lname.rfind("__", 0) == 0) fail("bad label name '" + lname + "'");
        if (j + 1 >= line.size() || line[j + 1] != '"') fail("label value not quoted");
        std::string v;
        size_t k = j + 2;
        for (; k < line.size() && line[k] != '"'; ++k) {
          if (line[k] == '\\') {
            if (++k >= line.size()) fail("dangling escape");
            if (line[k] == 'n') v += '\n';
            else if (line[k] == '\\' || line[k] == '"') v += line[k];
            else fail("bad escape in label value");
          } else {
            v += line[k];
          }
        }
        if (k >= line.size()) fail("unterminated label value");
        if (!s.labels.emplace(lname, v).second) fail("label '" + lname + "' twice");
        i = k + 1;
        if (i < line.size() && line[i] == ',') ++i;
        else if (i >= line.size() || line[i] != '}') fail("expected , or }");
      }
    }
    if (i >= line.size() || line[i] != ' ') fail("expected a space before the value");
    std::istringstream vs(line.substr(i + 1));
    std::string value, ts, extra;
    vs >> value >> ts >> extra;
    if (!extra.empty()) fail("trailing text");
    if (!parse_value(value, &s.value)) fail("bad value '" + value + "'");
    if (!ts.empty() && !std::regex_match(ts, std::regex("-?[0-9]+"))) fail("bad timestamp");
    const std::string fam = family_of(s.name, fams);
    enter(fam);
    Family& f = fams[fam];
    std::string key = s.name + "{";
    for (const auto& [k, v] : s.labels) key += k + "=" + v + ",";
    if (!series.insert(key).second) fail("duplicate series");
    if (f.type == "counter" && !(s.value >= 0)) fail("counter below zero or NaN");
    if (f.type == "histogram") {
      if (s.name == fam + "_bucket" && !s.labels.count("le")) fail("bucket without le");
      if (s.name == fam) fail("histogram sample without suffix");
    }
    f.samples.push_back(s);
  }
  // Histograms: per label set, le ascending, counts cumulative, +Inf bucket = _count.
  for (const auto& [name, f] : fams) {
    if (f.samples.empty()) throw std::runtime_error("family " + name + " has HELP/TYPE but no samples");
    if (f.type != "histogram") continue;
    std::map<std::map<std::string, std::string>, std::vector<std::pair<double, double>>> buckets;
    std::map<std::map<std::string, std::string>, double> counts;
    for (const auto& s : f.samples) {
      auto l = s.labels;
      if (s.name == name + "_bucket") {
        double le;
        if (!parse_value(l["le"], &le)) throw std::runtime_error(name + ": bad le '" + l["le"] + "'");
        l.erase("le");
        buckets[l].push_back({le, s.value});
      } else if (s.name == name + "_count") {
        counts[l] = s.value;
      }
    }
    for (const auto& [l, b] : buckets) {
      for (size_t i = 1; i < b.size(); ++i)
        if (!(b[i].first > b[i - 1].first) || b[i].second < b[i - 1].second)
          throw std::runtime_error(name + ": buckets not ascending or not cumulative");
      if (b.empty() || !std::isinf(b.back().first)) throw std::runtime_error(name + ": no +Inf bucket");
      if (!counts.count(l) || counts[l] != b.back().second) throw std::runtime_error(name + ": +Inf bucket != _count");
    }
  }
  return fams;
}

// A value by family and labels (a subset match); NaN when absent.
double value_of(const Exposition& e, const std::string& sample, const std::map<std::string, std::string>& want = {}) {
  const auto it = e.find(family_of(sample, e));
  if (it == e.end()) return NAN;
  for (const auto& s : it->second.samples) {
    if (s.name != sample) continue;
    bool ok = true;
    for (const auto& [k, v] : want) ok = ok && s.labels.count(k) && s.labels.at(k) == v;
    if (ok) return s.value;
  }
  return NAN;
}

// `promtool check metrics` where Debian's prometheus package is installed: "" when clean or absent.
std::string promtool_lint(const std::string& text, const std::string& dir) {
  if (std::system("command -v promtool >/dev/null 2>&1") != 0) return "";
  write_text(dir + "/scrape.txt", text);
  const std::string cmd = "promtool check metrics < " + dir + "/scrape.txt > " + dir + "/promtool.txt 2>&1";
  const int rc = std::system(cmd.c_str());
  return rc == 0 ? "" : read_text(dir + "/promtool.txt");
}

int free_port() {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = 0;
  bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a);
  socklen_t n = sizeof a;
  getsockname(fd, reinterpret_cast<sockaddr*>(&a), &n);
  close(fd);
  return ntohs(a.sin_port);
}

proto::Record stamped(proto::Record r, int rank, int64_t t_ms) {
  r.rank = rank;
  r.t_ms = t_ms;
  r.type_name = proto::to_string(r.type);
  return r;
}

std::string tiny_yaml(const std::string& dir, int64_t steps, int64_t save_every, const std::string& extra) {
  std::ostringstream y;
  y << "extends: debug-tiny\n"
    << "run: {name: prom, seed: 3, device: cpu, threads: 1, workspace: " << dir << "/ws}\n"
    << "data: {train: [" << FATHOM_FIXTURES_DIR << "/corpus], seq_len: 32, shards_dir: " << dir << "/data}\n"
    << "tokenizer: {kind: bpe, vocab_size: 384, path: ''}\n"
    << "model: {d_model: 64, n_layers: 2, n_heads: 4, max_seq_len: 64}\n"
    << "train: {micro_batch_size: 8, max_steps: " << steps << ", log_interval: 1, eval_interval: 0, sample_interval: 0}\n"
    << "checkpoint: {save_every_steps: " << save_every << ", save_interval: 0, keep_n_latest: 2}\n"
    << extra;
  return y.str();
}

// Names seen by the scrapes, for the dashboard check (filled by the tests that scrape).
std::set<std::string>& scraped_names() {
  static std::set<std::string> s;
  return s;
}

}  // namespace

// ---- the parser itself rejects what the format forbids -------------------------------------------
TEST(PrometheusParser, RejectsMalformedText) {
  EXPECT_NO_THROW(parse_exposition("# HELP a_total x\n# TYPE a_total counter\na_total{l=\"q\\\"\\n\\\\\"} 1 1700000000000\n"));
  for (const char* bad : {"a 1", "a{l=\"x\"} 1\n# TYPE a gauge\n", "a{l=x} 1\n", "1a 1\n", "a{__x=\"1\"} 1\n",
                          "a 1\nb 1\na 2\n", "a 1\na 1\n", "a one\n", "# TYPE a counter\na -1\n",
                          "# TYPE h histogram\nh_bucket{le=\"1\"} 2\nh_bucket{le=\"+Inf\"} 1\nh_count 1\nh_sum 0\n",
                          "# TYPE h histogram\nh_bucket{le=\"1\"} 1\nh_count 1\nh_sum 0\n", "# TYPE a gauge\n"})
    EXPECT_THROW(parse_exposition(bad), std::runtime_error) << bad;
}

// ---- the exporter on hand-made records ------------------------------------------------------------
TEST(PrometheusExporter, RecordsBecomeConventionalMetrics) {
  fathom::telemetry::PrometheusOptions o;
  o.host = "node-a";
  o.run_id = "r1";
  o.world_size = 2;
  PrometheusExporter ex(o);
  proto::GpuSample g;
  g.util_pct = 87.5;
  g.sm_active_pct = 60;
  g.mem_used = int64_t{80} << 30;
  g.mem_total = int64_t{141} << 30;
  g.mem_allocated = int64_t{60} << 30;
  g.mem_reserved = int64_t{64} << 30;
  g.fragmentation_pct = 6.25;
  g.power_w = 650;
  g.temperature_c = 55;
  g.clock_sm_mhz = 1980;
  auto system = [&](int rank, double energy_j, bool comm) {
    proto::SystemData s;
    g.index = rank;
    g.energy_j = energy_j;
    s.gpus.push_back(g);
    if (comm) {
      proto::CollectiveSample c;
      c.op = "all_reduce";
      c.count = 4;
      c.bytes = 1 << 20;
      c.time_ms = 2;
      c.busbw_gbps = 300;
      s.collectives.push_back(c);
    }
    return proto::make_record(s);
  };
  auto metric = [](int64_t step, int64_t tokens) {
    proto::MetricData m;
    m.step = step;
    m.tokens = tokens;
    m.loss = 2.5;
    m.tokens_per_s = 1.5e5;
    m.mfu = 0.41;
    m.step_time_s = 0.2;
    m.fwd_s = 0.05;
    m.extra["comm.sync_s"] = 0.004;
    return proto::make_record(m);
  };
  // Both ranks' first energy readings (at 0 tokens), 20000 tokens (all ranks), 50 J more each.
  for (int rank : {0, 1}) ex.observe(stamped(system(rank, 1000.0, false), rank, 1000));
  for (int rank : {0, 1}) ex.observe(stamped(metric(10, 20000), rank, 2000));
  for (int rank : {0, 1}) ex.observe(stamped(system(rank, 1050.0, true), rank, 3000));
  // Rank 0 goes on: 40000 tokens, 100 J since its first reading.
  ex.observe(stamped(metric(20, 40000), 0, 3500));
  ex.observe(stamped(system(0, 1100.0, false), 0, 4000));
  ex.observe(stamped(proto::make_record(proto::EventData{"checkpoint_saved", {{"step", 20}, {"seconds", 0.7}, {"bytes", 123456789}}}), 0, 5000));
  ex.observe(stamped(proto::make_record(proto::ErrorData{"checkpoint_failed", "disk full", ""}), 1, 5000));

  const std::string text = ex.render();
  Exposition e;
  ASSERT_NO_THROW(e = parse_exposition(text)) << text;
  const std::map<std::string, std::string> r0{{"host", "node-a"}, {"rank", "0"}}, r1{{"host", "node-a"}, {"rank", "1"}};
  EXPECT_EQ(value_of(e, "fathom_train_info", {{"run", "r1"}}), 1);
  EXPECT_EQ(value_of(e, "fathom_train_tokens_total", r1), 20000);
  EXPECT_EQ(e["fathom_train_tokens_total"].type, "counter");
  EXPECT_DOUBLE_EQ(value_of(e, "fathom_train_mfu_ratio", r0), 0.41);
  EXPECT_DOUBLE_EQ(value_of(e, "fathom_train_step_phase_duration_seconds", {{"rank", "0"}, {"phase", "forward"}}), 0.05);
  EXPECT_DOUBLE_EQ(value_of(e, "fathom_train_grad_sync_duration_seconds", r1), 0.004);
  EXPECT_DOUBLE_EQ(value_of(e, "fathom_gpu_utilization_ratio", {{"rank", "1"}, {"gpu", "1"}}), 0.875);
  EXPECT_DOUBLE_EQ(value_of(e, "fathom_gpu_memory_fragmentation_ratio", {{"gpu", "0"}}), 0.0625);
  EXPECT_DOUBLE_EQ(value_of(e, "fathom_gpu_sm_clock_hertz", {{"gpu", "0"}}), 1.98e9);
  EXPECT_EQ(value_of(e, "fathom_gpu_memory_reserved_bytes", {{"gpu", "0"}}), double(int64_t{64} << 30));
  EXPECT_DOUBLE_EQ(value_of(e, "fathom_comm_bus_bandwidth_bytes_per_second", {{"rank", "1"}, {"op", "all_reduce"}}), 3e11);
  EXPECT_EQ(value_of(e, "fathom_comm_transferred_bytes_total", {{"rank", "0"}, {"op", "all_reduce"}}), 1 << 20);
  // Rank 1: 50 J over 20000 / 2 tokens; rank 0 at its last reading: 100 J over 40000 / 2.
  EXPECT_DOUBLE_EQ(value_of(e, "fathom_train_energy_per_token_joules", r1), 50.0 / 10000);
  EXPECT_DOUBLE_EQ(value_of(e, "fathom_train_energy_per_token_joules", r0), 100.0 / 20000);
  EXPECT_EQ(value_of(e, "fathom_train_checkpoint_duration_seconds_count", r0), 1);
  EXPECT_EQ(value_of(e, "fathom_train_checkpoint_duration_seconds_bucket", {{"rank", "0"}, {"le", "0.5"}}), 0);
  EXPECT_EQ(value_of(e, "fathom_train_checkpoint_duration_seconds_bucket", {{"rank", "0"}, {"le", "1"}}), 1);
  EXPECT_EQ(value_of(e, "fathom_train_checkpoint_size_bytes", r0), 123456789);
  EXPECT_EQ(value_of(e, "fathom_train_errors_total", {{"rank", "1"}, {"code", "checkpoint_failed"}}), 1);
  // Every family written is in families() with that type, and families() names are conventional.
  std::map<std::string, std::string> declared;
  for (const auto& f : PrometheusExporter::families()) {
    declared[f.name] = f.type;
    const std::string n = f.name;
    EXPECT_TRUE(is_metric_name(n) && n.rfind("fathom_", 0) == 0) << n;
    EXPECT_EQ(std::string(f.type) == "counter", n.size() > 6 && n.compare(n.size() - 6, 6, "_total") == 0) << n;
  }
  for (const auto& [name, f] : e) EXPECT_EQ(declared[name], f.type) << name;
  const std::string dir = make_temp_dir("prom-unit");
  EXPECT_EQ(promtool_lint(text, dir), "") << text;
  fs::remove_all(dir);
}

// A run directory shared by several hosts: each host's exporter shows only its own ranks.
TEST(PrometheusExporter, ExportsOnlyThisHostsRanks) {
  fathom::telemetry::PrometheusOptions o;
  o.host = "node-b";
  o.rank_first = 2;
  o.rank_end = 4;
  PrometheusExporter ex(o);
  for (int rank = 0; rank < 6; ++rank) {
    proto::MetricData m;
    m.step = 5;
    m.loss = 1.0 + rank;
    ex.observe(stamped(proto::make_record(m), rank, 1000));
  }
  Exposition e;
  ASSERT_NO_THROW(e = parse_exposition(ex.render()));
  std::set<std::string> ranks;
  for (const auto& s : e["fathom_train_loss"].samples) ranks.insert(s.labels.at("rank"));
  EXPECT_EQ(ranks, (std::set<std::string>{"2", "3"}));
  EXPECT_EQ(value_of(e, "fathom_train_loss", {{"host", "node-b"}, {"rank", "3"}}), 4.0);
}

// The records of a real H200 run (tests/ui/fixtures), appended to an events file the exporter
// follows: only what came after it started is exported, and the GPU series appear.
TEST(PrometheusExporter, FollowsTheEventsFileOfARealGpuRun) {
  const std::string dir = make_temp_dir("prom-follow");
  const std::string events = dir + "/events.jsonl";
  write_text(events, "{\"v\":1,\"type\":\"metric\",\"run\":\"old\",\"rank\":0,\"seq\":1,\"t\":1,\"data\":{\"step\":99,\"loss\":9}}\n");
  fathom::telemetry::PrometheusOptions o;
  o.events_path = events;
  o.host = "h200";
  PrometheusExporter ex(o);
  const std::string fixture = read_text(std::string(FATHOM_FIXTURES_DIR) + "/../ui/fixtures/gpu_debug_tiny_h200.jsonl");
  ASSERT_FALSE(fixture.empty());
  const size_t half = fixture.find('\n', fixture.size() / 2) + 1;
  std::ofstream(events, std::ios::app) << fixture.substr(0, half);
  Exposition e;
  ASSERT_NO_THROW(e = parse_exposition(ex.render()));
  const double step_half = value_of(e, "fathom_train_step");
  EXPECT_GT(step_half, 0);
  EXPECT_NE(step_half, 99) << "a record from before the exporter started was exported";
  std::ofstream(events, std::ios::app) << fixture.substr(half);
  const std::string text = ex.render();
  ASSERT_NO_THROW(e = parse_exposition(text)) << text;
  EXPECT_GT(value_of(e, "fathom_train_step"), step_half);
  const std::map<std::string, std::string> g0{{"host", "h200"}, {"rank", "0"}, {"gpu", "0"}};
  EXPECT_GT(value_of(e, "fathom_gpu_energy_joules_total", g0), 0) << text;
  EXPECT_EQ(value_of(e, "fathom_gpu_memory_total_bytes", g0), 150754820096.0);
  EXPECT_GE(value_of(e, "fathom_gpu_utilization_ratio", g0), 0);
  EXPECT_LE(value_of(e, "fathom_gpu_utilization_ratio", g0), 1);
  // Joules per token on an H200 training a tiny model: well above 0, well below 1.
  const double ept = value_of(e, "fathom_train_energy_per_token_joules", {{"rank", "0"}});
  EXPECT_GT(ept, 1e-6) << text;
  EXPECT_LT(ept, 1.0) << text;
  EXPECT_EQ(value_of(e, "fathom_train_exporter_malformed_lines_total"), 0);
  EXPECT_EQ(promtool_lint(text, dir), "") << text;
  fs::remove_all(dir);
}

// ---- a real training run, scraped while it runs -------------------------------------------------------
TEST(PrometheusTrain, RealRunIsScrapedAndParses) {
  const std::string dir = make_temp_dir("prom-train");
  const int port = free_port();
  write_text(dir + "/run.yaml", tiny_yaml(dir, 100000, 3,
                                          "telemetry: {prometheus_port: " + std::to_string(port) + ", system_interval_s: 0.2}\n"));
  Child c = Child::spawn({engine_bin(), "train", dir + "/run.yaml", "--run-dir", dir + "/run"}, dir + "/stdout.txt", dir + "/stderr.txt");
  httplib::Client http("127.0.0.1", port);
  http.set_connection_timeout(2);
  std::string text;
  Exposition e;
  // Until the run has logged steps and written two checkpoints (the histogram then has a count).
  for (int i = 0; i < 1200; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    if (waitpid(c.pid, nullptr, WNOHANG) == c.pid) {
      c.pid = -1;
      break;
    }
    auto r = http.Get("/metrics");
    if (!r || r->status != 200) continue;
    text = r->body;
    e = parse_exposition(text);
    if (value_of(e, "fathom_train_checkpoint_duration_seconds_count") >= 2 && !std::isnan(value_of(e, "fathom_host_memory_used_bytes"))) break;
  }
  ASSERT_GT(c.pid, 0) << "the run ended before it could be scraped:\n" << read_text(dir + "/stderr.txt");
  kill(c.pid, SIGTERM);
  EXPECT_EQ(c.wait(120), 0) << read_text(dir + "/stderr.txt");
  ASSERT_FALSE(text.empty()) << "no scrape answered on port " << port << "\n" << read_text(dir + "/run/events.jsonl");
  ASSERT_NO_THROW(e = parse_exposition(text)) << text;
  const std::map<std::string, std::string> r0{{"rank", "0"}};
  EXPECT_EQ(value_of(e, "fathom_train_info"), 1) << text;
  EXPECT_GT(value_of(e, "fathom_train_step", r0), 0) << text;
  EXPECT_GT(value_of(e, "fathom_train_tokens_total", r0), 0);
  EXPECT_GT(value_of(e, "fathom_train_loss", r0), 0);
  EXPECT_GT(value_of(e, "fathom_train_tokens_per_second", r0), 0);
  EXPECT_GE(value_of(e, "fathom_train_mfu_ratio", r0), 0);
  EXPECT_GT(value_of(e, "fathom_train_step_duration_seconds", r0), 0);
  EXPECT_GE(value_of(e, "fathom_train_checkpoint_duration_seconds_count", r0), 2);
  EXPECT_GT(value_of(e, "fathom_train_checkpoint_size_bytes", r0), 0);
  EXPECT_GT(value_of(e, "fathom_host_memory_total_bytes", r0), 0);
  // The log record that says where /metrics is.
  EXPECT_NE(read_text(dir + "/run/events.jsonl").find("prometheus: serving http://127.0.0.1:" + std::to_string(port) + "/metrics"),
            std::string::npos);
  EXPECT_EQ(promtool_lint(text, dir), "") << text;
  for (const auto& [name, f] : e) scraped_names().insert(name);
  fs::remove_all(dir);
}

// A port that is taken is a warning, never fatal.
TEST(PrometheusTrain, BusyPortWarnsAndTrains) {
  const std::string dir = make_temp_dir("prom-busy");
  httplib::Server blocker;
  const int port = blocker.bind_to_any_port("127.0.0.1");
  ASSERT_GT(port, 0);
  write_text(dir + "/run.yaml", tiny_yaml(dir, 3, 0, "telemetry: {prometheus_port: " + std::to_string(port) + "}\n"));
  EXPECT_EQ(run_engine({"train", dir + "/run.yaml", "--run-dir", dir + "/run"}, dir), 0) << read_text(dir + "/stderr.txt");
  const std::string events = read_text(dir + "/run/events.jsonl");
  EXPECT_NE(events.find("training goes on without /metrics"), std::string::npos) << events;
  EXPECT_NE(events.find("\"completed\""), std::string::npos);
  fs::remove_all(dir);
}

// ---- serve's /metrics after real requests -------------------------------------------------------------
TEST(PrometheusServe, ScrapeParsesAndFollowsConventions) {
  const std::string dir = make_temp_dir("prom-serve");
  write_text(dir + "/base.yaml", tiny_yaml(dir, 6, 6, ""));
  ASSERT_EQ(run_engine({"train", dir + "/base.yaml", "--run-dir", dir + "/base"}, dir), 0) << read_text(dir + "/stderr.txt");
  Child s = Child::spawn({engine_bin(), "serve", dir + "/base/checkpoints/step-6", "--port", "0"}, dir + "/serve.out", dir + "/serve.err");
  int port = 0;
  for (int i = 0; i < 600 && port == 0; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    const auto out = read_text(dir + "/serve.out");
    if (out.find("listening") != std::string::npos) port = json::parse(out.substr(0, out.find('\n')))["port"].get<int>();
  }
  ASSERT_GT(port, 0) << read_text(dir + "/serve.err");
  httplib::Client http("127.0.0.1", port);
  http.set_read_timeout(60);
  ASSERT_TRUE(http.Get("/health"));
  auto g = http.Post("/generate", R"({"prompt":"The Union","max_tokens":4,"temperature":0})", "application/json");
  ASSERT_TRUE(g && g->status == 200);
  auto chat = http.Post("/v1/chat/completions", R"({"messages":[{"role":"user","content":"hi"}],"max_tokens":3,"stream":true})", "application/json");
  ASSERT_TRUE(chat && chat->status == 200);
  auto r = http.Get("/metrics");
  ASSERT_TRUE(r && r->status == 200);
  kill(s.pid, SIGTERM);
  s.wait(30);
  Exposition e;
  ASSERT_NO_THROW(e = parse_exposition(r->body)) << r->body;
  EXPECT_GE(value_of(e, "fathom_requests_total", {{"endpoint", "/v1/completions"}, {"status", "200"}}), 1) << r->body;
  EXPECT_GT(value_of(e, "fathom_completion_tokens_total"), 0);
  EXPECT_GE(value_of(e, "fathom_request_latency_seconds_count"), 2);
  for (const auto& [name, f] : e) {
    EXPECT_EQ(name.rfind("fathom_", 0), 0u) << name;
    EXPECT_EQ(f.type == "counter", name.size() > 6 && name.compare(name.size() - 6, 6, "_total") == 0) << name;
    scraped_names().insert(name);
  }
  EXPECT_EQ(promtool_lint(r->body, dir), "") << r->body;
  fs::remove_all(dir);
}

// ---- the Grafana dashboard refers only to exported metrics ---------------------------------------------

// Metric names a PromQL expression selects: identifiers that are not functions, aggregation or
// set operators, keywords, label names (inside {...} or by/without/on/ignoring/group_x (...)),
// durations or Grafana variables.
std::set<std::string> promql_metric_names(const std::string& expr) {
  static const std::set<std::string> keywords{
      "by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and", "or", "unless", "offset",
      "sum", "avg", "min", "max", "count", "stddev", "stdvar", "topk", "bottomk", "quantile", "count_values", "group",
      "inf", "nan", "Inf", "NaN"};
  static const std::set<std::string> label_clauses{"by", "without", "on", "ignoring", "group_left", "group_right"};
  std::set<std::string> names;
  size_t i = 0;
  std::string prev_word;
  while (i < expr.size()) {
    const char ch = expr[i];
    if (ch == '"' || ch == '\'' || ch == '`') {  // string literal
      const char q = ch;
      for (++i; i < expr.size() && expr[i] != q; ++i)
        if (expr[i] == '\\') ++i;
      ++i;
    } else if (ch == '{') {  // label matchers
      while (i < expr.size() && expr[i] != '}') {
        if (expr[i] == '"') {
          for (++i; i < expr.size() && expr[i] != '"'; ++i)
            if (expr[i] == '\\') ++i;
        }
        ++i;
      }
      ++i;
    } else if (ch == '[') {  // range / subquery durations
      while (i < expr.size() && expr[i] != ']') ++i;
      ++i;
    } else if (ch == '$') {  // Grafana variable: $x, ${x}, $__rate_interval
      ++i;
      if (i < expr.size() && expr[i] == '{') {
        while (i < expr.size() && expr[i] != '}') ++i;
        ++i;
      } else {
        while (i < expr.size() && (std::isalnum(static_cast<unsigned char>(expr[i])) || expr[i] == '_')) ++i;
      }
    } else if (std::isdigit(static_cast<unsigned char>(ch)) || (ch == '.' && i + 1 < expr.size() && std::isdigit(static_cast<unsigned char>(expr[i + 1])))) {
      while (i < expr.size() && (std::isalnum(static_cast<unsigned char>(expr[i])) || expr[i] == '.')) ++i;  // 1e9, 5m, 0x1f
    } else if (std::isalpha(static_cast<unsigned char>(ch)) || ch == '_' || ch == ':') {
      size_t j = i;
      while (j < expr.size() && (std::isalnum(static_cast<unsigned char>(expr[j])) || expr[j] == '_' || expr[j] == ':')) ++j;
      const std::string word = expr.substr(i, j - i);
      size_t k = j;
      while (k < expr.size() && std::isspace(static_cast<unsigned char>(expr[k]))) ++k;
      const bool call = k < expr.size() && expr[k] == '(';
      if (label_clauses.count(word) && call) {  // skip the label list
        while (k < expr.size() && expr[k] != ')') ++k;
        j = k + 1;
      } else if (!call && !keywords.count(word) && prev_word != "offset") {
        names.insert(word);
      }
      prev_word = word;
      i = j;
      continue;
    } else {
      ++i;
    }
    prev_word.clear();
  }
  return names;
}

TEST(GrafanaDashboard, QueriesReferOnlyToExportedMetrics) {
  EXPECT_EQ(promql_metric_names("sum by (rank) (rate(fathom_train_tokens_total{host=~\"$host\"}[$__rate_interval])) / on(rank) group_left fathom_x offset 5m"),
            (std::set<std::string>{"fathom_train_tokens_total", "fathom_x"}));
  EXPECT_EQ(promql_metric_names("histogram_quantile(0.95, sum by (le) (rate(fathom_request_latency_seconds_bucket[5m]))) * 1e3"),
            (std::set<std::string>{"fathom_request_latency_seconds_bucket"}));

  // Exported: every train family (GPU ones included: a CPU run cannot show them) and what the
  // real scrapes above saw (serve's families appear there).
  std::set<std::string> exported = scraped_names();
  std::map<std::string, std::string> types;
  for (const auto& f : PrometheusExporter::families()) {
    exported.insert(f.name);
    types[f.name] = f.type;
  }
  if (exported.count("fathom_requests_total") == 0)
    GTEST_SKIP() << "the serve scrape did not run (filtered out?): run the whole file";
  auto exported_sample = [&](const std::string& n) {
    if (exported.count(n)) return true;
    for (const char* suf : {"_bucket", "_sum", "_count"}) {
      const std::string s(suf);
      if (n.size() > s.size() && n.compare(n.size() - s.size(), s.size(), s) == 0 && exported.count(n.substr(0, n.size() - s.size())))
        return true;
    }
    return false;
  };

  const std::string path = std::string(FATHOM_SOURCE_DIR) + "/packaging/grafana/fathom.json";
  const json dash = json::parse(read_text(path));
  std::vector<std::string> exprs;
  std::function<void(const json&)> walk = [&](const json& j) {
    if (j.is_object()) {
      for (auto it = j.begin(); it != j.end(); ++it) {
        if (it.key() == "expr" && it->is_string()) exprs.push_back(it->get<std::string>());
        walk(*it);
      }
    } else if (j.is_array()) {
      for (const auto& x : j) walk(x);
    }
  };
  walk(dash["panels"]);
  ASSERT_GE(exprs.size(), 20u) << "fewer queries than expected in " << path;
  // Template variables: label_values(metric, label).
  for (const auto& v : dash["templating"]["list"]) {
    const std::string q = v["query"].is_object() ? v["query"].value("query", "") : v.value("query", "");
    std::smatch m;
    if (std::regex_search(q, m, std::regex("label_values\\(\\s*([a-zA-Z_:][a-zA-Z0-9_:]*)"))) {
      EXPECT_TRUE(exported_sample(m[1])) << "variable " << v.value("name", "") << " refers to " << m[1];
    }
  }
  std::ostringstream rules;
  rules << "groups:\n- name: fathom_dashboard\n  rules:\n";
  int n = 0;
  for (const auto& e : exprs) {
    const auto names = promql_metric_names(e);
    EXPECT_FALSE(names.empty()) << e;
    for (const auto& name : names) EXPECT_TRUE(exported_sample(name)) << "'" << name << "' is not a metric the engine exports, in: " << e;
    // Grafana variables replaced by values promtool can parse.
    std::string sub = std::regex_replace(e, std::regex("\\$__rate_interval|\\$__interval|\\$__range|\\$\\{__rate_interval\\}"), "1m");
    sub = std::regex_replace(sub, std::regex("\\$\\{?[a-zA-Z_]+\\}?"), "x");
    json quoted = sub;
    rules << "  - record: fathom:dashboard_query_" << n++ << "\n    expr: " << quoted.dump() << "\n";
  }
  if (std::system("command -v promtool >/dev/null 2>&1") == 0) {
    const std::string dir = make_temp_dir("prom-rules");
    write_text(dir + "/rules.yml", rules.str());
    const int rc = std::system(("promtool check rules " + dir + "/rules.yml > " + dir + "/out.txt 2>&1").c_str());
    EXPECT_EQ(rc, 0) << "a dashboard query does not parse:\n" << read_text(dir + "/out.txt") << rules.str();
    fs::remove_all(dir);
  } else {
    std::cout << "promtool not installed (Debian package prometheus): PromQL syntax not checked\n";
  }
}
