// `fathom-engine serve` end to end: a real server process on a tiny trained model, a real HTTP
// client (cpp-httplib): models/health/metrics, greedy chat equals the concatenated stream, every
// error path answers a 4xx with an OpenAI-style body, an API key is enforced, and a client that
// disconnects mid-stream frees the model for the next request.
#include <gtest/gtest.h>
#include <httplib.h>
#include <signal.h>

#include <nlohmann/json.hpp>
#include <functional>
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
  std::ostringstream y;
  y << "extends: debug-tiny\n"
    << "run: {name: srv, seed: 3, device: cpu, threads: 1, workspace: " << dir << "/ws}\n"
    << "data: {train: [" << FATHOM_FIXTURES_DIR << "/corpus], seq_len: 32, shards_dir: " << dir << "/data}\n"
    << "tokenizer: {kind: bpe, vocab_size: 384, path: ''}\n"
    << "model: {d_model: 64, n_layers: 2, n_heads: 4, max_seq_len: 64}\n"
    << "train: {micro_batch_size: 8, max_steps: 20, eval_interval: 0}\n"
    << "checkpoint: {save_every_steps: 20, save_interval: 0}\n";
  write_text(dir + "/base.yaml", y.str());
  if (!fs::exists(dir + "/base/checkpoints/step-20") && run_engine({"train", dir + "/base.yaml", "--run-dir", dir + "/base"}, dir) != 0)
    return nullptr;
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
