// OpenAI-compatible HTTP service (see openai_server.h).
#include "engine/serve/openai_server.h"

#include <httplib.h>
#include <sys/resource.h>
#include <sys/socket.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <sstream>

#include "engine/data/instruct.h"
#include "engine/infer/generator.h"
#include "engine/serve/request.h"
#include "engine/telemetry/cuda_memory.h"
#include "engine/telemetry/nvml.h"

namespace fathom::serve {

using json = nlohmann::json;

namespace {

json error_body(const ApiError& e) {
  return json{{"error", {{"message", e.message}, {"type", e.type}, {"param", e.param.empty() ? json(nullptr) : json(e.param)},
                         {"code", e.code.empty() ? json(nullptr) : json(e.code)}}}};
}

// Prometheus histogram with fixed buckets.
struct Histogram {
  std::vector<double> bounds;
  std::vector<uint64_t> counts;
  double sum = 0;
  uint64_t n = 0;
  explicit Histogram(std::vector<double> b) : bounds(std::move(b)), counts(bounds.size(), 0) {}
  void observe(double v) {
    for (size_t i = 0; i < bounds.size(); ++i)
      if (v <= bounds[i]) ++counts[i];
    sum += v;
    ++n;
  }
  void write(std::ostringstream& o, const std::string& name, const std::string& help) const {
    o << "# HELP " << name << " " << help << "\n# TYPE " << name << " histogram\n";
    for (size_t i = 0; i < bounds.size(); ++i) o << name << "_bucket{le=\"" << bounds[i] << "\"} " << counts[i] << "\n";
    o << name << "_bucket{le=\"+Inf\"} " << n << "\n" << name << "_sum " << sum << "\n" << name << "_count " << n << "\n";
  }
};

// httplib hands each accepted connection to its thread pool as a job; when every thread is busy the
// job waits in an unbounded list. This pool stamps each job with the time it was queued, so that the
// first request of a connection that waited too long for a thread is refused with a deliberate 503
// (pre-routing handler below) instead of being answered after an unbounded wait.
thread_local std::chrono::steady_clock::time_point t_connection_queued;
thread_local bool t_connection_first_request = false;

class StampedThreadPool : public httplib::TaskQueue {
 public:
  explicit StampedThreadPool(size_t n) : pool_(n) {}
  void enqueue(std::function<void()> fn) override {
    const auto queued = std::chrono::steady_clock::now();
    pool_.enqueue([fn = std::move(fn), queued] {
      t_connection_queued = queued;
      t_connection_first_request = true;
      fn();
      t_connection_first_request = false;
    });
  }
  void shutdown() override { pool_.shutdown(); }

 private:
  httplib::ThreadPool pool_;
};

// A connection that waited longer than this for a thread is answered 503 + Retry-After.
constexpr std::chrono::milliseconds kMaxConnectionWait{2000};

}  // namespace

struct OpenAiServer::Impl {
  infer::LoadedModel model;
  ServerOptions opt;
  std::string chat_template;
  httplib::Server http;
  std::unique_ptr<infer::Batcher> batcher;
  std::mutex stats_mu;
  std::map<std::pair<std::string, int>, uint64_t> requests;  // (endpoint, status) → count
  uint64_t prompt_tokens = 0, completion_tokens = 0;
  Histogram latency{{0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60}};
  Histogram ttft{{0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5}};
  int64_t created = std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count();
  std::atomic<uint64_t> next_id{1};
  socket_t listen_fd = INVALID_SOCKET;  // the socket httplib bound (set through its socket-options hook)

  void count(const std::string& endpoint, int status) {
    std::lock_guard<std::mutex> g(stats_mu);
    ++requests[{endpoint, status}];
  }

  void reply_error(httplib::Response& res, const ApiError& e, const std::string& endpoint) {
    res.status = e.status;
    res.set_content(error_body(e).dump(), "application/json");
    count(endpoint, e.status);
  }

  bool authorised(const httplib::Request& req) const {
    if (opt.api_key.empty()) return true;
    const auto h = req.get_header_value("Authorization");
    return h == "Bearer " + opt.api_key;
  }

  std::vector<int64_t> chat_prompt(const std::vector<data::ChatTurn>& turns, infer::SamplingParams& p) {
    auto pieces = data::render_generation_prompt(turns, chat_template, model.tokenizer);
    auto enc = data::encode_example(pieces, model.tokenizer, 1 << 30);
    const auto eot = data::end_of_turn(chat_template);
    if (!eot.empty())
      if (auto id = model.tokenizer.token_id(eot)) p.stop_token_ids.push_back(*id);
    return enc.ids;
  }

  std::vector<int64_t> text_prompt(const std::string& text) {
    auto ids = model.tokenizer.encode(text);
    return std::vector<int64_t>(ids.begin(), ids.end());
  }

  void check_context(const std::vector<int64_t>& ids) {
    const int64_t ctx = model.net->args().max_seq_len;
    if (ids.empty()) throw bad("the prompt is empty", "prompt");
    if (static_cast<int64_t>(ids.size()) >= ctx)
      throw bad("This model's maximum context length is " + std::to_string(ctx) + " tokens; the prompt has " +
                    std::to_string(ids.size()) + " tokens.",
                "messages", "context_length_exceeded");
  }

  // -1 for the base model ("" too), else the adapter's index; 404 for an unknown name.
  int adapter_index(const std::string& name) const {
    if (name.empty() || name == opt.model_id) return -1;
    for (size_t g = 0; g < opt.adapter_names.size(); ++g)
      if (opt.adapter_names[g] == name) return static_cast<int>(g);
    std::string have = "'" + opt.model_id + "'";
    for (const auto& a : opt.adapter_names) have += ", '" + a + "'";
    throw ApiError{404, "The model '" + name + "' does not exist; this server has " + have + ".", "invalid_request_error", "model",
                   "model_not_found"};
  }

  json logprob_entry(const infer::Choice& c) {
    json e{{"token", model.tokenizer.token_bytes(static_cast<uint32_t>(c.token))}, {"logprob", c.logprob}, {"id", c.token}};
    const auto& b = model.tokenizer.token_bytes(static_cast<uint32_t>(c.token));
    e["bytes"] = std::vector<int>(b.begin(), b.end());
    json top = json::array();
    for (const auto& [id, lp] : c.top) top.push_back({{"token", model.tokenizer.token_bytes(static_cast<uint32_t>(id))}, {"logprob", lp}, {"id", id}});
    e["top_logprobs"] = top;
    return e;
  }

  void handle(const httplib::Request& req, httplib::Response& res, const std::string& endpoint) {
    const auto t0 = std::chrono::steady_clock::now();
    if (!authorised(req)) return reply_error(res, {401, "Incorrect API key provided.", "invalid_request_error", "", "invalid_api_key"}, endpoint);
    const bool chat = endpoint == "/v1/chat/completions";
    infer::SamplingParams params;
    std::vector<int64_t> ids;
    bool stream = false;
    bool logprobs = false;
    int adapter = -1;
    try {
      CompletionRequest r = parse_completion_request(req.body, chat, opt.default_max_tokens,
                                                     [&](const std::string& name) { adapter = adapter_index(name); });
      stream = r.stream;
      logprobs = r.logprobs;
      params = std::move(r.params);
      ids = chat ? chat_prompt(r.turns, params) : text_prompt(r.prompt);
      check_context(ids);
    } catch (const ApiError& e) {
      return reply_error(res, e, endpoint);
    }
    const std::string id = (chat ? "chatcmpl-" : "cmpl-") + std::to_string(next_id++);
    const int64_t created_now =
        std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count();
    auto finish_stats = [this, t0, endpoint](const infer::GenerateResult& r, int status) {
      std::lock_guard<std::mutex> g(stats_mu);
      ++requests[{endpoint, status}];
      prompt_tokens += static_cast<uint64_t>(r.prompt_tokens);
      completion_tokens += r.tokens.size();
      latency.observe(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
      if (!r.tokens.empty()) ttft.observe(r.time_to_first_token_s);
    };
    infer::Batcher::Handle h;
    try {
      h = batcher->submit(ids, params, adapter);
    } catch (const infer::QueueFull& e) {
      res.set_header("Retry-After", "1");
      return reply_error(res, {503, e.what(), "server_error", "", "server_busy"}, endpoint);
    } catch (const std::invalid_argument& e) {
      return reply_error(res, bad(e.what(), "max_tokens"), endpoint);
    }
    auto usage = [](const infer::GenerateResult& r) {
      return json{{"prompt_tokens", r.prompt_tokens}, {"completion_tokens", r.tokens.size()},
                  {"total_tokens", r.prompt_tokens + static_cast<int64_t>(r.tokens.size())}};
    };
    auto finish_reason = [](const infer::GenerateResult& r) { return r.finish_reason == "cancelled" ? std::string("stop") : r.finish_reason; };
    if (!stream) {
      const infer::GenerateResult r = batcher->wait(h);
      if (const auto err = batcher->error(h); !err.empty()) return reply_error(res, {500, err, "server_error", "", ""}, endpoint);
      json choice{{"index", 0}, {"finish_reason", finish_reason(r)}};
      if (chat) choice["message"] = {{"role", "assistant"}, {"content", r.text}};
      else choice["text"] = r.text;
      if (logprobs) {
        json content = json::array();
        for (const auto& c : r.choices) content.push_back(logprob_entry(c));
        choice["logprobs"] = chat ? json{{"content", content}} : json{{"content", content}};
      } else {
        choice["logprobs"] = nullptr;
      }
      json out{{"id", id}, {"object", chat ? "chat.completion" : "text_completion"}, {"created", created_now}, {"model", opt.model_id},
               {"choices", json::array({choice})}, {"usage", usage(r)}};
      res.set_content(out.dump(-1, ' ', false, json::error_handler_t::replace), "application/json");
      finish_stats(r, 200);
      return;
    }
    // Server-sent events, one chunk per token as OpenAI streams them.
    res.set_header("Cache-Control", "no-cache");
    res.set_chunked_content_provider("text/event-stream", [=](size_t, httplib::DataSink& sink) {
      auto send = [&sink](const json& j) {
        const std::string line = "data: " + j.dump(-1, ' ', false, json::error_handler_t::replace) + "\n\n";
        return sink.write(line.data(), line.size());
      };
      auto chunk = [&](const json& delta_or_text, const json& lp, const json& finish) {
        json choice{{"index", 0}, {"finish_reason", finish}, {"logprobs", lp}};
        if (chat) choice["delta"] = delta_or_text;
        else choice["text"] = delta_or_text;
        return json{{"id", id}, {"object", chat ? "chat.completion.chunk" : "text_completion"}, {"created", created_now},
                    {"model", opt.model_id}, {"choices", json::array({choice})}};
      };
      bool alive = true;
      if (chat) alive = send(chunk(json{{"role", "assistant"}, {"content", ""}}, nullptr, nullptr));
      infer::TokenEvent ev;
      while (batcher->next(h, &ev)) {
        if (!alive) continue;  // drain: the batcher finishes the request after cancel()
        json lp = nullptr;
        if (logprobs && ev.choice.token >= 0) lp = json{{"content", json::array({logprob_entry(ev.choice)})}};
        alive = send(chunk(chat ? json{{"content", ev.text}} : json(ev.text), lp, nullptr));
        if (!alive) batcher->cancel(h);  // a disconnected client frees its slot
      }
      const infer::GenerateResult r = batcher->wait(h);
      // Statistics are recorded before the stream's end reaches the client, so that a /metrics scrape
      // made as soon as the response is complete counts this request.
      if (const auto err = batcher->error(h); !err.empty()) {
        if (alive) send(error_body({500, err, "server_error", "", ""}));
        finish_stats(r, 500);
        sink.done();
        return false;
      }
      if (alive) {
        json last = chunk(chat ? json::object() : json(""), nullptr, finish_reason(r));
        last["usage"] = usage(r);
        send(last);
        const std::string done = "data: [DONE]\n\n";
        sink.write(done.data(), done.size());
      }
      finish_stats(r, alive ? 200 : 499);
      if (alive) sink.done();
      return alive;
    },
    // Released when the response ends or the connection is gone (even before the first byte).
    [b = batcher.get(), h](bool) { b->cancel(h); });
  }

  // The serving GPU, as train's exporter names it (engine/telemetry/prometheus.cpp), plus energy per
  // generated token from NVML's energy counter since the server started.
  std::optional<double> energy_at_start;
  void write_gpu_metrics(std::ostream& o) {
    const auto dev = model.net->parameters().front().device();
    if (!dev.is_cuda()) return;
    auto& nvml = telemetry::Nvml::instance();
    const int idx = dev.index();
    const std::string l = "{gpu=\"" + std::to_string(idx) + "\"}";
    auto gauge = [&](const char* name, const char* type, const char* help, std::optional<double> v) {
      if (v) o << "# HELP " << name << " " << help << "\n# TYPE " << name << " " << type << "\n" << name << l << " " << *v << "\n";
    };
    auto bytes = [](std::optional<int64_t> v) { return v ? std::optional<double>(static_cast<double>(*v)) : std::nullopt; };
    auto ratio = [](std::optional<double> v) { return v ? std::optional<double>(*v / 100.0) : std::nullopt; };
    if (nvml.available()) {
      const auto n = nvml.sample(idx);
      gauge("fathom_gpu_utilization_ratio", "gauge", "Share of time a kernel ran on the GPU (NVML).", ratio(n.util_pct));
      gauge("fathom_gpu_sm_active_ratio", "gauge", "Share of SMs active since the previous scrape (NVML GPM).", ratio(nvml.gpm(idx).sm_active_pct));
      gauge("fathom_gpu_memory_used_bytes", "gauge", "Device memory in use, all processes (NVML).", bytes(n.mem_used));
      gauge("fathom_gpu_memory_total_bytes", "gauge", "Device memory size.", bytes(n.mem_total));
      gauge("fathom_gpu_power_watts", "gauge", "GPU power draw.", n.power_w);
      gauge("fathom_gpu_temperature_celsius", "gauge", "GPU temperature.", n.temperature_c);
      gauge("fathom_gpu_energy_joules_total", "counter", "GPU energy since the driver loaded (NVML).", n.energy_j);
      if (n.energy_j && energy_at_start && completion_tokens > 0)
        gauge("fathom_serve_energy_per_token_joules", "gauge", "GPU energy per generated token since the server started.",
              (*n.energy_j - *energy_at_start) / static_cast<double>(completion_tokens));
    }
    if (auto m = telemetry::cuda_memory_stats(idx)) {
      gauge("fathom_gpu_memory_allocated_bytes", "gauge", "Memory in live tensors (CUDA caching allocator).", static_cast<double>(m->allocated));
      gauge("fathom_gpu_memory_reserved_bytes", "gauge", "Memory held by the CUDA caching allocator.", static_cast<double>(m->reserved));
      gauge("fathom_gpu_memory_fragmentation_ratio", "gauge", "(reserved - allocated) / reserved: cached memory not in use.",
            m->fragmentation_pct / 100.0);
    }
  }

  std::string metrics() {
    std::ostringstream o;
    std::lock_guard<std::mutex> g(stats_mu);
    o << "# HELP fathom_requests_total HTTP requests by endpoint and status.\n# TYPE fathom_requests_total counter\n";
    for (const auto& [k, v] : requests) o << "fathom_requests_total{endpoint=\"" << k.first << "\",status=\"" << k.second << "\"} " << v << "\n";
    o << "# HELP fathom_prompt_tokens_total Prompt tokens processed.\n# TYPE fathom_prompt_tokens_total counter\n"
      << "fathom_prompt_tokens_total " << prompt_tokens << "\n";
    o << "# HELP fathom_completion_tokens_total Tokens generated.\n# TYPE fathom_completion_tokens_total counter\n"
      << "fathom_completion_tokens_total " << completion_tokens << "\n";
    const auto b = batcher->stats();
    auto gauge = [&o](const char* name, const char* help, double v) {
      o << "# HELP " << name << " " << help << "\n# TYPE " << name << " gauge\n" << name << " " << v << "\n";
    };
    auto counter = [&o](const char* name, const char* help, double v) {
      o << "# HELP " << name << " " << help << "\n# TYPE " << name << " counter\n" << name << " " << v << "\n";
    };
    gauge("fathom_requests_running", "Requests in the running batch (the batch size now).", static_cast<double>(b.running));
    gauge("fathom_requests_queued", "Requests waiting for room in the batch.", static_cast<double>(b.queued));
    gauge("fathom_batch_size_max", "Most requests decoded together (serve --max-batch).", static_cast<double>(batcher->options().max_batch));
    gauge("fathom_kv_cache_used_tokens", "KV-cache positions filled by running requests.", static_cast<double>(b.kv_tokens_used));
    gauge("fathom_kv_cache_reserved_tokens", "KV-cache positions reserved by running requests (prompt + max_tokens).",
          static_cast<double>(b.kv_tokens_reserved));
    gauge("fathom_kv_cache_budget_tokens", "KV-cache budget in positions (serve --max-kv-tokens).", static_cast<double>(b.kv_tokens_budget));
    gauge("fathom_kv_cache_bytes", "KV-cache memory allocated.", static_cast<double>(b.kv_bytes));
    gauge("fathom_kv_cache_usage_ratio", "Reserved share of the KV budget.",
          b.kv_tokens_budget ? static_cast<double>(b.kv_tokens_reserved) / static_cast<double>(b.kv_tokens_budget) : 0.0);
    counter("fathom_decode_steps_total", "Batched decode steps run.", static_cast<double>(b.decode_steps));
    counter("fathom_prefills_total", "Prompts prefilled.", static_cast<double>(b.prefills));
    // The batch size of each decode step, as a histogram.
    o << "# HELP fathom_batch_size Requests per decode step.\n# TYPE fathom_batch_size histogram\n";
    uint64_t cum = 0, total = 0;
    double sum = 0;
    for (size_t i = 0; i < b.batch_size_counts.size(); ++i) {
      total += static_cast<uint64_t>(b.batch_size_counts[i]);
      sum += static_cast<double>(i) * static_cast<double>(b.batch_size_counts[i]);
    }
    for (int64_t le : {1, 2, 4, 8, 16, 32, 64, 128, 256}) {
      cum = 0;
      for (size_t i = 0; i < b.batch_size_counts.size() && static_cast<int64_t>(i) <= le; ++i) cum += static_cast<uint64_t>(b.batch_size_counts[i]);
      o << "fathom_batch_size_bucket{le=\"" << le << "\"} " << cum << "\n";
    }
    o << "fathom_batch_size_bucket{le=\"+Inf\"} " << total << "\nfathom_batch_size_sum " << sum << "\nfathom_batch_size_count " << total << "\n";
    write_gpu_metrics(o);
    latency.write(o, "fathom_request_latency_seconds", "Time from request to last byte.");
    ttft.write(o, "fathom_time_to_first_token_seconds", "Time from request to the first generated token.");
    return o.str();
  }
};

OpenAiServer::OpenAiServer(infer::LoadedModel model, ServerOptions options) : impl_(std::make_unique<Impl>()) {
  impl_->model = std::move(model);
  impl_->opt = std::move(options);
  impl_->chat_template = data::resolve_chat_template(impl_->opt.chat_template, impl_->model.config.model.family, impl_->model.tokenizer);
  impl_->batcher = std::make_unique<infer::Batcher>(impl_->model.net, impl_->model.tokenizer, impl_->opt.batching);
  if (const auto dev = impl_->model.net->parameters().front().device(); dev.is_cuda() && telemetry::Nvml::instance().available()) {
    impl_->energy_at_start = telemetry::Nvml::instance().sample(dev.index()).energy_j;
    telemetry::Nvml::instance().gpm(dev.index());  // starts the SM-activity interval
  }
  auto* I = impl_.get();
  I->http.Get("/health", [I](const httplib::Request&, httplib::Response& res) {
    res.set_content(json{{"status", "ok"}, {"model", I->opt.model_id}}.dump(), "application/json");
    I->count("/health", 200);
  });
  I->http.Get("/v1/models", [I](const httplib::Request& req, httplib::Response& res) {
    if (!I->authorised(req)) return I->reply_error(res, {401, "Incorrect API key provided.", "invalid_request_error", "", "invalid_api_key"}, "/v1/models");
    json data = json::array({{{"id", I->opt.model_id}, {"object", "model"}, {"created", I->created}, {"owned_by", "fathom"},
                              {"max_model_len", I->model.net->args().max_seq_len}}});
    for (const auto& a : I->opt.adapter_names)
      data.push_back({{"id", a}, {"object", "model"}, {"created", I->created}, {"owned_by", "fathom"}, {"parent", I->opt.model_id},
                      {"max_model_len", I->model.net->args().max_seq_len}});
    res.set_content(json{{"object", "list"}, {"data", data}}.dump(), "application/json");
    I->count("/v1/models", 200);
  });
  I->http.Get("/metrics", [I](const httplib::Request&, httplib::Response& res) {
    res.set_content(I->metrics(), "text/plain; version=0.0.4");
  });
  I->http.Post("/v1/completions", [I](const httplib::Request& req, httplib::Response& res) { I->handle(req, res, "/v1/completions"); });
  I->http.Post("/v1/chat/completions",
               [I](const httplib::Request& req, httplib::Response& res) { I->handle(req, res, "/v1/chat/completions"); });
  // The brief's endpoint: {"prompt": "...", ...} → {"text": "..."} (the completions semantics).
  I->http.Post("/generate", [I](const httplib::Request& req, httplib::Response& res) {
    I->handle(req, res, "/v1/completions");
    if ((res.status == -1 || res.status == 200) && !res.body.empty()) {
      auto j = json::parse(res.body, nullptr, false);
      if (j.is_object() && j.contains("choices"))
        res.set_content(json{{"text", j["choices"][0]["text"]}, {"usage", j["usage"]}}.dump(), "application/json");
    }
  });
  I->http.set_error_handler([](const httplib::Request&, httplib::Response& res) {
    if (res.body.empty())
      res.set_content(error_body({res.status, "Not found or not allowed: " + std::to_string(res.status), "invalid_request_error", "", ""}).dump(),
                      "application/json");
  });
  I->http.set_payload_max_length(16 << 20);
  // A streaming request holds its connection thread while the batcher produces its tokens: the pool
  // must hold the whole batch, the queue behind it (whose overflow answers 503) and a few more for
  // /health and /metrics — httplib's default (8 threads) would cap the batch at 8.
  {
    const auto threads = static_cast<size_t>(std::min<int64_t>(I->opt.batching.max_batch + I->opt.batching.max_queue + 8, 1024));
    I->http.new_task_queue = [threads] { return new StampedThreadPool(threads); };
  }
  // More connections than threads (a flood of clients) queue for a thread; past kMaxConnectionWait
  // the server is overloaded and says so, as it does when the batcher's queue is full. /health and
  // /metrics are always answered.
  I->http.set_pre_routing_handler([I](const httplib::Request& req, httplib::Response& res) {
    if (!t_connection_first_request) return httplib::Server::HandlerResponse::Unhandled;
    t_connection_first_request = false;
    const auto waited = std::chrono::steady_clock::now() - t_connection_queued;
    if (waited <= kMaxConnectionWait || req.path == "/health" || req.path == "/metrics")
      return httplib::Server::HandlerResponse::Unhandled;
    const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(waited).count();
    const bool known = req.path == "/v1/completions" || req.path == "/v1/chat/completions" || req.path == "/generate" ||
                       req.path == "/v1/models";
    res.set_header("Retry-After", "1");
    I->reply_error(res,
                   {503, "the server is busy: this connection waited " + std::to_string(ms) + " ms for a worker thread; retry later",
                    "server_error", "", "server_busy"},
                   known ? req.path : std::string("other"));
    return httplib::Server::HandlerResponse::Handled;
  });
  // httplib's default socket options add SO_REUSEPORT: a second serve on the same port would bind
  // too and the kernel would split the requests between the two. SO_REUSEADDR alone: a port in use
  // is an error.
  // The hook also sees the socket that gets bound: bind() raises its listen backlog.
  I->http.set_socket_options([I](socket_t sock) {
    int yes = 1;
    ::setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof yes);
    I->listen_fd = sock;
  });
}

OpenAiServer::~OpenAiServer() {
  stop();
  if (impl_) impl_->batcher.reset();  // before the model and tokenizer it uses
}

int OpenAiServer::bind(std::string* error) {
  // Every connection is a descriptor: lift the soft limit to the hard one (often 1024 vs 2^20),
  // or a flood of clients ends in accept() failing with EMFILE.
  rlimit rl{};
  if (::getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    ::setrlimit(RLIMIT_NOFILE, &rl);
  }
  impl_->listen_fd = INVALID_SOCKET;
  int port = impl_->opt.port == 0 ? impl_->http.bind_to_any_port(impl_->opt.host) : (impl_->http.bind_to_port(impl_->opt.host, impl_->opt.port) ? impl_->opt.port : -1);
  if (port < 0 && error) *error = "cannot listen on " + impl_->opt.host + ":" + std::to_string(impl_->opt.port) + " (in use, or not an address of this machine)";
  // httplib 0.11 listens with a backlog of 5 (compiled into Debian's libcpp-httplib): a burst of
  // connects overflows it and the kernel drops SYNs, which clients retry only after 1, 3, 7 s.
  // listen() again on the bound socket raises the backlog (the kernel caps it at somaxconn).
  if (port >= 0 && impl_->listen_fd != INVALID_SOCKET) ::listen(impl_->listen_fd, 4096);
  return port;
}

void OpenAiServer::listen() { impl_->http.listen_after_bind(); }

void OpenAiServer::stop() {
  if (impl_) impl_->http.stop();
}

}  // namespace fathom::serve
