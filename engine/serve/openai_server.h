// The OpenAI-compatible HTTP service of `fathom-engine serve` (cpp-httplib): /v1/completions,
// /v1/chat/completions (streaming as server-sent events), /v1/models, /health, /metrics
// (Prometheus text), and the brief's POST /generate. Requests are validated before they reach the
// model; every error is a 4xx/5xx with an OpenAI-style body. Generation runs one request at a time
// (a queue behind a mutex; continuous batching is not implemented yet); a client that disconnects
// mid-stream cancels its generation.
#pragma once
#include <functional>
#include <memory>
#include <string>

#include "engine/infer/load.h"

namespace fathom::serve {

struct ServerOptions {
  std::string host = "127.0.0.1";
  int port = 8000;                 // 0 = any free port
  std::string api_key;             // "" = no authentication
  std::string model_id;            // the name clients pass as "model"
  int64_t default_max_tokens = 128;
  std::string chat_template = "auto";
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
