// `fathom-engine bench infer MODEL`: decoding speed and the accuracy cost of quantisation.
// For each --quantize mode: batch-1 decode tokens/s and time to first token through generate()
// (the real path: KV cache, sampler), the HBM/DRAM bandwidth that implies (weights + KV bytes read
// per token × tokens/s), throughput of the continuous batcher at each --concurrency, and the
// perplexity on held-out text (--eval-text).
#include <CLI/CLI.hpp>

#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <iomanip>
#include <iostream>
#include <nlohmann/json.hpp>
#include <random>
#include <sstream>

#include "engine/cli/commands.h"
#include "engine/data/token_shards.h"
#include "engine/infer/batcher.h"
#include "engine/infer/generator.h"
#include "engine/infer/graph_decode.h"
#include "engine/infer/load.h"
#include "engine/infer/perplexity.h"
#include "engine/infer/sampler.h"
#include "engine/ops/decode.h"

namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

std::vector<std::string> split(const std::string& s) {
  std::vector<std::string> out;
  std::stringstream in(s);
  for (std::string x; std::getline(in, x, ',');)
    if (!x.empty()) out.push_back(x);
  return out;
}

std::string read_eval_text(const std::string& path) {
  std::string text;
  auto add = [&text](const fs::path& f) {
    std::ifstream in(f, std::ios::binary);
    text.append(std::istreambuf_iterator<char>(in), {});
    text += "\n";
  };
  if (fs::is_directory(path)) {
    std::vector<fs::path> files;
    for (const auto& e : fs::recursive_directory_iterator(path))
      if (e.is_regular_file()) files.push_back(e.path());
    std::sort(files.begin(), files.end());
    for (const auto& f : files) add(f);
  } else {
    add(path);
  }
  return text;
}

// Bytes a decode step reads per sequence: every weight once (an untied embedding only one row),
// plus the KV cache up to `position`.
double bytes_per_token(fathom::model::Transformer& net, double position) {
  double weights = 0;
  for (const auto& p : net->named_parameters()) weights += static_cast<double>(p.value().numel() * p.value().element_size());
  for (const auto& b : net->named_buffers()) weights += static_cast<double>(b.value().numel() * b.value().element_size());
  const auto& a = net->args();
  if (!a.tie_embeddings) {
    const auto& e = net->model->embed_tokens->weight;
    weights -= static_cast<double>(e.numel() * e.element_size());
  }
  auto cache = net->new_cache(1, 1);
  const double kv_per_position = static_cast<double>(cache.bytes());
  return weights + kv_per_position * position;
}

}  // namespace

namespace fathom::cli {

int run_bench_infer(int argc, char** argv) {
  CLI::App app{"Inference benchmark: batch-1 decode tokens/s, time to first token, memory bandwidth use, continuous-batching "
               "throughput at several concurrencies, and perplexity on held-out text, for each quantisation mode.",
               "fathom-engine bench infer"};
  std::string model_path, device_name = "auto", precision = "bf16", quantize = "none", concurrency = "1,8,32,64", eval_text, eval_shard;
  int64_t prompt_tokens = 128, new_tokens = 128, eval_tokens = 16384;
  double peak_gbps = 0, warmup_s = 3;
  bool json_out = false;
  app.add_option("model", model_path, "checkpoint, run, Hugging Face or adapter directory")->required();
  app.add_option("--device", device_name, "auto | cpu | cuda")->check(CLI::IsMember({"auto", "cpu", "cuda"}));
  app.add_option("--precision", precision, "fp32 | bf16 | fp16 (default bf16)")->check(CLI::IsMember({"fp32", "bf16", "fp16"}));
  app.add_option("--quantize", quantize, "comma-separated modes: none,int8,dynamic_int8 (default none)");
  app.add_option("--concurrency", concurrency, "comma-separated numbers of concurrent requests (default 1,8,32,64; empty = skip)");
  app.add_option("--prompt-tokens", prompt_tokens, "prompt length of every request (default 128)");
  app.add_option("--new-tokens", new_tokens, "tokens generated per request, end-of-text ignored (default 128)");
  app.add_option("--eval-text", eval_text, "held-out text file or folder for perplexity (default: none)");
  app.add_option("--eval-shard", eval_shard, "a prepared validation shard (<data dir>/val.bin) for perplexity: the run's own held-out split");
  app.add_option("--eval-tokens", eval_tokens, "tokens of it to evaluate (default 16384)");
  app.add_option("--peak-gbps", peak_gbps, "memory bandwidth to compare with, GB/s (default: 4800 on an H200, else none)");
  app.add_option("--warmup", warmup_s, "seconds of untimed decoding first (default 3)");
  app.add_flag("--json", json_out, "print one JSON object");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? 0 : 2;
  }
  try {
    const auto target = fathom::infer::inference_target(device_name, precision);
    const torch::Device device = target.device;
    const auto dtype = target.dtype;
    std::string device_label = device.str();
    if (device.is_cuda()) {
#if defined(FATHOM_HAVE_CUDA)
      device_label = "cuda";
#endif
      if (peak_gbps == 0) peak_gbps = 4800;  // H200 HBM3e; pass --peak-gbps for another GPU
    }
    nlohmann::json report{{"model", model_path}, {"device", device_label}, {"precision", precision},
                          {"prompt_tokens", prompt_tokens}, {"new_tokens", new_tokens}, {"modes", nlohmann::json::array()}};
    std::string eval;
    if (!eval_text.empty()) eval = read_eval_text(eval_text);
    for (const auto& mode : split(quantize)) {
      std::cerr << "[" << mode << "] loading " << model_path << "\n";
      auto m = fathom::infer::load_for_inference(model_path, device, dtype);
      const std::string qsummary = fathom::infer::quantize_for_serving(m, mode);
      std::cerr << "[" << mode << "] " << qsummary << "\n";
      const int64_t V = m.net->args().vocab_size;
      std::mt19937_64 rng(1234);
      std::uniform_int_distribution<int64_t> tok(0, std::max<int64_t>(V - 1, 1));
      auto prompt = [&] {
        std::vector<int64_t> p(static_cast<size_t>(prompt_tokens));
        for (auto& t : p) t = tok(rng) % std::max<int64_t>(1, static_cast<int64_t>(m.tokenizer.vocab_size() ? m.tokenizer.vocab_size() : V));
        return p;
      };
      fathom::infer::SamplingParams sp;
      sp.temperature = 0;
      sp.ignore_eos = true;
      sp.max_tokens = new_tokens;
      // Warm-up (allocator, kernels, and clocks: on the H200 machine the first seconds of decoding
      // ran several times slower, in transformers too), then batch-1 decoding.
      {
        auto w = sp;
        w.max_tokens = std::min<int64_t>(new_tokens, 64);
        const auto t0 = Clock::now();
        while (std::chrono::duration<double>(Clock::now() - t0).count() < warmup_s) fathom::infer::generate(m.net, m.tokenizer, prompt(), w);
      }
      const auto r = fathom::infer::generate(m.net, m.tokenizer, prompt(), sp);
      // The model alone (KV-cached forward + argmax on the device, no sampler or detokeniser): how
      // much of a decode step is the network and how much the per-token host work.
      double model_only_tps = 0, batched_only_tps = 0, sampler_ms = 0;
      {
        torch::NoGradGuard ng;
        const auto p0 = prompt();
        auto cache = m.net->new_cache(1, prompt_tokens + new_tokens + 1);
        auto logits = m.net->forward_cached(torch::tensor(p0, torch::kInt64).unsqueeze(0).to(device), cache).select(1, prompt_tokens - 1);
        auto next = logits.argmax(-1).view({1, 1});
        (void)next.item<int64_t>();
        const auto t0 = Clock::now();
        for (int64_t i = 0; i < new_tokens; ++i) {
          logits = m.net->forward_cached(next, cache).select(1, 0);
          next = logits.argmax(-1).view({1, 1});
        }
        (void)next.item<int64_t>();  // one sync at the end: kernels queue without waiting for the host
        model_only_tps = static_cast<double>(new_tokens) / std::chrono::duration<double>(Clock::now() - t0).count();
        // The same through the continuous batcher's decode path (per-row positions and masks).
        {
          auto bc = m.net->new_cache(1, prompt_tokens + new_tokens + 1);
          fathom::model::KvCache view;
          view.capacity = bc.capacity;
          for (auto& [a, b] : bc.layers) view.layers.emplace_back(a.narrow(0, 0, 1), b.narrow(0, 0, 1));
          auto lg = m.net->forward_cached(torch::tensor(p0, torch::kInt64).unsqueeze(0).to(device), view).select(1, prompt_tokens - 1);
          auto nx = lg.argmax(-1).view({1, 1});
          (void)nx.item<int64_t>();
          const auto t1 = Clock::now();
          for (int64_t i = 0; i < new_tokens; ++i) {
            const auto step = fathom::model::DecodeStep::make({prompt_tokens + i}, device);
            nx = m.net->forward_decode(nx, bc, step).argmax(-1).view({1, 1});
          }
          (void)nx.item<int64_t>();
          batched_only_tps = static_cast<double>(new_tokens) / std::chrono::duration<double>(Clock::now() - t1).count();
        }
        fathom::infer::Sampler sampler(sp);
        const auto cpu_logits = logits.view({-1}).to(torch::kCPU);
        std::vector<int64_t> hist(p0.begin(), p0.end());
        const auto s0 = Clock::now();
        for (int i = 0; i < 20; ++i) sampler.sample(cpu_logits, hist);
        sampler_ms = 1000 * std::chrono::duration<double>(Clock::now() - s0).count() / 20;
      }
      // Where a batch-1 step's time goes, in device time (each part replayed from a CUDA graph, so no
      // launch cost is in it): the whole decode step, the weight matrices alone (one 1-row product
      // per linear layer and the LM head, what the step must read), and the LM head alone.
      nlohmann::json breakdown;
      if (device.is_cuda() && mode == "none") {
        torch::NoGradGuard ng;
        const auto p0 = prompt();
        auto cache = m.net->new_cache(1, prompt_tokens + 2);
        m.net->forward_cached(torch::tensor(p0, torch::kInt64).unsqueeze(0).to(device), cache);
        std::string why;
        if (auto g = fathom::infer::GraphDecoder::create(m.net, cache, &why)) {
          g->step(1, prompt_tokens);  // captures
          const auto t0 = Clock::now();
          constexpr int kSteps = 50;
          for (int i = 0; i < kSteps; ++i) g->step(1, prompt_tokens);  // same position: the step's cost without cache growth
          torch::cuda::synchronize();
          const double step_ms = 1000 * std::chrono::duration<double>(Clock::now() - t0).count() / kSteps;
          std::vector<torch::Tensor> weights;
          torch::Tensor head;
          for (const auto& item : m.net->named_parameters()) {
            const auto& name = item.key();
            const auto& t = item.value();
            if (t.dim() != 2) continue;
            if (name.find("embed_tokens") != std::string::npos) {
              if (m.net->args().tie_embeddings) head = t;
              continue;
            }
            if (name.find("lm_head") != std::string::npos) head = t;
            else weights.push_back(t);
          }
          int64_t weight_bytes = 0;
          for (const auto& w : weights) weight_bytes += w.numel() * w.element_size();
          const int64_t head_bytes = head.defined() ? head.numel() * head.element_size() : 0;
          auto x_for = [&](const torch::Tensor& w) { return torch::randn({1, w.size(1)}, w.options()); };
          std::vector<torch::Tensor> xs;
          for (const auto& w : weights) xs.push_back(x_for(w));
          const double layers_ms = fathom::infer::time_in_graph([&] {
            for (size_t i = 0; i < weights.size(); ++i) (void)torch::linear(xs[i], weights[i]);
          });
          double head_ms = 0;
          if (head.defined()) {
            auto xh = x_for(head);
            head_ms = fathom::infer::time_in_graph([&] { (void)torch::linear(xh, head); });
          }
          // The same products through the decode gemv kernel (engine/ops/decode.h), where it applies.
          double fused_ms = -1;
          if (!weights.empty() && fathom::ops::decode_linear_fusable(xs[0], {fathom::ops::DecodeWeight{weights[0], {}, {}}})) {
            auto xh = head.defined() ? x_for(head) : torch::Tensor();
            fused_ms = fathom::infer::time_in_graph([&] {
              for (size_t i = 0; i < weights.size(); ++i)
                (void)fathom::ops::decode_linear(xs[i], {fathom::ops::DecodeWeight{weights[i], {}, {}}});
              if (head.defined()) (void)fathom::ops::decode_linear(xh, {fathom::ops::DecodeWeight{head, {}, {}}});
            });
          }
          const double gemv_ms = layers_ms + head_ms;
          breakdown = {{"step_ms", step_ms},
                       {"weights_gemv_ms", gemv_ms},
                       {"layers_gemv_ms", layers_ms},
                       {"lm_head_gemv_ms", head_ms},
                       {"weights_bytes", weight_bytes + head_bytes},
                       {"weights_gemv_gbps", (weight_bytes + head_bytes) / (gemv_ms * 1e6)},
                       {"other_kernels_ms", step_ms - gemv_ms},
                       {"weights_fused_gemv_ms", fused_ms},
                       {"weights_fused_gemv_gbps", fused_ms > 0 ? (weight_bytes + head_bytes) / (fused_ms * 1e6) : 0.0}};
          std::cerr << "[" << mode << "] one decode step " << std::fixed << std::setprecision(3) << step_ms << " ms: weight products alone "
                    << gemv_ms << " ms (" << std::setprecision(0) << (weight_bytes + head_bytes) / (gemv_ms * 1e6) << " GB/s; LM head "
                    << std::setprecision(3) << head_ms << " ms), everything else " << step_ms - gemv_ms << " ms; through the decode gemv "
                    << fused_ms << " ms\n";
        } else {
          std::cerr << "[" << mode << "] no step breakdown: " << why << "\n";
        }
      }
      const double bpt = bytes_per_token(m.net, static_cast<double>(prompt_tokens) + static_cast<double>(new_tokens) / 2);
      const double gbps = bpt * r.decode_tokens_per_s / 1e9;
      nlohmann::json row{{"quantize", mode},
                         {"summary", qsummary},
                         {"batch1_decode_tokens_per_s", r.decode_tokens_per_s},
                         {"time_to_first_token_s", r.time_to_first_token_s},
                         {"model_only_decode_tokens_per_s", model_only_tps},
                         {"model_only_batched_path_tokens_per_s", batched_only_tps},
                         {"sampler_ms_per_token", sampler_ms},
                         {"bytes_per_token", bpt},
                         {"bandwidth_gbps", gbps}};
      if (peak_gbps > 0) row["bandwidth_utilisation"] = gbps / peak_gbps;
      if (!breakdown.is_null()) row["step_breakdown"] = breakdown;
      std::cerr << "[" << mode << "] batch 1: " << std::fixed << std::setprecision(1) << r.decode_tokens_per_s << " tokens/s, first token "
                << std::setprecision(3) << r.time_to_first_token_s << " s (" << prompt_tokens << "-token prompt), " << std::setprecision(1)
                << gbps << " GB/s read" << (peak_gbps > 0 ? " = " + std::to_string(static_cast<int>(100 * gbps / peak_gbps)) + "% of peak" : "")
                << "\n";
      std::cerr << "[" << mode << "] the model alone: " << std::setprecision(1) << model_only_tps << " tokens/s (batched decode path "
                << batched_only_tps << "); sampler "
                << std::setprecision(2) << sampler_ms << " ms/token\n";
      nlohmann::json conc = nlohmann::json::array();
      for (const auto& cs : split(concurrency)) {
        const int64_t c = std::stoll(cs);
        fathom::infer::BatcherOptions bo;
        bo.max_batch = c;
        bo.max_queue = c;
        fathom::infer::Batcher batcher(m.net, m.tokenizer, bo);
        std::vector<fathom::infer::Batcher::Handle> hs;
        std::vector<std::vector<int64_t>> prompts;
        for (int64_t i = 0; i < c; ++i) prompts.push_back(prompt());
        const auto t0 = Clock::now();
        for (const auto& p : prompts) hs.push_back(batcher.submit(p, sp));
        int64_t produced = 0;
        double ttft_sum = 0;
        std::string first_error;
        for (auto& h : hs) {
          const auto res = batcher.wait(h);
          if (const auto e = batcher.error(h); !e.empty() && first_error.empty()) first_error = e;
          produced += static_cast<int64_t>(res.tokens.size());
          ttft_sum += res.time_to_first_token_s;
        }
        const double secs = std::chrono::duration<double>(Clock::now() - t0).count();
        const double tps = static_cast<double>(produced) / secs;
        const auto st = batcher.stats();
        conc.push_back({{"concurrency", c}, {"tokens_per_s", tps}, {"seconds", secs}, {"tokens", produced},
                        {"decode_steps", st.decode_steps}, {"mean_time_to_first_token_s", ttft_sum / static_cast<double>(c)}});
        if (!first_error.empty()) {
          conc.back()["error"] = first_error;
          std::cerr << "[" << mode << "] " << c << " concurrent: a request failed: " << first_error << "\n";
        }
        std::cerr << "[" << mode << "] " << c << " concurrent: " << std::setprecision(1) << tps << " tokens/s (" << produced << " tokens in "
                  << std::setprecision(2) << secs << " s)\n";
      }
      row["concurrency"] = conc;
      if (!eval.empty() || !eval_shard.empty()) {
        std::vector<int64_t> ids;
        if (!eval_shard.empty()) {
          fathom::data::TokenShard shard(eval_shard);
          ids.resize(std::min<size_t>(shard.size(), static_cast<size_t>(eval_tokens) + 1));
          shard.copy(0, ids.size(), ids.data());
        } else {
          auto ids32 = m.tokenizer.encode(eval);
          ids.assign(ids32.begin(), ids32.end());
        }
        const auto ppl = fathom::infer::perplexity(m.net, ids, eval_tokens);
        row["perplexity"] = ppl.perplexity;
        row["eval_tokens"] = ppl.tokens;
        std::cerr << "[" << mode << "] perplexity " << std::setprecision(3) << ppl.perplexity << " on " << ppl.tokens << " tokens\n";
      }
      report["modes"].push_back(row);
    }
    if (json_out) {
      std::cout << report.dump() << std::endl;
    } else {
      std::cout << std::left << std::setw(14) << "quantize" << std::setw(14) << "tok/s (b=1)" << std::setw(10) << "TTFT s" << std::setw(10)
                << "GB/s" << std::setw(12) << "perplexity" << "throughput at concurrency\n";
      for (const auto& row : report["modes"]) {
        std::ostringstream c;
        for (const auto& x : row["concurrency"]) c << x["concurrency"].get<int64_t>() << ": " << std::fixed << std::setprecision(0) << x["tokens_per_s"].get<double>() << "  ";
        std::cout << std::left << std::setw(14) << row["quantize"].get<std::string>() << std::setw(14) << std::fixed << std::setprecision(1)
                  << row["batch1_decode_tokens_per_s"].get<double>() << std::setw(10) << std::setprecision(3) << row["time_to_first_token_s"].get<double>()
                  << std::setw(10) << std::setprecision(1) << row["bandwidth_gbps"].get<double>() << std::setw(12)
                  << (row.contains("perplexity") ? std::to_string(row["perplexity"].get<double>()) : std::string("-")) << c.str() << "\n";
      }
    }
    return 0;
  } catch (const std::exception& e) {
    std::cerr << "fathom-engine bench infer: error: " << e.what() << "\n";
    return 1;
  }
}

}  // namespace fathom::cli
