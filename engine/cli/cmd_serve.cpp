// `fathom-engine serve MODEL`: the OpenAI-compatible HTTP service (engine/serve). Prints one JSON
// line {"event":"listening","host","port","model"} on stdout once it accepts requests; loading
// progress and request errors go to stderr. SIGTERM / SIGINT stop it.
#include <CLI/CLI.hpp>

#include <algorithm>
#include <csignal>
#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <nlohmann/json.hpp>

#include "engine/cli/commands.h"
#include "engine/infer/load.h"
#include "engine/serve/openai_server.h"

namespace {

fathom::serve::OpenAiServer* g_server = nullptr;
void on_signal(int) {
  if (g_server) g_server->stop();
}

int cmd_serve(int argc, char** argv) {
  CLI::App app{"Serve a model over an OpenAI-compatible HTTP API (/v1/completions, /v1/chat/completions with "
               "streaming, /v1/models, /health, /metrics, /generate). Binds to 127.0.0.1 unless told otherwise.",
               "fathom-engine serve"};
  std::string model_path, base, device_name = "auto", precision = "fp32", api_key_env, model_id, tmpl = "auto";
  fathom::serve::ServerOptions opt;
  app.add_option("model", model_path, "checkpoint, run, Hugging Face or LoRA adapter directory")->required();
  app.add_option("--host", opt.host, "address to listen on (default 127.0.0.1; 0.0.0.0 = every interface)");
  app.add_option("--port", opt.port, "port (default 8000; 0 = any free port, printed when listening)");
  app.add_option("--api-key-env", api_key_env, "environment variable holding the API key clients must send as a Bearer token");
  app.add_option("--model-id", model_id, "the model name clients use (default: the directory's name)");
  app.add_option("--base", base, "the base model of an adapter (default: the one it records)");
  app.add_option("--max-tokens", opt.default_max_tokens, "max_tokens of a request that gives none (default 128)");
  app.add_option("--chat-template", tmpl, "auto | plain | chatml | llama3 | deepseek")
      ->check(CLI::IsMember({"auto", "plain", "chatml", "llama3", "deepseek"}));
  app.add_option("--device", device_name, "auto | cpu | cuda")->check(CLI::IsMember({"auto", "cpu", "cuda"}));
  app.add_option("--precision", precision, "fp32 | bf16 | fp16")->check(CLI::IsMember({"fp32", "bf16", "fp16"}));
  const fathom::config::ServeConfig serve_defaults;
  opt.batching.max_batch = serve_defaults.max_batch_size;
  opt.batching.max_kv_tokens = serve_defaults.max_kv_tokens;
  std::string quantize = serve_defaults.quantize;
  std::vector<std::string> adapter_specs;
  app.add_option("--max-batch", opt.batching.max_batch, "requests decoded together (continuous batching; default 16)")
      ->check(CLI::Range(1, 4096));
  app.add_option("--max-kv-tokens", opt.batching.max_kv_tokens,
                 "KV-cache budget in tokens over running requests, each counting prompt + max_tokens (default 0 = max-batch × context)")
      ->check(CLI::Range(int64_t{0}, int64_t{1} << 40));
  app.add_option("--max-queue", opt.batching.max_queue, "requests waiting beyond the batch before new ones get 503 (default 256)")
      ->check(CLI::Range(0, 1 << 20));
  app.add_option("--quantize", quantize, "none | int8 (weight-only per-channel) | dynamic_int8 (int8 activations too)")
      ->check(CLI::IsMember({"none", "int8", "dynamic_int8"}));
  app.add_option("--adapter", adapter_specs,
                 "NAME=DIR: serve a LoRA adapter (PEFT or Fathom fine-tune checkpoint) over the base; requests pick it with "
                 "\"model\": NAME (repeatable)");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? 0 : 2;
  }
  if (!api_key_env.empty()) {
    const char* key = std::getenv(api_key_env.c_str());
    if (!key || !*key) {
      std::cerr << "error: --api-key-env " << api_key_env << ": that environment variable is empty or unset\n";
      return 2;
    }
    opt.api_key = key;
  }
  opt.chat_template = tmpl;
  try {
    const auto target = fathom::infer::inference_target(device_name, precision);
    const torch::Device device = target.device;
    const auto dtype = target.dtype;
    std::cerr << "loading " << model_path << "\n";
    auto m = fathom::infer::load_for_inference(model_path, device, dtype, base);
    if (m.tokenizer.vocab_size() == 0) throw std::runtime_error("no tokenizer found for " + model_path);
    if (model_id.empty()) {
      auto p = std::filesystem::path(model_path);
      if (p.filename().empty()) p = p.parent_path();
      model_id = p.filename().string();
      if (model_id.rfind("step-", 0) == 0) model_id = p.parent_path().parent_path().filename().string() + "-" + model_id;
    }
    opt.model_id = model_id;
    std::vector<std::string> adapter_dirs;
    for (const auto& spec : adapter_specs) {
      const auto eq = spec.find('=');
      if (eq == std::string::npos || eq == 0 || eq + 1 == spec.size())
        throw std::runtime_error("--adapter '" + spec + "': expected NAME=DIR, e.g. --adapter legal=runs/legal-lora/checkpoints/step-200");
      const auto name = spec.substr(0, eq);
      if (name == model_id || std::find(opt.adapter_names.begin(), opt.adapter_names.end(), name) != opt.adapter_names.end())
        throw std::runtime_error("--adapter '" + spec + "': the name '" + name + "' is already taken");
      opt.adapter_names.push_back(name);
      adapter_dirs.push_back(spec.substr(eq + 1));
    }
    if (!adapter_dirs.empty()) {
      fathom::infer::install_adapter_bank(m, adapter_dirs);
      std::cerr << "adapters: " << adapter_dirs.size() << " in the bank (selected per request by name)\n";
    }
    std::cerr << "quantisation: " << fathom::infer::quantize_for_serving(m, quantize) << "\n";
    std::cerr << "loaded " << model_id << " on " << device.str() << " (continuous batching: up to " << opt.batching.max_batch
              << " requests)\n";
    fathom::serve::OpenAiServer server(std::move(m), opt);
    std::string err;
    const int port = server.bind(&err);
    if (port < 0) {
      std::cerr << "error: " << err << "\n";
      return 1;
    }
    g_server = &server;
    std::signal(SIGTERM, on_signal);
    std::signal(SIGINT, on_signal);
    std::cout << nlohmann::json{{"event", "listening"}, {"host", opt.host}, {"port", port}, {"model", model_id}}.dump() << std::endl;
    std::cerr << "listening on http://" << opt.host << ":" << port << " (model " << model_id << ")\n";
    server.listen();
    g_server = nullptr;
    std::cerr << "stopped\n";
    return 0;
  } catch (const std::exception& e) {
    std::cerr << "error: " << e.what() << "\n";
    return 1;
  }
}

}  // namespace

FATHOM_REGISTER_COMMAND("serve", "OpenAI-compatible HTTP service for a checkpoint, Hugging Face model or adapter", cmd_serve);
