// `fathom-engine serve` end to end: a real server process on a tiny trained model, a real HTTP
// client (cpp-httplib): models/health/metrics, greedy chat equals the concatenated stream, every
// error path answers a 4xx with an OpenAI-style body, an API key is enforced, and a client that
// disconnects mid-stream frees the model for the next request.
#include <gtest/gtest.h>
#include <httplib.h>
#include <signal.h>

#include <nlohmann/json.hpp>
#include <functional>
#include <atomic>
#include <thread>

#include "engine/engine_process.h"

namespace fs = std::filesystem;
using namespace fathom::testing;
using json = nlohmann::json;

namespace {

struct Server {
  Child child;
  int port = 0;
  std::string dir;
  json listening;  // the line serve printed when ready
  ~Server() {
    if (child.pid > 0) {
      kill(child.pid, SIGTERM);
      child.wait();
    }
  }
};

// A tiny base trained for a few steps (so the tokenizer and weights are real), then served.
std::unique_ptr<Server> start(const std::string& dir, const std::vector<std::string>& extra = {}, const char* env_key = nullptr) {
  if (!fs::exists(dir + "/base/checkpoints/step-20") && train_tiny_serving_base(dir, "srv") != 0) return nullptr;
  auto s = std::make_unique<Server>();
  s->dir = dir;
  std::vector<std::string> args{engine_bin(), "serve", dir + "/base/checkpoints/step-20", "--port", "0"};
  args.insert(args.end(), extra.begin(), extra.end());
  if (env_key) setenv("FATHOM_TEST_KEY", env_key, 1);
  s->child = Child::spawn(args, dir + "/serve.out", dir + "/serve.err");
  for (int i = 0; i < 600 && s->port == 0; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    const auto out = read_text(dir + "/serve.out");
    if (out.find("listening") != std::string::npos) {
      s->listening = json::parse(out.substr(0, out.find('\n')));
      s->port = s->listening["port"].get<int>();
    }
  }
  return s->port ? std::move(s) : nullptr;
}

json post(httplib::Client& c, const std::string& path, const std::string& body, int* status = nullptr) {
  auto r = c.Post(path, body, "application/json");
  if (!r) return json{{"transport_error", httplib::to_string(r.error())}};
  if (status) *status = r->status;
  return json::parse(r->body, nullptr, false);
}

// POST with the response body delivered in pieces as it arrives (returning false drops the
// connection, as a client that goes away mid-stream).
httplib::Result stream_post(httplib::Client& c, const std::string& path, const std::string& body,
                            std::function<bool(const char*, size_t)> on_data) {
  httplib::Request req;
  req.method = "POST";
  req.path = path;
  req.body = body;
  req.set_header("Content-Type", "application/json");
  req.content_receiver = [on_data](const char* d, size_t n, uint64_t, uint64_t) { return on_data(d, n); };
  return c.send(req);
}

}  // namespace

TEST(ServeE2E, OpenAiEndpointsStreamingAndErrors) {
  const auto dir = make_temp_dir("serve");
  auto s = start(dir);
  ASSERT_TRUE(s) << read_text(dir + "/serve.err") << read_text(dir + "/stderr.txt");
  httplib::Client c("127.0.0.1", s->port);
  c.set_read_timeout(60, 0);

  auto health = c.Get("/health");
  ASSERT_TRUE(health);
  EXPECT_EQ(health->status, 200);
  auto models = json::parse(c.Get("/v1/models")->body);
  ASSERT_EQ(models["data"].size(), 1u);
  const std::string model = models["data"][0]["id"];

  // Non-streaming greedy chat.
  const json req{{"model", model}, {"messages", {{{"role", "user"}, {"content", "Tell me about the Union."}}}}, {"max_tokens", 16}, {"temperature", 0}};
  int status = 0;
  auto full = post(c, "/v1/chat/completions", req.dump(), &status);
  ASSERT_EQ(status, 200) << full.dump();
  EXPECT_EQ(full["object"], "chat.completion");
  const std::string text = full["choices"][0]["message"]["content"];
  EXPECT_GT(full["usage"]["completion_tokens"].get<int>(), 0);

  // The same request streamed: SSE chunks whose deltas add up to the same text, then [DONE].
  json sreq = req;
  sreq["stream"] = true;
  std::string raw;
  auto sr = stream_post(c, "/v1/chat/completions", sreq.dump(), [&](const char* data, size_t n) {
    raw.append(data, n);
    return true;
  });
  ASSERT_TRUE(sr);
  std::string streamed;
  bool done = false, finished = false;
  size_t pos = 0;
  while ((pos = raw.find("data: ")) != std::string::npos) {
    const auto end = raw.find("\n\n", pos);
    ASSERT_NE(end, std::string::npos);
    const std::string payload = raw.substr(pos + 6, end - pos - 6);
    raw.erase(0, end + 2);
    if (payload == "[DONE]") {
      done = true;
      continue;
    }
    auto chunk = json::parse(payload);
    EXPECT_EQ(chunk["object"], "chat.completion.chunk");
    const auto& ch = chunk["choices"][0];
    if (ch["delta"].contains("content")) streamed += ch["delta"]["content"].get<std::string>();
    if (!ch["finish_reason"].is_null()) finished = true;
  }
  EXPECT_TRUE(done);
  EXPECT_TRUE(finished);
  EXPECT_EQ(streamed, text);

  // /v1/completions and the brief's /generate, seeded: same seed, same text.
  const json creq{{"prompt", "The Congress"}, {"max_tokens", 10}, {"seed", 42}, {"temperature", 0.8}};
  auto a = post(c, "/v1/completions", creq.dump(), &status);
  ASSERT_EQ(status, 200) << a.dump();
  auto b = post(c, "/generate", creq.dump(), &status);
  ASSERT_EQ(status, 200);
  EXPECT_EQ(a["choices"][0]["text"], b["text"]);
  auto lp = post(c, "/v1/chat/completions", json{{"messages", req["messages"]}, {"max_tokens", 3}, {"logprobs", true}, {"top_logprobs", 2}}.dump(), &status);
  ASSERT_EQ(status, 200);
  ASSERT_EQ(lp["choices"][0]["logprobs"]["content"].size(), lp["usage"]["completion_tokens"].get<size_t>());
  EXPECT_EQ(lp["choices"][0]["logprobs"]["content"][0]["top_logprobs"].size(), 2u);

  // Error paths: each a 4xx with {"error": {"message", "type", ...}}, the server still up.
  const std::vector<std::pair<std::string, int>> bad = {
      {"{not json", 400},
      {R"({"messages": "hello"})", 400},
      {R"({"messages": [{"role": "user", "content": "x"}], "temperature": "hot"})", 400},
      {R"({"messages": [{"role": "user", "content": "x"}], "top_p": 7})", 400},
      {R"({"messages": [{"role": "user", "content": "x"}], "max_tokens": -3})", 400},
      {R"({"messages": [{"role": "user", "content": "x"}], "max_tokens": 99999999999})", 400},
      {R"({"messages": [{"role": "wizard", "content": "x"}]})", 400},
      {R"({"model": "gpt-4", "messages": [{"role": "user", "content": "x"}]})", 404},
      {json{{"messages", {{{"role", "user"}, {"content", std::string(3000, 'z') + " long"}}}}}.dump(), 400},
  };
  for (const auto& [body, code] : bad) {
    auto e = post(c, "/v1/chat/completions", body, &status);
    EXPECT_EQ(status, code) << body.substr(0, 80) << " → " << e.dump();
    EXPECT_TRUE(e.contains("error") && e["error"].contains("message") && e["error"].contains("type")) << e.dump();
  }
  auto too_long = post(c, "/v1/chat/completions", bad.back().first, &status);
  EXPECT_EQ(too_long["error"]["code"], "context_length_exceeded");
  EXPECT_EQ(c.Get("/v1/nothing")->status, 404);

  // A client that drops a stream mid-way: the next request is served (the slot was freed).
  json long_stream{{"messages", req["messages"]}, {"max_tokens", 40}, {"stream", true}, {"temperature", 1.0}};
  int chunks = 0;
  auto dropped = stream_post(c, "/v1/chat/completions", long_stream.dump(), [&](const char*, size_t) { return ++chunks < 3; });
  EXPECT_FALSE(dropped);  // we cancelled it
  auto after = post(c, "/v1/chat/completions", req.dump(), &status);
  EXPECT_EQ(status, 200) << after.dump();
  EXPECT_EQ(after["choices"][0]["message"]["content"], text);

  const auto metrics = c.Get("/metrics")->body;
  EXPECT_NE(metrics.find("fathom_requests_total{endpoint=\"/v1/chat/completions\",status=\"200\"}"), std::string::npos) << metrics;
  EXPECT_NE(metrics.find("fathom_completion_tokens_total"), std::string::npos);
  EXPECT_NE(metrics.find("fathom_request_latency_seconds_bucket"), std::string::npos);
}

TEST(ServeE2E, ApiKeyIsRequiredWhenConfigured) {
  const auto dir = make_temp_dir("serve-key");
  auto s = start(dir, {"--api-key-env", "FATHOM_TEST_KEY"}, "s3cret");
  ASSERT_TRUE(s) << read_text(dir + "/serve.err");
  httplib::Client c("127.0.0.1", s->port);
  const std::string body = R"({"prompt": "The", "max_tokens": 2})";
  auto no = c.Post("/v1/completions", body, "application/json");
  ASSERT_TRUE(no);
  EXPECT_EQ(no->status, 401);
  auto yes = c.Post("/v1/completions", httplib::Headers{{"Authorization", "Bearer s3cret"}}, body, "application/json");
  ASSERT_TRUE(yes);
  EXPECT_EQ(yes->status, 200) << yes->body;
  // It listens on loopback only.
  EXPECT_EQ(s->listening["host"], "127.0.0.1") << s->listening.dump();
}

// Continuous batching through HTTP: concurrent greedy requests (some streamed) each get the answer
// they get alone; /metrics shows decode steps with more than one request; a LoRA adapter served
// beside the base answers by its name (and differs from the base), an unknown name is a 404; a
// full queue answers 503 with Retry-After.
TEST(ServeE2E, ConcurrentRequestsAreBatchedAndAdaptersAnswerByName) {
  const auto dir = make_temp_dir("serve-batch");
  // A short LoRA fine-tune of the base gives a real adapter checkpoint to serve beside it.
  {
    auto probe = start(dir);  // trains the base once (and checks it serves)
    ASSERT_TRUE(probe) << read_text(dir + "/serve.err") << read_text(dir + "/stderr.txt");
  }
  std::ostringstream y;
  y << "extends: debug-tiny\n"
    << "run: {name: ft, seed: 11, device: cpu, threads: 1, workspace: " << dir << "/ws}\n"
    << "model: {max_seq_len: 64}\n"
    << "lora: {enabled: true, base: " << dir << "/base/checkpoints/step-20, r: 8, lora_alpha: 16, dropout: 0.0, target_modules: [q_proj, v_proj]}\n"
    << "data: {task: instruct, train: [" << FATHOM_FIXTURES_DIR << "/instruct/tiny.jsonl], seq_len: 64, validation_fraction: 0.1}\n"
    << "train: {micro_batch_size: 4, max_steps: 6, log_interval: 1, eval_interval: 0, sample_interval: 0}\n"
    << "optimizer: {lr: 5.0e-2, min_lr: 1.0e-2, warmup_steps: 1}\n"
    << "checkpoint: {save_every_steps: 6, save_interval: 0, async: false}\n";
  write_text(dir + "/ft.yaml", y.str());
  ASSERT_EQ(run_engine({"finetune", dir + "/ft.yaml", "--run-dir", dir + "/ft"}, dir), 0) << read_text(dir + "/stderr.txt");
  auto s = start(dir, {"--max-batch", "4", "--max-queue", "64", "--adapter", "legal=" + dir + "/ft/checkpoints/step-6"});
  ASSERT_TRUE(s) << read_text(dir + "/serve.err");
  httplib::Client c("127.0.0.1", s->port);
  c.set_read_timeout(120, 0);
  auto models = json::parse(c.Get("/v1/models")->body);
  ASSERT_EQ(models["data"].size(), 2u) << models.dump();
  EXPECT_EQ(models["data"][1]["id"], "legal");

  const std::vector<std::string> prompts{"The Congress", "We the people", "The lessee shall", "In the year", "Our Union",
                                         "The State of", "Fellow citizens", "It is"};
  auto body = [&](size_t i, const std::string& model) {
    return json{{"model", model}, {"prompt", prompts[i]}, {"max_tokens", 12 + static_cast<int>(i) * 3}, {"temperature", 0}}.dump();
  };
  // Alone, one after the other.
  std::vector<std::string> alone;
  for (size_t i = 0; i < prompts.size(); ++i) {
    auto r = post(c, "/v1/completions", body(i, i % 3 == 1 ? "legal" : ""));
    ASSERT_TRUE(r.contains("choices")) << r.dump();
    alone.push_back(r["choices"][0]["text"]);
  }
  // Together: 8 client threads at once, every other one streaming.
  std::vector<std::string> together(prompts.size());
  std::vector<std::thread> threads;
  for (size_t i = 0; i < prompts.size(); ++i)
    threads.emplace_back([&, i] {
      httplib::Client ci("127.0.0.1", s->port);
      ci.set_read_timeout(120, 0);
      const std::string model = i % 3 == 1 ? "legal" : "";
      if (i % 2 == 0) {
        auto r = post(ci, "/v1/completions", body(i, model));
        if (r.contains("choices")) together[i] = r["choices"][0]["text"];
        return;
      }
      auto req = json::parse(body(i, model));
      req["stream"] = true;
      std::string buf, text;
      stream_post(ci, "/v1/completions", req.dump(), [&](const char* d, size_t n) {
        buf.append(d, n);
        for (size_t pos; (pos = buf.find("\n\n")) != std::string::npos; buf.erase(0, pos + 2)) {
          const auto line = buf.substr(0, pos);
          if (line.rfind("data: {", 0) != 0) continue;
          auto j = json::parse(line.substr(6), nullptr, false);
          if (j.contains("choices") && j["choices"][0]["text"].is_string()) text += j["choices"][0]["text"].get<std::string>();
        }
        return true;
      });
      together[i] = text;
    });
  for (auto& t : threads) t.join();
  for (size_t i = 0; i < prompts.size(); ++i) EXPECT_EQ(together[i], alone[i]) << "request " << i << " (" << prompts[i] << ")";
  const auto metrics = c.Get("/metrics")->body;
  // Decode steps that ran with 2+ requests: buckets le=1 < count.
  auto value = [&](const std::string& key) {
    const auto p = metrics.find("\n" + key + " ");  // the sample line, not its # HELP
    return p == std::string::npos ? -1.0 : std::stod(metrics.substr(p + key.size() + 2));
  };
  EXPECT_GT(value("fathom_batch_size_count"), value("fathom_batch_size_bucket{le=\"1\"}")) << metrics;
  EXPECT_EQ(value("fathom_requests_running"), 0.0);
  EXPECT_GT(value("fathom_kv_cache_bytes"), 0.0);

  // The adapter changes the answer of at least one prompt, and an unknown name is a 404.
  bool differs = false;
  for (size_t i = 0; i < prompts.size(); ++i) {
    auto base = post(c, "/v1/completions", body(i, ""));
    auto ad = post(c, "/v1/completions", body(i, "legal"));
    differs = differs || base["choices"][0]["text"] != ad["choices"][0]["text"];
  }
  EXPECT_TRUE(differs) << "the adapter never changed a greedy answer";
  int status = 0;
  auto nf = post(c, "/v1/completions", body(0, "nope"), &status);
  EXPECT_EQ(status, 404);
  EXPECT_EQ(nf["error"]["code"], "model_not_found");
}

TEST(ServeE2E, FullQueueAnswers503) {
  const auto dir = make_temp_dir("serve-queue");
  auto s = start(dir, {"--max-batch", "1", "--max-queue", "1"});
  ASSERT_TRUE(s) << read_text(dir + "/serve.err") << read_text(dir + "/stderr.txt");
  // 8 clients at once against room for 2 (one running, one queued): the rest must get a
  // deliberate 503 with Retry-After, nobody anything else.
  const int n = 8;  // (floods of connections are test_serve_load's: tests/reliability)
  std::vector<int> status(n, 0);
  std::vector<std::string> retry(n), code(n);
  std::vector<std::thread> threads;
  std::atomic<int> ready{0};
  for (int i = 0; i < n; ++i)
    threads.emplace_back([&, i] {
      httplib::Client ci("127.0.0.1", s->port);
      ci.set_read_timeout(120, 0);
      ++ready;
      while (ready < n) std::this_thread::yield();  // fire together
      auto r = ci.Post("/v1/completions", R"({"prompt": "The", "max_tokens": 60, "temperature": 0, "ignore_eos": true})", "application/json");
      if (!r) {
        code[i] = httplib::to_string(r.error());
        return;
      }
      status[i] = r->status;
      retry[i] = r->get_header_value("Retry-After");
      auto j = json::parse(r->body, nullptr, false);
      if (j.contains("error")) code[i] = j["error"].value("code", "");
    });
  for (auto& t : threads) t.join();
  int ok = 0, busy = 0;
  for (int i = 0; i < n; ++i) {
    EXPECT_TRUE(status[i] == 200 || status[i] == 503) << "client " << i << " got " << status[i] << " " << code[i];
    if (status[i] == 200) ++ok;
    if (status[i] == 503) {
      ++busy;
      EXPECT_EQ(retry[i], "1");
      EXPECT_EQ(code[i], "server_busy");
    }
  }
  EXPECT_GE(ok, 2);
  EXPECT_GE(busy, 1) << "8 simultaneous requests never overflowed a queue of 1";
  // And the server is fine afterwards.
  httplib::Client c("127.0.0.1", s->port);
  auto r = c.Post("/v1/completions", R"({"prompt": "The", "max_tokens": 2})", "application/json");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200);
}

// The official OpenAI Node client (npm `openai`, installed by packaging/setup.sh into
// <data cache>/npm-clients) against the real server: models.list, completions, chat non-streamed and streamed (equal
// under greedy decoding), and its error types for a 404 and a 400.
TEST(ServeE2E, OfficialOpenAiNodeClientWorks) {
  std::string data_dir;
  if (const char* d = std::getenv("FATHOM_DATA_DIR"); d && *d) data_dir = d;
  else if (const char* x = std::getenv("XDG_CACHE_HOME"); x && *x) data_dir = std::string(x) + "/fathom";
  else data_dir = std::string(std::getenv("HOME") ? std::getenv("HOME") : "/root") + "/.cache/fathom";
  const std::string module = data_dir + "/npm-clients/node_modules/openai";
  if (!fs::exists(module + "/package.json"))
    GTEST_SKIP() << "npm package 'openai' not found at " << module << " — run packaging/setup.sh deps (it installs it)";
  if (std::system("node --version > /dev/null 2>&1") != 0) GTEST_SKIP() << "node is not installed — run packaging/setup.sh deps";
  const auto dir = make_temp_dir("serve-openai");
  auto s = start(dir);
  ASSERT_TRUE(s) << read_text(dir + "/serve.err") << read_text(dir + "/stderr.txt");
  const std::string model = s->listening["model"];
  auto c = Child::spawn({"/usr/bin/env", "node", std::string(FATHOM_SOURCE_DIR) + "/tests/engine/openai_client.cjs", module,
                         "http://127.0.0.1:" + std::to_string(s->port) + "/v1", model},
                        dir + "/node.out", dir + "/node.err");
  const int rc = c.wait();
  EXPECT_EQ(rc, 0) << read_text(dir + "/node.err") << read_text(dir + "/node.out");
  const auto out = json::parse(read_text(dir + "/node.out"), nullptr, false);
  ASSERT_TRUE(out.is_object()) << read_text(dir + "/node.out");
  EXPECT_TRUE(out["ok"].get<bool>());
  EXPECT_GT(out["chunks"].get<int>(), 2);
}
