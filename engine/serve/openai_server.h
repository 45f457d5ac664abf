// The OpenAI-compatible HTTP service of `fathom-engine serve` (cpp-httplib): /v1/completions,
// /v1/chat/completions (streaming as server-sent events), /v1/models, /health, /metrics
// (Prometheus text), and the brief's POST /generate. Requests are validated before they reach the
// model; every error is a 4xx/5xx with an OpenAI-style body. Requests are decoded together by the
// continuous batcher (infer/batcher.h); a full queue answers 503; a client that disconnects
// mid-stream frees its slot. LoRA adapters loaded into the model's adapter bank are selected per
// request by their name in "model".
#pragma once
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "engine/infer/batcher.h"
#include "engine/infer/load.h"

namespace fathom::serve {

struct ServerOptions {
  std::string host = "127.0.0.1";
  int port = 8000;                 // 0 = any free port
  std::string api_key;             // "" = no authentication
  std::string model_id;            // the name clients pass as "model"
  int64_t default_max_tokens = 128;
  std::string chat_template = "auto";
  infer::BatcherOptions batching;
  std::vector<std::string> adapter_names;  // adapter g of the bank answers to adapter_names[g]
};

class OpenAiServer {
 public:
  OpenAiServer(infer::LoadedModel model, ServerOptions options);
  ~OpenAiServer();
  // Binds (port 0: a free one); returns the port, or -1 with *error set.
  int bind(std::string* error);
  // Serves until stop() (blocking).
  void listen();
  void stop();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace fathom::serve
