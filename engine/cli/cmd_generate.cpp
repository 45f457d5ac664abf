// `fathom-engine generate MODEL --prompt TEXT`: stream a completion to stdout. MODEL is a Fathom
// checkpoint (or run directory: its latest), a Hugging Face directory, or a LoRA adapter
// (fine-tune checkpoint or PEFT directory; merged into its base). Timing goes to stderr; --json
// prints one object (text, tokens with logprobs, finish reason, timings) instead of streaming.
#include <CLI/CLI.hpp>

#include <iostream>
#include <nlohmann/json.hpp>

#include "engine/cli/commands.h"
#include "engine/infer/generator.h"
#include "engine/infer/load.h"

namespace {

int cmd_generate(int argc, char** argv) {
  CLI::App app{"Generate text from a model: a Fathom checkpoint or run directory, a Hugging Face model directory, "
               "or a LoRA adapter (merged into its base). Streams the completion to stdout.",
               "fathom-engine generate"};
  std::string model_path, prompt, base, device_name = "auto", precision = "fp32";
  fathom::infer::SamplingParams sp;
  uint64_t seed = 0;
  bool json_out = false, raw_ids = false;
  app.add_option("model", model_path, "checkpoint, run, Hugging Face or adapter directory")->required();
  app.add_option("-p,--prompt", prompt, "prompt text")->required();
  app.add_option("--base", base, "the base model of an adapter (default: the one it records)");
  app.add_option("-n,--max-tokens", sp.max_tokens, "tokens to generate at most (default 128)");
  app.add_option("-t,--temperature", sp.temperature, "0 = greedy (default 1)");
  app.add_option("--top-k", sp.top_k, "keep the k most likely tokens (0 = off)");
  app.add_option("--top-p", sp.top_p, "nucleus: keep the smallest set with this much probability (1 = off)");
  app.add_option("--min-p", sp.min_p, "keep tokens with p >= min_p * p_max (0 = off)");
  app.add_option("--repetition-penalty", sp.repetition_penalty, "CTRL repetition penalty (1 = off)");
  app.add_option("--presence-penalty", sp.presence_penalty, "OpenAI presence penalty");
  app.add_option("--frequency-penalty", sp.frequency_penalty, "OpenAI frequency penalty");
  auto* seed_opt = app.add_option("--seed", seed, "seed of the sampler (default: random)");
  app.add_option("--stop", sp.stop, "stop string (repeatable; not included in the output)");
  app.add_option("--logprobs", sp.logprobs, "--json: top alternatives per token (0-20)");
  app.add_option("--device", device_name, "auto | cpu | cuda")->check(CLI::IsMember({"auto", "cpu", "cuda"}));
  app.add_option("--precision", precision, "fp32 | bf16 | fp16")->check(CLI::IsMember({"fp32", "bf16", "fp16"}));
  app.add_flag("--json", json_out, "print one JSON object instead of streaming text");
  app.add_flag("--special", raw_ids, "encode special tokens in the prompt (<|im_start|> ...) as themselves");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? 0 : 2;
  }
  if (*seed_opt) sp.seed = seed;
  if (const auto err = sp.validate(); !err.empty()) {
    std::cerr << "error: " << err << "\n";
    return 2;
  }
  try {
    const auto target = fathom::infer::inference_target(device_name, precision);
    const torch::Device device = target.device;
    const auto dtype = target.dtype;
    std::cerr << "loading " << model_path << "\n";
    auto m = fathom::infer::load_for_inference(model_path, device, dtype, base);
    if (m.tokenizer.vocab_size() == 0) throw std::runtime_error("no tokenizer found for " + model_path);
    auto ids32 = raw_ids ? m.tokenizer.encode_with_special(prompt) : m.tokenizer.encode(prompt);
    std::vector<int64_t> ids(ids32.begin(), ids32.end());
    auto result = fathom::infer::generate(m.net, m.tokenizer, ids, sp, [&](const fathom::infer::TokenEvent& ev) {
      if (!json_out) std::cout << ev.text << std::flush;
      return true;
    });
    if (json_out) {
      nlohmann::json tokens = nlohmann::json::array();
      for (const auto& c : result.choices) {
        nlohmann::json t{{"id", c.token}, {"text", m.tokenizer.token_bytes(static_cast<uint32_t>(c.token))}, {"logprob", c.logprob}};
        if (!c.top.empty()) {
          nlohmann::json top = nlohmann::json::array();
          for (const auto& [id, lp] : c.top) top.push_back({{"id", id}, {"logprob", lp}});
          t["top"] = top;
        }
        tokens.push_back(t);
      }
      std::cout << nlohmann::json{{"text", result.text},
                                  {"finish_reason", result.finish_reason},
                                  {"prompt_tokens", result.prompt_tokens},
                                  {"completion_tokens", result.tokens.size()},
                                  {"time_to_first_token_s", result.time_to_first_token_s},
                                  {"decode_tokens_per_s", result.decode_tokens_per_s},
                                  {"tokens", tokens}}
                       .dump(-1, ' ', false, nlohmann::json::error_handler_t::replace)
                << std::endl;
    } else {
      std::cout << std::endl;
    }
    std::cerr << result.prompt_tokens << " prompt + " << result.tokens.size() << " generated tokens (" << result.finish_reason
              << "); first token after " << result.time_to_first_token_s << " s, " << result.decode_tokens_per_s
              << " tokens/s decoding on " << device.str() << "\n";
    return 0;
  } catch (const std::invalid_argument& e) {
    std::cerr << "error: " << e.what() << "\n";
    return 2;
  } catch (const std::exception& e) {
    std::cerr << "error: " << e.what() << "\n";
    return 1;
  }
}

}  // namespace

FATHOM_REGISTER_COMMAND("generate", "generate text from a checkpoint, Hugging Face model or LoRA adapter", cmd_generate);
