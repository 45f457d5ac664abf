// The training run behind `fathom-engine train` (see trainer.h). One optimizer step is:
//   for each of gradient_accumulation_steps micro-batches (each possibly split into
//   activation_sharding.num_shards sub-batches): forward, loss / n, backward
//   → gradients to fp32 master weights (unscaled for fp16) → NaN/Inf guard → clip → AdamW
//   → master weights copied back into the compute-dtype model.
// Checkpoints hold the fp32 master weights under Hugging Face names, the AdamW moments, and the
// step; batches are a pure function of (seed, step), so resume is exact.
#include "engine/train/trainer.h"

#include <fcntl.h>
#include <malloc.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include <atomic>
#include <chrono>
#include <csignal>
#include <cstdlib>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <iomanip>
#include <iostream>
#include <mutex>
#include <random>
#include <sstream>
#include <thread>

#include <torch/version.h>

#include "engine/checkpoint/hf.h"
#include "engine/checkpoint/manager.h"
#include "engine/checkpoint/tensor_io.h"
#include "engine/config/config.h"
#include "engine/data/batch_loader.h"
#include "engine/data/prepare.h"
#include "engine/data/token_shards.h"
#include "engine/dist/grad_sync.h"
#include "engine/dist/world.h"
#include "engine/dist/zero.h"
#include "engine/engine_version.h"
#include "engine/env_switch.h"
#include "engine/model/fp8.h"
#include "engine/model/lora.h"
#include "engine/model/moe.h"
#include "engine/model/transformer.h"
#include "engine/ops/adamw.h"
#include "engine/ops/kernels.h"
#include "engine/protocol/emitter.h"
#include "engine/protocol/control.h"
#include "engine/protocol/payloads.h"
#include "engine/telemetry/cuda_memory.h"
#include "engine/telemetry/host_stats.h"
#include "engine/train/profile.h"
#include "engine/telemetry/nvml.h"
#include "engine/telemetry/prometheus.h"
#include "engine/telemetry/step_clock.h"
#include "engine/tokenizer/tokenizer.h"
#include "engine/train/finetune.h"
#include "engine/train/optimizer.h"
#include "engine/train/schedule.h"
#include "engine/train/session_util.h"

namespace fs = std::filesystem;
using nlohmann::json;

namespace fathom::train {
namespace {

// bf16 training's AdamW in one fused pass (see the step below); FATHOM_ADAMW_MIXED=0 turns it off.
bool adamw_mixed_requested() {
  static const bool on = env_switch("FATHOM_ADAMW_MIXED", true);
  return on;
}

// The clip coefficient kept on the device (see the step below); FATHOM_DEVICE_CLIP=0 turns it off.
bool device_clip_requested() {
  static const bool on = env_switch("FATHOM_DEVICE_CLIP", true);
  return on;
}

// FATHOM_OVERLAP_UPDATE=1: the device-clip path's update on a side stream, overlapped with the next
// step's forward (ops::OverlappedUpdate). Opt-in until measured.
bool overlap_update_requested() {
  static const bool on = env_switch("FATHOM_OVERLAP_UPDATE", false);
  return on;
}

// LibTorch's CPU tensors come from glibc malloc. Blocks above its mmap threshold (128 KiB, rising
// to at most 32 MiB as such blocks are freed) are mapped and unmapped per allocation, and a freed
// heap top above 128 KiB is trimmed, so every step faults its activations in again and the kernel
// zeroes them: the demo preset took 751 k page faults in 8 steps. A training step allocates the
// same sizes every time, so keep freed memory for reuse instead: 202 k faults, 19 % less CPU time
// and +13.5 % tok/s on the demo preset (docs/benchmarks.md). The price is that RSS stays at its
// peak, which a training process reaches at its first step anyway. FATHOM_MALLOC_TUNE=0 (or glibc
// malloc tunables set by the user) leaves malloc as it is.
void keep_freed_memory_for_reuse() {
#if defined(__GLIBC__)
  const char* off = std::getenv("FATHOM_MALLOC_TUNE");
  const char* tunables = std::getenv("GLIBC_TUNABLES");
  if ((off && std::string(off) == "0") || (tunables && std::strstr(tunables, "glibc.malloc."))) return;
  mallopt(M_MMAP_THRESHOLD, 256 << 20);
  mallopt(M_TRIM_THRESHOLD, 1 << 30);
  mallopt(M_TOP_PAD, 64 << 20);
#endif
}


using Clock = std::chrono::steady_clock;
namespace proto = fathom::protocol;

std::atomic<bool> g_stop_requested{false};
std::atomic<bool> g_checkpoint_requested{false};
std::atomic<int> g_signal_count{0};

void on_signal(int sig) {
  if (g_signal_count.fetch_add(1) >= 1 && sig == SIGINT) _exit(130);  // second Ctrl-C: leave now
  g_stop_requested = true;
}

double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

// Reads control lines (workbench → engine) from stdin and, when given, from a FIFO that the
// engine opens read-write: it then never sees EOF as writers come and go, so a workbench that
// re-attaches later can still send {"op":"stop"}.
class ControlReader {
 public:
  ControlReader(proto::Emitter* emitter, const std::string& fifo_path) : emitter_(emitter) {
    if (!isatty(0)) std::thread([this] { loop(0); }).detach();  // blocked in read(): never joined
    if (!fifo_path.empty()) {
      if (::mkfifo(fifo_path.c_str(), 0600) != 0 && errno != EEXIST)
        throw std::runtime_error("cannot create control FIFO " + fifo_path + ": " + std::strerror(errno));
      const int fd = ::open(fifo_path.c_str(), O_RDWR | O_CLOEXEC);
      if (fd < 0) throw std::runtime_error("cannot open control FIFO " + fifo_path + ": " + std::strerror(errno));
      std::thread([this, fd] { loop(fd); }).detach();
    }
  }
  std::string take_sample_prompt() {
    std::lock_guard<std::mutex> lock(mu_);
    return std::exchange(sample_prompt_, std::string());
  }

 private:
  void loop(int fd) {
    std::string buffer;
    char chunk[4096];
    ssize_t n;
    while ((n = ::read(fd, chunk, sizeof(chunk))) > 0 || (n < 0 && errno == EINTR)) {
      if (n < 0) continue;
      buffer.append(chunk, static_cast<size_t>(n));
      size_t pos;
      while ((pos = buffer.find('\n')) != std::string::npos) {
        handle(buffer.substr(0, pos));
        buffer.erase(0, pos + 1);
      }
      if (buffer.size() > (1u << 20)) buffer.clear();  // a peer writing garbage without newlines
    }
  }
  void handle(const std::string& line) {
    std::string error;
    auto control = proto::decode_control(line, &error);
    if (!control) {
      if (!line.empty()) emitter_->emit(proto::LogData{"warn", "ignored control line: " + error});
      return;
    }
    if (control->op == "stop") g_stop_requested = true;
    else if (control->op == "checkpoint") g_checkpoint_requested = true;
    else if (control->op == "sample") {
      std::lock_guard<std::mutex> lock(mu_);
      sample_prompt_ = control->prompt.empty() ? std::string(" ") : control->prompt;
    } else if (control->op == "ping") {
      emitter_->emit(proto::EventData{"pong", json::object()});
    } else {
      emitter_->emit(proto::LogData{"warn", "unsupported control op '" + control->op + "' (train accepts stop, checkpoint, sample, ping)"});
    }
  }
  proto::Emitter* emitter_;
  std::mutex mu_;
  std::string sample_prompt_;
};

// Periodic `system` records from a background thread (NVML, allocator, /proc).
class SystemSampler {
 public:
  SystemSampler(proto::Emitter* emitter, torch::Device device, double interval_s)
      : emitter_(emitter), device_(device), interval_s_(interval_s) {
    if (interval_s_ <= 0) return;
    thread_ = std::thread([this] { loop(); });
  }
  ~SystemSampler() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      stop_ = true;
    }
    cv_.notify_all();
    if (thread_.joinable()) thread_.join();
  }

 private:
  void loop() {
    std::unique_lock<std::mutex> lock(mu_);
    while (!stop_) {
      lock.unlock();
      emit_once();
      lock.lock();
      cv_.wait_for(lock, std::chrono::duration<double>(interval_s_), [&] { return stop_; });
    }
  }
  void emit_once() {
    proto::SystemData s;
    auto host = host_.sample();
    s.cpu_util_pct = host.cpu_util_pct;
    s.ram_used = host.ram_used;
    s.ram_total = host.ram_total;
    if (device_.is_cuda()) {
      auto& nvml = telemetry::Nvml::instance();
      const int idx = device_.index();
      proto::GpuSample g;
      g.index = idx;
      if (nvml.available()) {
        auto n = nvml.sample(idx);
        g.util_pct = n.util_pct;
        g.temperature_c = n.temperature_c;
        g.power_w = n.power_w;
        g.energy_j = n.energy_j;
        g.clock_sm_mhz = n.clock_sm_mhz;
        g.clock_mem_mhz = n.clock_mem_mhz;
        g.mem_used = n.mem_used;
        g.mem_total = n.mem_total;
        g.sm_active_pct = nvml.gpm(idx).sm_active_pct;  // averaged since the previous record
      }
      if (auto m = telemetry::cuda_memory_stats(idx)) {
        g.mem_allocated = m->allocated;
        g.mem_reserved = m->reserved;
        g.fragmentation_pct = m->fragmentation_pct;
      }
      s.gpus.push_back(g);
    }
    emitter_->emit(s);
  }
  proto::Emitter* emitter_;
  torch::Device device_;
  double interval_s_;
  telemetry::HostStats host_;
  std::thread thread_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;
};

torch::Device pick_device(const std::string& wanted, const std::vector<int64_t>& gpu_ids) {
  if (wanted == "cpu") return torch::kCPU;
  if (wanted == "cuda") {
    if (!torch::cuda::is_available())
      throw std::runtime_error("run.device is cuda but no CUDA device is visible (is this a CPU build of the engine, "
                               "or is CUDA_VISIBLE_DEVICES empty?); train on the CPU with --set run.device=cpu");
    // Local rank i trains on distributed.gpu_ids[i] when the list names it, else on GPU i.
    const char* local_rank = std::getenv("LOCAL_RANK");
    const int i = local_rank ? std::atoi(local_rank) : 0;
    const int64_t index = i < static_cast<int>(gpu_ids.size()) ? gpu_ids[i] : i;
    if (index >= static_cast<int64_t>(torch::cuda::device_count()))
      throw std::runtime_error("local rank " + std::to_string(i) + " wants GPU " + std::to_string(index) + " but " +
                               std::to_string(torch::cuda::device_count()) + " are visible; check distributed.gpu_ids and CUDA_VISIBLE_DEVICES");
    return torch::Device(torch::kCUDA, static_cast<c10::DeviceIndex>(index));
  }
  return torch::cuda::is_available() ? torch::Device(torch::kCUDA, 0) : torch::Device(torch::kCPU);
}

// The tensors of `weights` that `like` names (e.g. the routing biases an imported model carries).
std::vector<std::pair<std::string, torch::Tensor>> named_subset(const std::vector<std::pair<std::string, torch::Tensor>>& weights,
                                                                const std::vector<std::pair<std::string, torch::Tensor>>& like) {
  std::vector<std::pair<std::string, torch::Tensor>> out;
  for (const auto& [n, t] : weights)
    for (const auto& [ln, lt] : like)
      if (n == ln) out.emplace_back(n, t);
  return out;
}

// Persistent non-parameter state of the model saved with the weights (MoE routing biases).
std::vector<std::pair<std::string, torch::Tensor>> persistent_buffers(model::Transformer& net) {
  std::vector<std::pair<std::string, torch::Tensor>> out;
  for (auto& b : net->named_buffers()) {
    const auto& n = b.key();
    if (n.size() > 23 && n.compare(n.size() - 23, 23, "e_score_correction_bias") == 0) out.emplace_back(n, b.value());
  }
  return out;
}

struct TrainState {
  int64_t step = 0;     // optimizer steps completed
  int64_t tokens = 0;   // tokens consumed, all ranks
  double loss_scale = 65536.0;
  int64_t good_steps = 0;  // fp16: steps since the last overflow
  int64_t consecutive_skips = 0;
  std::string parent_checkpoint;
  std::optional<double> best_val_loss;
  std::optional<double> last_val_loss;  // the newest evaluation: what a checkpoint is ranked by
};

}  // namespace

int run_training(const TrainInvocation& inv) {
  const auto t_start = Clock::now();
  // ---- config -------------------------------------------------------------------------
  config::LoadOptions load_options;
  load_options.overrides = inv.overrides;
  // torchrun's environment names this process's place (it wins over the file and --set), and the
  // config is validated with it (rank < world_size, ZeRO with more than one rank, ...).
  for (const auto& [var, key] : {std::pair<const char*, const char*>{"WORLD_SIZE", "distributed.world_size"}, {"RANK", "distributed.rank"}})
    if (const char* v = std::getenv(var); v && *v) load_options.overrides.push_back(std::string(key) + "=" + v);
  auto loaded = config::load_config_file(inv.config_path, load_options);
  if (!inv.bench)
    for (const auto& w : loaded.warnings) std::cerr << "warning: " << w.message() << "\n";
  if (!loaded.ok()) {
    for (const auto& e : loaded.errors) std::cerr << e.message() << "\n";
    std::cerr << loaded.errors.size() << " error(s) in " << inv.config_path << "; nothing was started.\n";
    return 2;
  }
  config::RunConfig cfg = loaded.config;
  const bool finetune = inv.command == "finetune" || cfg.lora.enabled;
  if (inv.command == "finetune" && base_of(cfg).empty()) {
    std::cerr << "error: " << inv.config_path << ": a fine-tune needs a base model: set lora.base (a checkpoint "
              << "directory …/checkpoints/step-N, or a Hugging Face model directory)\n";
    return 2;
  }
  std::vector<std::string> base_notes;
  if (finetune && !base_of(cfg).empty()) {
    try {
      base_notes = adopt_base_model(cfg);
    } catch (const std::exception& e) {
      std::cerr << "error: " << e.what() << "\n";
      return 2;
    }
  }
  if (inv.preview) {
    // `finetune --preview`: the instruction data as the model will see it; nothing is trained.
    try {
      if (cfg.data.task != "instruct") throw std::runtime_error("--preview shows instruction data: set data.task: instruct");
      if (cfg.tokenizer.path.empty()) throw std::runtime_error("instruction data needs the base's tokenizer: set lora.base");
      auto tokenizer = tok::Tokenizer::load(cfg.tokenizer.path);
      auto set = prepare_instruct(cfg, tokenizer);
      std::cout << instruct_preview(cfg, set, tokenizer, inv.preview_examples).dump() << std::endl;
      return 0;
    } catch (const std::exception& e) {
      std::cerr << "error: " << e.what() << "\n";
      return 2;
    }
  }

  // torchrun-style environment (RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT) overrides the config.
  dist::WorldOptions wopt;
  try {
    wopt = dist::world_options(cfg.distributed.backend, cfg.distributed.init_method, cfg.distributed.rank,
                               cfg.distributed.world_size, cfg.distributed.timeout_s, torch::kCPU);
  } catch (const std::exception& e) {
    std::cerr << "error: " << e.what() << "\n";
    return 2;
  }
  cfg.distributed.rank = wopt.rank;
  cfg.distributed.world_size = wopt.world_size;
  const int rank = wopt.rank;

  if (inv.resume == "auto" && inv.run_dir.empty() && inv.run_id.empty()) {
    std::cerr << "error: --resume auto continues the run in --run-dir DIR (or --run-id ID); without one a new run "
                 "directory would be created and nothing could be resumed\n";
    return 2;
  }

  // ---- run directory and protocol -----------------------------------------------------
  const std::string workspace = cfg.run.workspace.empty() ? default_workspace() : cfg.run.workspace;
  std::string run_id = inv.run_id;
  std::string run_dir = inv.run_dir;
  if (run_id.empty()) run_id = run_dir.empty() ? cfg.run.name + "-" + utc_stamp() : fs::path(run_dir).filename().string();
  if (run_dir.empty()) run_dir = (fs::path(workspace) / "runs" / run_id).string();
  fs::create_directories(run_dir);
  if (rank == 0) write_file_atomic((fs::path(run_dir) / "config.yaml").string(), loaded.resolved_yaml);
  // ARCHITECTURE §4: every run leaves stderr.log (rank r > 0: stderr.rank<r>.log). Launchers
  // redirect stderr into it; a user's own terminal or redirection gets a copy.
  const std::string stderr_log = (fs::path(run_dir) / (rank == 0 ? std::string("stderr.log") : "stderr.rank" + std::to_string(rank) + ".log")).string();
  if (!same_file(2, stderr_log)) tee_stderr_to(stderr_log);

  proto::Emitter emitter(run_id, static_cast<int>(cfg.distributed.rank), (fs::path(run_dir) / "events.jsonl").string(),
                         inv.to_stdout);
  std::signal(SIGTERM, on_signal);
  std::signal(SIGINT, on_signal);
  ControlReader control(&emitter, inv.control_fifo);

  auto fail = [&](const std::string& code, const std::string& message, const std::string& hint) {
    emitter.emit(proto::ErrorData{code, message, hint});
    emitter.emit(proto::ExitData{"failed", 1, message});
    std::cerr << "error: " << message << (hint.empty() ? "" : "\n  hint: " + hint) << "\n";
    return 1;
  };

  bool multi_rank = false;
  std::shared_ptr<dist::World> world_to_leave;  // for the failure path, which leaves through it
  try {
    if (cfg.train.deterministic) {
      // cuBLAS is reproducible only with a fixed workspace (read when its handle is made, so before
      // the first matmul); the other CUDA kernels with atomics (embedding and attention backward)
      // switch to their deterministic versions, and ops that have none warn once.
      setenv("CUBLAS_WORKSPACE_CONFIG", ":4096:8", /*overwrite=*/0);
      at::globalContext().setDeterministicAlgorithms(true, /*warn_only=*/true);
      at::globalContext().setDeterministicCuDNN(true);
      at::globalContext().setBenchmarkCuDNN(false);
#if TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 5)
      // The fused attention backwards (flash, memory-efficient, cuDNN) sum dQ with atomics across
      // key blocks unless determinism is strict, and warn_only (above) keeps them so: attention
      // takes SDPA's math path instead (slower, and T×T scores in memory at long sequences).
      at::globalContext().setSDPUseFlash(false);
      at::globalContext().setSDPUseMemEfficient(false);
      at::globalContext().setSDPUseCuDNN(false);
#endif
    }
    const torch::Device device = pick_device(cfg.run.device, cfg.distributed.gpu_ids);
    if (device.is_cuda() && ops::kernels_enabled() && !cfg.train.deterministic) ops::prefer_cublaslt();
    // On CPU, LibTorch's OpenMP workers spin and steal the cores OpenBLAS's own threads use for
    // the matmuls: measured on 2 cores (demo preset), 1 intra-op thread gave ~2,000 tok/s and 2
    // gave ~300. So "auto" means one intra-op thread and OpenBLAS threading for the GEMMs.
    if (cfg.run.threads > 0) torch::set_num_threads(static_cast<int>(cfg.run.threads));
    else if (device.is_cpu()) torch::set_num_threads(1);
    if (device.is_cpu()) keep_freed_memory_for_reuse();
    torch::ScalarType compute_dtype = torch::kFloat32;
    if (cfg.train.precision == "bf16") compute_dtype = torch::kBFloat16;
    if (cfg.train.precision == "fp16") compute_dtype = torch::kFloat16;
    if (cfg.train.precision == "fp8") {
      // bf16 everywhere, FP8 products in the linear layers (engine/model/fp8.h).
      if (const auto why = model::fp8::unavailable_reason(device); !why.empty())
        throw std::runtime_error("train.precision fp8: " + why + " (use precision bf16)");
      compute_dtype = torch::kBFloat16;
    }
    model::fp8::set_enabled(cfg.train.precision == "fp8");

    // ---- ranks --------------------------------------------------------------------------
    wopt.device = device;
    if (wopt.world_size > 1 && device.is_cuda() && wopt.backend == "gloo") {
      // Our Gloo path moves host tensors only; between GPUs NCCL is the one to use anyway.
      std::cerr << "note: distributed.backend gloo with run.device cuda: using nccl\n";
      wopt.backend = "nccl";
    }
    std::shared_ptr<dist::World> comm;
    try {
      comm = dist::World::create(wopt);
    } catch (const std::exception& e) {
      return fail("rendezvous_failed", e.what(),
                  "start every rank (RANK 0.." + std::to_string(wopt.world_size - 1) + ") with the same MASTER_ADDR/MASTER_PORT "
                  "and WORLD_SIZE; distributed.timeout_s is how long rank 0 waits");
    }
    comm->set_fatal_handler([&emitter](const std::string& code, const std::string& message, const std::string& hint) {
      emitter.emit(proto::ErrorData{code, message, hint});
      emitter.emit(proto::ExitData{"failed", code == "collective_timeout" ? 3 : 1, message});
      emitter.close();
    });
    const int zero_stage = comm->size() > 1 ? static_cast<int>(cfg.optimizer.zero.stage) : 0;
    multi_rank = comm->size() > 1;
    world_to_leave = comm;

    proto::HelloData hello;
    hello.engine_version = engine_version();
    hello.torch_version = torch_version();
    hello.command = inv.command;
    hello.run_dir = fs::absolute(run_dir).string();
    hello.config_hash = config::config_hash(loaded);
    hello.pid = getpid();
    hello.world_size = static_cast<int>(cfg.distributed.world_size);
    hello.capabilities = {"control.stop", "control.checkpoint", "control.sample"};
    if (comm->size() > 1) hello.capabilities.push_back(comm->backend());
    hello.devices = describe_devices(device);
    emitter.emit(hello);
    // Prometheus /metrics (telemetry.prometheus_port), fed by this host's events.jsonl; null when off.
    const auto prometheus = telemetry::start_prometheus(cfg.telemetry, emitter, static_cast<int>(cfg.distributed.world_size));

    for (const auto& n : base_notes) {
      emitter.emit(proto::LogData{"info", n});
      std::cerr << n << "\n";
    }
    // ---- data -------------------------------------------------------------------------
    // Rank 0 prepares (tokenizer, shards) and the others then reuse what it wrote; no collective
    // here, as preparing may take longer than any collective timeout.
    if (comm->size() > 1 && rank != 0) comm->store_wait("data_ready");
    const bool instruct = cfg.data.task == "instruct";
    std::string tokenizer_path;
    data::TokenShard train_shard, val_shard;
    bool have_val = false;
    std::optional<InstructSet> sft;
    tok::Tokenizer tokenizer;
    if (instruct) {
      if (cfg.tokenizer.path.empty())
        throw std::runtime_error("instruction data needs the base model's tokenizer: set lora.base (or tokenizer.path)");
      tokenizer_path = cfg.tokenizer.path;
      tokenizer = tok::Tokenizer::load(tokenizer_path);
      sft = prepare_instruct(cfg, tokenizer);
      have_val = sft->val.rows() > 0;
      emitter.emit(proto::EventData{"data_ready", json{{"task", "instruct"}, {"template", sft->chat_template},
                                                       {"examples", sft->examples.size()}, {"train_rows", sft->train.rows()},
                                                       {"val_rows", sft->val.rows()}, {"truncated", sft->train.truncated + sft->val.truncated},
                                                       {"trained_tokens", sft->train.trained_tokens}, {"tokenizer", tokenizer_path}}});
      std::cerr << "instruction data: " << sft->examples.size() << " examples (" << sft->chat_template << " template) in "
                << sft->train.rows() << " packed rows of " << cfg.data.seq_len << " tokens; "
                << sft->train.truncated + sft->val.truncated << " truncated, " << sft->train.dropped + sft->val.dropped
                << " dropped (no completion token within data.seq_len)\n";
    } else {
      data::PrepareOptions prep = prepare_options(cfg, workspace);
      ProgressLine prep_progress("prepare");
      prep.progress = [&](double f, const std::string& stage) { prep_progress.update(f, stage); };
      emitter.emit(proto::LogData{"info", "data: " + prep.out_dir});
      const auto prepared = data::prepare_dataset(prep);
      prep_progress.done();
      emitter.emit(proto::EventData{"data_ready", json{{"dir", prepared.out_dir}, {"reused", prepared.reused},
                                                       {"documents", prepared.documents}, {"train_tokens", prepared.train_tokens},
                                                       {"val_tokens", prepared.val_tokens}, {"vocab_size", prepared.vocab_size},
                                                       {"tokenizer", prepared.tokenizer_path}}});
      tokenizer_path = prepared.tokenizer_path;
      tokenizer = tok::Tokenizer::load(tokenizer_path);
      train_shard.open((fs::path(prepared.out_dir) / "train.bin").string());
      have_val = prepared.val_tokens > cfg.data.seq_len + 2;
      if (have_val) val_shard.open((fs::path(prepared.out_dir) / "val.bin").string());
    }

    if (comm->size() > 1 && rank == 0) comm->store_set("data_ready", "1");

    // ---- model and optimizer ----------------------------------------------------------
    const int world = static_cast<int>(cfg.distributed.world_size);
    const auto args = model::args_from_config(cfg.model, static_cast<int64_t>(tokenizer.vocab_size()));
    if (args.vocab_size < static_cast<int64_t>(tokenizer.vocab_size()))
      throw std::runtime_error("model.vocab_size " + std::to_string(args.vocab_size) + " is smaller than the tokenizer's " +
                               std::to_string(tokenizer.vocab_size()));
    torch::manual_seed(static_cast<uint64_t>(cfg.run.seed));
    model::Transformer net(args);
    const bool lora = cfg.lora.enabled;
    model::LoraSpec lora_spec;
    std::set<std::string> lora_modules;
    if (lora) {
      // The frozen base: its weights now (before any dtype conversion), then the adapters.
      const std::string base = base_of(cfg);
      if (!base.empty()) {
        auto weights = ckpt::load_pretrained_weights(base);
        std::vector<std::pair<std::string, torch::Tensor>> all;
        for (auto& p : net->named_parameters()) all.emplace_back(p.key(), p.value());
        load_named(all, weights, "the base " + base);
        auto bufs = persistent_buffers(net);
        const auto present = named_subset(weights, bufs);
        if (present.size() == bufs.size()) load_named(bufs, present, "the base " + base);
      }
      lora_spec.r = cfg.lora.r;
      lora_spec.alpha = cfg.lora.lora_alpha;
      lora_spec.dropout = cfg.lora.dropout;
      lora_spec.rslora = cfg.lora.use_rslora;
      std::optional<model::PeftAdapter> start_adapter;
      if (!cfg.lora.adapter.empty()) {
        start_adapter = model::load_peft_adapter(cfg.lora.adapter);
        lora_spec = start_adapter->spec;
        lora_spec.dropout = cfg.lora.dropout;
        lora_modules = model::adapted_modules(start_adapter->tensors);
      } else {
        lora_modules = model::lora_targets(net, cfg.lora.target_modules);
      }
      torch::manual_seed(static_cast<uint64_t>(cfg.run.seed) + 1);
      const int64_t adapter_params = model::add_lora(net, lora_modules, lora_spec);
      model::freeze_base(net);
      if (start_adapter) {
        auto adapters = model::lora_tensors(net);
        load_named(adapters, start_adapter->tensors, "the adapter " + cfg.lora.adapter);
      }
      int64_t base_params = 0;
      for (auto& p : net->parameters()) base_params += p.requires_grad() ? 0 : p.numel();
      emitter.emit(proto::EventData{"lora", json{{"adapted_layers", lora_modules.size()}, {"trainable_params", adapter_params},
                                                 {"base_params", base_params}, {"r", lora_spec.r}, {"alpha", lora_spec.alpha}}});
      std::cerr << "LoRA: " << lora_modules.size() << " layers adapted (r " << lora_spec.r << "), " << human_count(adapter_params)
                << " trainable parameters over a frozen base of " << human_count(base_params) << "\n";
    }
    std::vector<std::pair<std::string, torch::Tensor>> params;
    for (auto& p : net->named_parameters())
      if (p.value().requires_grad()) params.emplace_back(p.key(), p.value());
    // fp32 master weights: the model's own parameters in fp32, separate copies otherwise.
    std::vector<std::pair<std::string, torch::Tensor>> masters;
    const bool mixed = compute_dtype != torch::kFloat32;
    for (auto& [name, p] : params) masters.emplace_back(name, mixed ? p.detach().clone() : p);
    net->to(compute_dtype);
    net->to_device(device);
    if (mixed || device.is_cuda()) {
      for (auto& [name, m] : masters) m = m.detach().to(device, torch::kFloat32).clone();
    }
    // after to(): re-read the parameter handles (same modules, converted storage)
    params.clear();
    for (auto& p : net->named_parameters())
      if (p.value().requires_grad()) params.emplace_back(p.key(), p.value());
    if (!mixed) masters = params;
    // MoE routing biases are state to checkpoint — unless the base is frozen (LoRA).
    auto buffers = lora ? std::vector<std::pair<std::string, torch::Tensor>>{} : persistent_buffers(net);
    if (lora && cfg.lora.quantize_base == "int8") {
      const auto [before, after] = model::quantize_base_int8(net);
      emitter.emit(proto::EventData{"quantized_base", json{{"bytes_before", before}, {"bytes_after", after},
                                                           {"saved_bytes", before - after}}});
      std::cerr << "int8 base: linear weights " << human_count(static_cast<double>(before)) << "B → "
                << human_count(static_cast<double>(after)) << "B\n";
    }
    const auto moe_layers = net->moe_layers();
    if (comm->size() > 1) {
      // Every rank starts from rank 0's weights (the same seed gives the same ones; this makes
      // it so whatever the initialiser does).
      torch::NoGradGuard ng;
      for (auto& [n, m] : masters) comm->broadcast(m, 0);
      for (auto& [n, b] : buffers) comm->broadcast(b, 0);
      if (mixed)
        for (size_t i = 0; i < params.size(); ++i) params[i].second.copy_(masters[i].second);
    }

    AdamWOptions aopt;
    aopt.beta1 = cfg.optimizer.beta1;
    aopt.beta2 = cfg.optimizer.beta2;
    aopt.eps = cfg.optimizer.eps;
    aopt.weight_decay = cfg.optimizer.weight_decay;
    // ZeRO builds its sharded optimizer once the starting weights are known (below).
    std::unique_ptr<AdamW> optimizer = zero_stage == 0 ? std::make_unique<AdamW>(masters, aopt) : nullptr;
    ckpt::NamedTensors resume_optimizer_state;
    LrSchedule schedule{cfg.optimizer.schedule, cfg.optimizer.lr, cfg.optimizer.min_lr, cfg.optimizer.warmup_steps,
                        cfg.train.max_steps};
    std::vector<torch::Tensor> master_tensors;
    for (auto& [n, m] : masters) master_tensors.push_back(m);

    if (!inv.dump_initial_weights.empty()) ckpt::save_tensors(inv.dump_initial_weights, masters);

    // ---- checkpoints and resume -------------------------------------------------------
    ckpt::CheckpointPolicy policy;
    policy.save_dir = fs::path(cfg.checkpoint.save_dir).is_absolute() ? cfg.checkpoint.save_dir
                                                                      : (fs::path(run_dir) / cfg.checkpoint.save_dir).string();
    policy.save_interval_s = cfg.checkpoint.save_interval;
    policy.save_every_steps = cfg.checkpoint.save_every_steps;
    policy.keep_n_latest = static_cast<int>(cfg.checkpoint.keep_n_latest);
    policy.keep_best = static_cast<int>(cfg.checkpoint.keep_best);
    policy.async = cfg.checkpoint.async;
    // Rank 0 writes (it must hold the save_dir lock, so it opens the manager first); the others
    // only read it to resume.
    std::unique_ptr<ckpt::CheckpointManager> checkpoints_owner;
    if (rank == 0) checkpoints_owner = std::make_unique<ckpt::CheckpointManager>(policy);
    comm->barrier();
    if (rank != 0) checkpoints_owner = std::make_unique<ckpt::CheckpointManager>(policy);
    ckpt::CheckpointManager& checkpoints = *checkpoints_owner;

    TrainState st;
    std::string resume_dir;
    if (rank != 0) {
      // Rank 0 picks the checkpoint, so every rank resumes from the same one.
      resume_dir = comm->store_get("resume_dir");
    } else if (inv.resume == "auto") {
      std::vector<std::string> skipped;
      if (auto latest = checkpoints.latest_valid(&skipped)) resume_dir = latest->path;
      for (const auto& s : skipped) emitter.emit(proto::EventData{"checkpoint_skipped", json{{"message", s}}});
      for (const auto& s : skipped) std::cerr << "warning: " << s << "\n";
      if (resume_dir.empty()) {
        const std::string msg = "no whole checkpoint in " + policy.save_dir + ": starting from step 0";
        emitter.emit(proto::LogData{"info", msg});
        std::cerr << msg << "\n";
      }
    } else if (!inv.resume.empty()) {
      resume_dir = inv.resume;
    }
    if (rank == 0 && comm->size() > 1) comm->store_set("resume_dir", resume_dir);
    if (!resume_dir.empty()) {
      auto payload = ckpt::CheckpointManager::load(resume_dir);
      load_named(masters, payload.model, "model.safetensors in " + resume_dir);
      load_named(buffers, payload.model, "model.safetensors in " + resume_dir);
      if (optimizer) optimizer->load_state_tensors(payload.optimizer);
      else resume_optimizer_state = payload.optimizer;
      if (mixed) {
        torch::NoGradGuard ng;
        for (size_t i = 0; i < params.size(); ++i) params[i].second.copy_(masters[i].second);
      }
      const auto& s = payload.state;
      st.step = s.at("step").get<int64_t>();
      st.tokens = s.value("tokens", int64_t{0});
      st.loss_scale = s.value("loss_scale", 65536.0);
      st.good_steps = s.value("good_steps", int64_t{0});
      if (s.contains("best_val_loss") && s["best_val_loss"].is_number()) st.best_val_loss = s["best_val_loss"].get<double>();
      st.parent_checkpoint = fs::absolute(resume_dir).string();
      if (s.value("config_hash", std::string()) != hello.config_hash) {
        const std::string msg = "resuming from a checkpoint made with a different config (" + resume_dir +
                                "); the data order, schedule and shapes follow the new one";
        emitter.emit(proto::LogData{"warn", msg});
        std::cerr << "warning: " << msg << "\n";
      }
      if (st.step >= cfg.train.max_steps) {
        const std::string msg = "the run is already complete: " + resume_dir + " is at step " + std::to_string(st.step) +
                                " and train.max_steps is " + std::to_string(cfg.train.max_steps) +
                                "; nothing to do (raise train.max_steps to train further)";
        emitter.emit(proto::LogData{"info", msg});
        emitter.emit(proto::ExitData{"completed", 0, msg});
        std::cerr << msg << "\n";
        return 0;
      }
      emitter.emit(proto::EventData{"resumed", json{{"step", st.step}, {"path", st.parent_checkpoint}}});
      std::cerr << "resumed from " << resume_dir << " at step " << st.step << "\n";
    }

    if (resume_dir.empty() && !cfg.model.init_from.empty() && !lora) {
      // Fine-tuning / continued pre-training: weights from a checkpoint or an imported model,
      // optimizer and step fresh.
      auto weights = ckpt::load_pretrained_weights(cfg.model.init_from);
      load_named(masters, weights, "model.init_from " + cfg.model.init_from);
      if (!buffers.empty()) load_named(buffers, named_subset(weights, buffers), "model.init_from " + cfg.model.init_from);
      if (mixed) {
        torch::NoGradGuard ng;
        for (size_t i = 0; i < params.size(); ++i) params[i].second.copy_(masters[i].second);
      }
      st.parent_checkpoint = fs::absolute(cfg.model.init_from).string();
      emitter.emit(proto::EventData{"initialized", json{{"from", st.parent_checkpoint}}});
      std::cerr << "initialised the weights from " << cfg.model.init_from << "\n";
    }

    // ---- data parallelism ---------------------------------------------------------------
    std::unique_ptr<dist::GradSync> grad_sync;
    std::unique_ptr<dist::ZeroAdamW> zero;
    if (comm->size() > 1) {
      std::vector<torch::Tensor> trainable;
      for (auto& [n, p] : params) trainable.push_back(p);
      dist::GradSyncOptions gopt;
      gopt.zero_stage = zero_stage;
      grad_sync = std::make_unique<dist::GradSync>(comm, trainable, gopt);
      if (zero_stage > 0) {
        grad_sync->shard_params();
        zero = std::make_unique<dist::ZeroAdamW>(comm, *grad_sync, masters, aopt);
        if (!resume_optimizer_state.empty()) zero->load(masters, resume_optimizer_state);
        resume_optimizer_state.clear();
        zero->publish();
        // The full fp32 masters are not kept: each rank holds its shard (the point of ZeRO).
        if (mixed) masters.clear();
        master_tensors.clear();
      }
      std::ostringstream note;
      note << "data parallel: " << comm->size() << " ranks over " << comm->backend() << ", " << grad_sync->buckets().size()
           << " gradient bucket(s)" << (zero_stage ? ", ZeRO stage " + std::to_string(zero_stage) : std::string());
      emitter.emit(proto::EventData{"distributed", json{{"world_size", comm->size()}, {"backend", comm->backend()},
                                                        {"buckets", grad_sync->buckets().size()}, {"zero_stage", zero_stage},
                                                        {"optimizer_state_bytes", zero ? zero->local_state_bytes() : int64_t{0}}}});
      if (rank == 0) std::cerr << note.str() << "\n";
    }

    int64_t last_saved_step = -1;
    // The error of the newest save, "" when it succeeded: a run must not end "completed" (exit 0)
    // when its last checkpoint could not be written (a full disk), or its work would be lost silently.
    auto last_save_error = std::make_shared<std::string>();
    auto last_save_mu = std::make_shared<std::mutex>();
    // The update overlapped with the next forward (set up before the loop, where it applies): whatever
    // reads the parameters or the optimizer's state outside the forward waits for it first.
    std::unique_ptr<ops::OverlappedUpdate> overlap;
    auto save_checkpoint = [&](bool wait) {
      if (overlap) overlap->wait_all();
      if (last_saved_step == st.step) {
        if (wait) checkpoints.wait();
        return;
      }
      last_saved_step = st.step;
      ckpt::CheckpointPayload payload;
      payload.step = st.step;
      // ZeRO: gather the shards (every rank takes part); rank 0 writes the whole checkpoint.
      if (zero) payload.model = zero->gather_masters();
      if (zero) payload.optimizer = zero->gather_state();
      if (rank != 0) return;
      if (!zero)
        for (auto& [n, m] : masters) payload.model.emplace_back(n, m.detach());
      for (auto& [n, b] : buffers) payload.model.emplace_back(n, b.detach().to(torch::kFloat32));
      if (lora) {
        // The checkpoint directory is also a PEFT adapter directory.
        payload.model_copy_file = "adapter_model.safetensors";
        payload.model_copy_prefix = "base_model.model.";
        payload.extra_text_files.emplace_back("adapter_config.json",
                                              model::peft_adapter_config(lora_spec, lora_modules, fs::absolute(base_of(cfg)).string()));
      }
      if (optimizer) payload.optimizer = optimizer->state_tensors();
      payload.state = json{{"step", st.step},
                           {"tokens", st.tokens},
                           {"loss_scale", st.loss_scale},
                           {"good_steps", st.good_steps},
                           {"data_cursor", json{{"step", st.step}, {"seed", cfg.run.seed}}},
                           {"config_hash", hello.config_hash},
                           {"parent_checkpoint", st.parent_checkpoint},
                           {"run_id", run_id},
                           {"precision", cfg.train.precision},
                           {"world_size", world},
                           {"zero_stage", zero_stage},
                           {"lora", lora},
                           {"base", base_of(cfg).empty() ? std::string() : fs::absolute(base_of(cfg)).string()},
                           {"tokenizer", tokenizer_path}};
      if (st.best_val_loss) payload.state["best_val_loss"] = *st.best_val_loss;
      payload.val_loss = st.last_val_loss;
      const int64_t step = st.step;
      checkpoints.save(std::move(payload), [&emitter, step, last_save_error, last_save_mu](const ckpt::CheckpointInfo& info, double seconds) {
        {
          std::lock_guard<std::mutex> g(*last_save_mu);
          *last_save_error = info.error;
        }
        if (!info.error.empty()) {
          emitter.emit(proto::ErrorData{"checkpoint_failed", info.error, "free disk space or change checkpoint.save_dir; the previous checkpoint is intact"});
          return;
        }
        emitter.emit(proto::EventData{"checkpoint_saved", json{{"step", step}, {"path", info.path}, {"seconds", seconds}, {"bytes", info.bytes}}});
      });
      if (wait) checkpoints.wait();
    };

    // ---- evaluation and samples -------------------------------------------------------
    data::BatchLoaderOptions lopt;
    lopt.seq_len = cfg.data.seq_len;
    lopt.micro_batch_size = cfg.train.micro_batch_size;
    lopt.gradient_accumulation_steps = static_cast<int>(cfg.train.gradient_accumulation_steps);
    lopt.seed = static_cast<uint64_t>(cfg.run.seed);
    lopt.rank = static_cast<int>(cfg.distributed.rank);
    lopt.world_size = world;
    lopt.device = device;
    std::unique_ptr<data::BatchLoader> loader;
    if (!instruct) loader = std::make_unique<data::BatchLoader>(shard_source(train_shard), lopt);
    std::unique_ptr<data::BatchLoader> val_loader;
    if (have_val && !instruct) {
      auto vopt = lopt;
      vopt.seed = static_cast<uint64_t>(cfg.run.seed) ^ 0x5eedf00dull;
      vopt.gradient_accumulation_steps = 1;
      val_loader = std::make_unique<data::BatchLoader>(shard_source(val_shard), vopt);
    }
    auto evaluate = [&]() -> double {
      if (overlap) overlap->wait_all();
      torch::NoGradGuard ng;
      net->eval();
      double total = 0;
      const int64_t n = std::max<int64_t>(1, cfg.train.eval_batches);
      for (int64_t i = 0; i < n; ++i) {
        auto b = instruct ? instruct_batch(sft->val, i, 0, 1, cfg.train.micro_batch_size, 0, 1, static_cast<uint64_t>(cfg.run.seed) ^ 0x5eedf00dull)
                          : val_loader->make(i, 0);
        total += instruct ? net->loss(b.inputs.to(device), b.targets.to(device), b.segments.to(device), b.positions.to(device)).item<double>()
                          : net->loss(b.inputs.to(device), b.targets.to(device)).item<double>();
      }
      net->train();
      // Each rank evaluated its own slice of the validation windows: the global mean.
      return comm->all_reduce_sum(total / static_cast<double>(n)) / comm->size();
    };
    auto sample = [&](const std::string& prompt, double temperature, uint64_t seed) {
      if (overlap) overlap->wait_all();
      torch::NoGradGuard ng;
      net->eval();
      auto ids = tokenizer.encode(prompt);
      if (ids.empty()) ids.push_back(tokenizer.eos_id().value_or(0));
      std::vector<int64_t> seq(ids.begin(), ids.end());
      if (static_cast<int64_t>(seq.size()) >= args.max_seq_len)
        seq.erase(seq.begin(), seq.end() - (args.max_seq_len - 1));
      std::mt19937_64 rng(seed);
      std::vector<uint32_t> out;
      // Prefill the prompt into a KV cache, then decode one token per step; past the model's
      // context the window slides and is re-encoded.
      const int64_t capacity = std::min<int64_t>(args.max_seq_len, static_cast<int64_t>(seq.size()) + cfg.train.sample_tokens);
      auto cache = net->new_cache(1, capacity);
      auto logits_of = [&](int64_t fed) {
        if (cache.length + 1 > cache.capacity || fed < 0) {
          cache.length = 0;
          const int64_t start = std::max<int64_t>(0, static_cast<int64_t>(seq.size()) - (cache.capacity - 1));
          auto idx = torch::tensor(std::vector<int64_t>(seq.begin() + start, seq.end()), torch::kInt64).unsqueeze(0).to(device);
          return net->forward_cached(idx, cache).select(1, idx.size(1) - 1).squeeze(0);
        }
        auto idx = torch::tensor(std::vector<int64_t>{fed}, torch::kInt64).view({1, 1}).to(device);
        return net->forward_cached(idx, cache).select(1, 0).squeeze(0);
      };
      int64_t fed = -1;  // first call: prefill the prompt
      for (int64_t i = 0; i < cfg.train.sample_tokens; ++i) {
        auto logits = logits_of(fed).to(torch::kCPU, torch::kFloat32);
        int64_t next = 0;
        if (temperature <= 0) {
          next = logits.argmax().item<int64_t>();
        } else {
          auto probs = torch::softmax(logits / temperature, -1).contiguous();
          const float* p = probs.data_ptr<float>();
          std::uniform_real_distribution<double> u(0.0, 1.0);
          double r = u(rng), acc = 0;
          next = probs.size(0) - 1;
          for (int64_t v = 0; v < probs.size(0); ++v) {
            acc += p[v];
            if (r < acc) { next = v; break; }
          }
        }
        if (tokenizer.eos_id() && static_cast<uint32_t>(next) == *tokenizer.eos_id()) break;
        seq.push_back(next);
        out.push_back(static_cast<uint32_t>(next));
        fed = next;
      }
      net->train();
      return tokenizer.decode(out);
    };
    auto emit_samples = [&](const std::string& prompt) {
      for (double temperature : {0.0, 0.8}) {
        const auto text = sample(prompt, temperature, static_cast<uint64_t>(cfg.run.seed) + st.step);
        emitter.emit(proto::EventData{"sample", json{{"step", st.step}, {"prompt", prompt}, {"text", text}, {"temperature", temperature}}});
        std::cerr << "\nsample @" << st.step << " (T=" << temperature << "): " << prompt << text << "\n";
      }
    };

    // ---- the loop ---------------------------------------------------------------------
    SystemSampler sampler(&emitter, device, cfg.telemetry.system_interval_s);
    const int64_t accum = cfg.train.gradient_accumulation_steps;
    const int64_t shards = cfg.model.activation_sharding.enabled ? std::max<int64_t>(1, cfg.model.activation_sharding.num_shards) : 1;
    const int64_t tokens_per_step = cfg.train.micro_batch_size * cfg.data.seq_len * accum * world;
    const double flops_per_token = 6.0 * static_cast<double>(model::matmul_parameter_count(args)) +
                                   12.0 * args.n_layers * args.d_model * cfg.data.seq_len;
    const double peak = peak_flops(device, compute_dtype);
    const bool fp16 = compute_dtype == torch::kFloat16;
    if (device.is_cuda()) telemetry::cuda_reset_peak(device.index());
    // bf16 without ZeRO and the kernels on CUDA: one fused AdamW pass reads the model's bf16 gradients
    // and writes its bf16 weights (engine/ops/adamw.h), instead of converting the gradients to fp32
    // before and copying the masters back after (+4.4% tokens/s on llama-1b, H200; FATHOM_ADAMW_MIXED=0
    // turns it off). These are the weights it writes.
    std::vector<torch::Tensor> model_weights;
    if (mixed && !fp16 && adamw_mixed_requested())
      for (auto& [name, p] : params) model_weights.push_back(p);
    // Single-rank bf16 on CUDA with the one-pass AdamW: the norm, the clip coefficient and the
    // finiteness test stay on the device and the host reads them once the update is queued (see the
    // step below), so nothing waits between the backward pass and the optimizer.
    const bool device_clip = device.is_cuda() && !grad_sync && !zero && optimizer && !model_weights.empty() && device_clip_requested();
    std::vector<int> param_group_of;  // (overlap) each parameter's group, in `params` order
    if (device_clip && moe_layers.empty() && overlap_update_requested()) {
      overlap = std::make_unique<ops::OverlappedUpdate>(device, net->param_groups());
      for (const auto& [name, p] : params) param_group_of.push_back(net->param_group(name));
      net->set_param_wait([o = overlap.get()](int g) { o->wait(g); });
    } else if (overlap_update_requested()) {
      std::cerr << "note: FATHOM_OVERLAP_UPDATE=1 ignored: it applies to single-GPU CUDA training with the one-pass "
                   "AdamW and the device-side clip, without MoE layers\n";
    }

    // Fault injection for tests: FATHOM_INJECT_NAN_FROM_STEP=N makes every step ≥ N non-finite.
    int64_t inject_nan_from = -1;
    if (const char* v = std::getenv("FATHOM_INJECT_NAN_FROM_STEP")) inject_nan_from = std::atoll(v);
    // FATHOM_INJECT_HANG_RANK=r FATHOM_INJECT_HANG_AT_STEP=N: rank r stops before step N (watchdog tests).
    int64_t inject_hang_at = -1;
    if (const char* r = std::getenv("FATHOM_INJECT_HANG_RANK"); r && std::atoi(r) == rank)
      if (const char* v = std::getenv("FATHOM_INJECT_HANG_AT_STEP")) inject_hang_at = std::atoll(v);

    net->train();
    if (loader) loader->start(st.step);
    ProgressLine progress("train");
    auto interval_t0 = Clock::now();
    int64_t interval_tokens = 0;
    double t_data = 0, t_fwd = 0, t_bwd = 0, t_opt = 0, t_sync = 0;
    auto bench_t0 = Clock::now();
    int64_t bench_tokens = 0;
    std::unique_ptr<StepProfiler> profiler;  // bench train --profile: over the timed steps
    std::unique_ptr<telemetry::StepClock> step_clock;  // bench train on CUDA: GPU time within and between steps
    // bench train's clock starts once the warm-up steps' queued work has run (as the end waits for the
    // timed steps' work, and as tests/bench/torch_reference_train.py times its steps): otherwise the
    // last warm-up update, still running on the GPU, would count as timed.
    auto start_bench_clock = [&] {
      if (device.is_cuda()) torch::cuda::synchronize(device.index());
      bench_t0 = Clock::now();
      bench_tokens = 0;
      if (device.is_cuda()) telemetry::cuda_reset_peak(device.index());
      if (device.is_cuda() && inv.bench_profile.empty()) step_clock = std::make_unique<telemetry::StepClock>();
      if (!inv.bench_profile.empty() && rank == 0) {
        try {
          profiler = std::make_unique<StepProfiler>(device.is_cuda());
        } catch (const std::exception& e) {
          std::cerr << "warning: bench --profile: " << e.what() << "; timing without a profile\n";
        }
      }
    };
    if (inv.bench && inv.bench_warmup_steps == st.step) start_bench_clock();  // no warm-up steps
    std::string exit_status = "completed";

    while (st.step < cfg.train.max_steps) {
      if (st.step == inject_hang_at) {
        std::cerr << "injected hang before step " << st.step << " (FATHOM_INJECT_HANG_AT_STEP)" << std::endl;
        while (true) std::this_thread::sleep_for(std::chrono::seconds(1));
      }
      const auto step_t0 = Clock::now();
      if (step_clock) step_clock->step_begins();
      const double lr = schedule.at(st.step);
      // The data/forward/backward/optimizer split needs device syncs on CUDA: take it only on the
      // steps that are logged, so the others run without host round trips (and never in `bench train`,
      // whose clock would count the GPU idling at those syncs).
      const int64_t log_every = std::max<int64_t>(1, cfg.train.log_interval);
      const bool timed = !device.is_cuda() || (!inv.bench && ((st.step + 1) % log_every == 0 || st.step + 1 == cfg.train.max_steps));
      auto sync = [&] { if (timed && device.is_cuda()) torch::cuda::synchronize(device.index()); };
      comm->set_exact_timing(timed && device.is_cuda());
      if (grad_sync) grad_sync->begin_step();
      torch::Tensor loss_sum;
      torch::Tensor last_graph;  // device_clip: the last micro-batch's loss, its graph kept until the update is queued
      if (device.is_cuda()) t_data = t_fwd = t_bwd = t_opt = t_sync = 0;  // (the split is one step's)
      for (int64_t micro = 0; micro < accum; ++micro) {
        auto t0 = Clock::now();
        auto batch = instruct ? instruct_batch(sft->train, st.step, static_cast<int>(micro), static_cast<int>(accum),
                                               cfg.train.micro_batch_size, static_cast<int>(cfg.distributed.rank), world,
                                               static_cast<uint64_t>(cfg.run.seed))
                              : loader->next();
        t_data += seconds_since(t0);
        const int64_t B = batch.inputs.size(0);
        const int64_t sub = std::min<int64_t>(shards, B);
        for (int64_t s = 0; s < sub; ++s) {
          const int64_t b0 = s * B / sub, b1 = (s + 1) * B / sub;
          auto x = batch.inputs.narrow(0, b0, b1 - b0);
          auto y = batch.targets.narrow(0, b0, b1 - b0);
          torch::Tensor seg, pos;
          if (batch.segments.defined()) {
            seg = batch.segments.narrow(0, b0, b1 - b0).to(device);
            pos = batch.positions.narrow(0, b0, b1 - b0).to(device);
            x = x.to(device);
            y = y.to(device);
          }
          t0 = Clock::now();
          auto loss = net->loss(x, y, seg, pos) * (static_cast<double>(b1 - b0) / static_cast<double>(B)) / static_cast<double>(accum);
          if (inject_nan_from >= 0 && st.step >= inject_nan_from) loss = loss * std::numeric_limits<double>::quiet_NaN();
          sync();
          t_fwd += seconds_since(t0);
          t0 = Clock::now();
          // Data parallel: the hooks start reducing buckets during the last backward only.
          if (grad_sync) grad_sync->set_last_micro(micro + 1 == accum && s + 1 == sub);
          (fp16 ? loss * st.loss_scale : loss).backward();
          sync();
          t_bwd += seconds_since(t0);
          loss_sum = loss_sum.defined() ? loss_sum + loss.detach() : loss.detach();
          if (device_clip) last_graph = loss;
        }
      }
      double step_loss = device_clip ? 0.0 : loss_sum.item<double>();
      if (grad_sync) {
        // Wait for the buckets backward did not finish; the loss reported is the global mean.
        const auto ts = Clock::now();
        grad_sync->finish();
        sync();
        t_sync += seconds_since(ts);
        step_loss = comm->all_reduce_sum(step_loss) / comm->size();
      }
      auto t0 = Clock::now();
      // The one-pass mixed-precision AdamW (model_weights above), where it applies.
      std::vector<torch::Tensor> model_grads;
      bool fused_mixed = false;
      if (!model_weights.empty() && !zero && optimizer) {
        for (auto& [name, p] : params) model_grads.push_back(p.grad());
        fused_mixed = optimizer->can_step_mixed(model_grads, model_weights);
        if (!fused_mixed) model_grads.clear();  // or the conversion below would not free them
      }
      auto drop_model_grads = [&] {
        model_grads.clear();
        for (auto& [name, p] : params) p.mutable_grad() = torch::Tensor();
      };
      // [norm, clip coefficient] on the device (NaN coefficient: a non-finite step, which the AdamW
      // kernel skips); the host reads them with the loss after the update is queued.
      torch::Tensor norm_clip;
      if (device_clip && fused_mixed && ops::grad_norm_clip_applicable(model_grads))
        norm_clip = ops::grad_norm_clip(model_grads, cfg.train.grad_clip, loss_sum);
      else if (device_clip)
        step_loss = loss_sum.item<double>();
      double grad_norm = 0.0;
      bool device_skipped = false;
      if (norm_clip.defined()) {
        // The copy to the host is queued before the update and waited for alone: the step's one
        // sync, with the update still running on the GPU while the host reads.
        ops::HostRead read(torch::cat({norm_clip, loss_sum.to(torch::kFloat32).reshape({1})}));
        if (overlap) {
          // On the side stream, a group at a time; the next forward waits for each group as it reaches it.
          auto side_reads = model_grads;
          side_reads.push_back(norm_clip);
          overlap->run([&](const std::function<void(int)>& done) {
            optimizer->step_mixed_groups(lr, model_grads, model_weights, norm_clip.narrow(0, 1, 1), param_group_of, overlap->groups(), done);
            if (step_clock) step_clock->step_queued();  // (on the side stream: the step ends with its update)
          }, side_reads);
        } else {
          optimizer->step_mixed(lr, model_grads, model_weights, 1.0, norm_clip.narrow(0, 1, 1));
        }
        drop_model_grads();
        last_graph.reset();  // (its nodes' destruction comes after the update is queued)
        const auto blocked_t0 = Clock::now();
        const auto host = read.get();
        if (step_clock) step_clock->host_blocked(seconds_since(blocked_t0));
        grad_norm = host[0].item<double>();
        step_loss = host[2].item<double>();
        // A NaN coefficient: the kernel skipped the update, so the step is undone here and counted as
        // skipped below (the kernel's decision, whatever the host makes of the values it read).
        device_skipped = std::isnan(host[1].item<float>());
        if (device_skipped) optimizer->set_steps_taken(optimizer->steps_taken() - 1);
      }
      // gradients → fp32 masters
      if (mixed && !zero && !fused_mixed) {
        torch::NoGradGuard ng;
        const double inv_scale = fp16 ? 1.0 / st.loss_scale : 1.0;
        for (size_t i = 0; i < params.size(); ++i) {
          auto& g = params[i].second.mutable_grad();
          masters[i].second.mutable_grad() = !g.defined() ? torch::Tensor() : fp16 ? g.to(torch::kFloat32).mul_(inv_scale) : g.to(torch::kFloat32);
          g = torch::Tensor();
        }
      }
      // Data parallel: every rank holds the averaged gradients (ZeRO: its shard of them), so the
      // norm is the global one.
      // Without ZeRO the norm is only measured here; AdamW applies the clip coefficient as it reads
      // the gradients (no separate pass over them on CUDA: ~2.8 ms a step at llama-1b).
      if (!norm_clip.defined())
        grad_norm = zero          ? zero->clip_grad_norm(cfg.train.grad_clip, fp16 ? 1.0 / st.loss_scale : 1.0)
                    : fused_mixed ? train::grad_norm(model_grads)
                                  : clip_grad_norm(master_tensors, /*max_norm=*/0.0);
      const double clip_scale = zero ? 1.0 : clip_coefficient(grad_norm, cfg.train.grad_clip);
      const bool finite = norm_clip.defined() ? !device_skipped : std::isfinite(grad_norm) && std::isfinite(step_loss);
      if (!finite) {
        for (auto& m : master_tensors) m.mutable_grad() = torch::Tensor();
        if (fused_mixed) drop_model_grads();
        if (zero) zero->drop_grads();
        if (fp16 && st.loss_scale > 1.0) {
          // Dynamic loss scaling (Micikevicius et al. 2018): overflow → halve the scale, skip.
          st.loss_scale /= 2.0;
          st.good_steps = 0;
          for (auto& m : moe_layers) m->update_bias(/*apply=*/false);
          emitter.emit(proto::EventData{"nan_skipped", json{{"step", st.step}, {"reason", "fp16 overflow"}, {"loss_scale", st.loss_scale}}});
          continue;  // same step again with the lower scale
        }
        ++st.consecutive_skips;
        emitter.emit(proto::EventData{"nan_skipped", json{{"step", st.step}, {"consecutive", st.consecutive_skips}, {"loss", step_loss}, {"grad_norm", grad_norm}}});
        if (st.consecutive_skips >= cfg.train.max_nan_skips) {
          throw std::runtime_error("loss or gradients were NaN/Inf for " + std::to_string(st.consecutive_skips) +
                                   " steps in a row (step " + std::to_string(st.step) + ")");
        }
        for (auto& m : moe_layers) m->update_bias(/*apply=*/false);  // a skipped step moves no routing bias
        ++st.step;
        continue;
      }
      st.consecutive_skips = 0;
      if (zero) {
        zero->step(lr);
        zero->publish();
      } else if (norm_clip.defined()) {
        // (queued above)
      } else if (fused_mixed) {
        optimizer->step_mixed(lr, model_grads, model_weights, clip_scale);
        drop_model_grads();
      } else {
        optimizer->step(lr, clip_scale);
      }
      for (auto& m : moe_layers) m->update_bias();
      // Routing biases move with each rank's own expert loads; rank 0's are kept everywhere.
      if (comm->size() > 1)
        for (auto& [n, b] : buffers) comm->broadcast(b, 0);
      for (auto& m : master_tensors) m.mutable_grad() = torch::Tensor();
      if (mixed && !zero && !fused_mixed) {
        torch::NoGradGuard ng;
        for (size_t i = 0; i < params.size(); ++i) params[i].second.copy_(masters[i].second);
      }
      if (fp16 && ++st.good_steps >= 2000) {
        st.loss_scale *= 2.0;
        st.good_steps = 0;
      }
      if (step_clock) step_clock->step_queued();
      sync();
      t_opt += seconds_since(t0);
      ++st.step;
      st.tokens += tokens_per_step;
      interval_tokens += tokens_per_step;
      if (inv.bench && st.step == inv.bench_warmup_steps) {
        start_bench_clock();
      } else if (inv.bench) {
        bench_tokens += tokens_per_step;
      }

      const double step_time = seconds_since(step_t0);
      progress.update_step(st.step, cfg.train.max_steps, step_loss, lr, tokens_per_step / std::max(step_time, 1e-9));

      const bool log_now = st.step % std::max<int64_t>(1, cfg.train.log_interval) == 0 || st.step == cfg.train.max_steps;
      std::optional<double> val_loss;
      if (!inv.bench && (val_loader || (instruct && have_val)) && cfg.train.eval_interval > 0 &&
          (st.step % cfg.train.eval_interval == 0 || st.step == cfg.train.max_steps)) {
        val_loss = evaluate();
        if (!st.best_val_loss || *val_loss < *st.best_val_loss) st.best_val_loss = *val_loss;
        st.last_val_loss = val_loss;
        emitter.emit(proto::EventData{"eval", json{{"step", st.step}, {"val_loss", *val_loss}, {"val_ppl", std::exp(*val_loss)}}});
      }
      if (log_now || val_loss) {
        const double dt = seconds_since(interval_t0);
        proto::MetricData m;
        m.step = st.step;
        m.tokens = st.tokens;
        m.loss = step_loss;
        m.lr = lr;
        m.grad_norm = grad_norm;
        m.tokens_per_s = interval_tokens / std::max(dt, 1e-9);
        // tokens_per_s counts every rank's tokens: the FLOPs available are every rank's GPU.
        m.mfu = peak > 0 ? m.tokens_per_s * flops_per_token / (peak * comm->size()) : 0.0;
        const double steps_in_interval = std::max(1.0, static_cast<double>(interval_tokens) / tokens_per_step);
        // On CUDA the split comes from the last (synchronised) step alone; on CPU it is the mean.
        const double split_steps = device.is_cuda() ? 1.0 : steps_in_interval;
        m.step_time_s = dt / steps_in_interval;
        m.data_s = t_data / split_steps;
        m.fwd_s = t_fwd / split_steps;
        m.bwd_s = t_bwd / split_steps;
        m.opt_s = t_opt / split_steps;
        if (comm->size() > 1) {
          // Communication: per-op totals in a `system` record; per step, the collectives' time
          // (overlapped with backward or not), the sync latency after backward, and the share of
          // wall time this rank spent blocked waiting on communication.
          proto::SystemData sys;
          double comm_total = 0;  // wall time with a collective in flight
          for (const auto& op : comm->take_stats(&comm_total)) {
            proto::CollectiveSample c;
            c.op = op.op;
            c.algorithm = op.algorithm;
            c.count = op.count;
            c.bytes = op.bytes;
            c.time_ms = op.time_s * 1e3;
            c.algbw_gbps = op.algbw_gbps(comm->size());
            c.busbw_gbps = op.busbw_gbps(comm->size());
            sys.collectives.push_back(c);
          }
          emitter.emit(sys);
          m.comm_s = comm_total / steps_in_interval;
          m.extra["comm.sync_s"] = t_sync / split_steps;
          m.extra["comm.wait_frac"] = std::min(1.0, comm->take_wait_s() / std::max(dt, 1e-9));
        }
        if (fp16) m.loss_scale = st.loss_scale;
        m.val_loss = val_loss;
        if (!moe_layers.empty()) {
          // Expert load per MoE layer since the last record (the Monitor's heat-map).
          double aux = 0, dropped = 0, assigned = 0, imbalance = 0;
          for (size_t l = 0; l < moe_layers.size(); ++l) {
            const auto stats = moe_layers[l]->take_stats();
            aux += stats.aux_loss;
            dropped += stats.dropped_frac * static_cast<double>(stats.assignments);
            assigned += static_cast<double>(stats.assignments);
            const int64_t layer = args.moe.first_k_dense + static_cast<int64_t>(l);
            double max_load = 0;
            for (size_t e = 0; e < stats.load.size(); ++e) {
              m.extra["moe.load." + std::to_string(layer) + "." + std::to_string(e)] = stats.load[e];
              max_load = std::max(max_load, stats.load[e]);
            }
            imbalance = std::max(imbalance, max_load * static_cast<double>(stats.load.size()));
          }
          m.extra["moe.aux_loss"] = aux;
          m.extra["moe.dropped_frac"] = assigned > 0 ? dropped / assigned : 0.0;
          m.extra["moe.load_imbalance"] = imbalance;
        }
        emitter.emit(m);
        interval_t0 = Clock::now();
        interval_tokens = 0;
        t_data = t_fwd = t_bwd = t_opt = t_sync = 0;
      }
      if (!inv.bench) {
        std::string prompt = rank == 0 ? control.take_sample_prompt() : std::string();
        if (prompt.empty() && rank == 0 && cfg.train.sample_interval > 0 && st.step % cfg.train.sample_interval == 0)
          prompt = cfg.train.sample_prompt;
        if (!prompt.empty()) emit_samples(prompt);
        bool stop = g_stop_requested.load();
        bool save_now = g_checkpoint_requested.exchange(false) || checkpoints.due(st.step, Clock::now());
        if (comm->size() > 1) {
          // Ranks agree: any rank asked to stop or save (signals, control lines, its clock).
          const auto votes = comm->all_reduce_sum(std::vector<double>{stop ? 1.0 : 0.0, save_now ? 1.0 : 0.0});
          stop = votes[0] > 0;
          save_now = votes[1] > 0;
        }
        if (stop || save_now) save_checkpoint(stop);
        if (stop) {
          exit_status = "stopped";
          break;
        }
      } else if (comm->size() > 1 ? comm->all_reduce_sum(g_stop_requested ? 1.0 : 0.0) > 0 : g_stop_requested.load()) {
        exit_status = "stopped";
        break;
      }
    }
    progress.done();
    if (overlap) {
      overlap->wait_all();
      net->set_param_wait({});  // (it refers to `overlap`, which goes with this scope)
      std::cerr << "overlapped update: " << overlap->side_runs() << " update(s) ran on a side stream\n";
    }
    if (loader) loader->start(st.step);  // stop prefetching past the end (restart is cheap)
    if (!inv.bench && exit_status == "completed") {
      save_checkpoint(true);
    }
    checkpoints.wait();
    comm->barrier();  // ranks leave together (rank 0 hosts the store the others still use)
    if (!inv.bench && rank == 0) {
      std::string save_error;
      {
        std::lock_guard<std::mutex> g(*last_save_mu);
        save_error = *last_save_error;
      }
      if (!save_error.empty()) {
        exit_status = "failed";
        emitter.emit(proto::ExitData{exit_status, 1, "the last checkpoint could not be written: " + save_error});
        emitter.close();
        std::cerr << "error: the run ended at step " << st.step << " but its last checkpoint could not be written: " << save_error
                  << "\n  hint: free disk space or change checkpoint.save_dir, then resume with --resume auto\n";
        return 1;
      }
    }
    if (inv.bench) {
      // The clock stops once the GPU has run everything the timed steps queued (the last update is
      // still running when the loop ends: the host waits only for the norm and loss it reads).
      if (device.is_cuda()) torch::cuda::synchronize(device.index());
      const double dt = seconds_since(bench_t0);
      nlohmann::json clock = step_clock ? step_clock->summary() : nlohmann::json::object();
      json r{{"tokens_per_s", bench_tokens / std::max(dt, 1e-9)},
             {"steps", st.step - inv.bench_warmup_steps},
             {"seconds", dt},
             {"tokens_per_step", tokens_per_step},
             {"flops_per_token", flops_per_token},
             {"peak_flops", peak},
             {"device", device.str()},
             {"precision", cfg.train.precision},
             {"params", model::matmul_parameter_count(args)}};
      r["mfu"] = peak > 0 ? r["tokens_per_s"].get<double>() * flops_per_token / (peak * comm->size()) : 0.0;
      if (auto m = telemetry::cuda_memory_stats(device.is_cuda() ? device.index() : 0)) r["peak_allocated_bytes"] = m->peak_allocated;
      else r["peak_rss_bytes"] = peak_rss_bytes();
      if (!clock.empty()) {
        r["step_clock"] = clock;
        char line[200];
        std::snprintf(line, sizeof line, "step clock: %.2f ms of GPU time within a step, %.3f ms between steps, host blocked %.2f ms\n",
                      clock.value("gpu_in_step_ms", 0.0), clock.value("gpu_between_steps_ms", 0.0), clock.value("host_blocked_ms", 0.0));
        std::cerr << line;
      }
      if (profiler) {
        // The profiler's own overhead is inside these steps' time: read tokens/s from a run without it.
        const auto summary = profiler->stop(inv.bench_profile, st.step - inv.bench_warmup_steps);
        profiler.reset();
        r["profiled"] = true;
        r["profile"] = summary;
        std::cerr << format_profile(summary);
      }
      if (comm->size() > 1) {
        r["rank"] = rank;
        r["world_size"] = comm->size();
        r["zero_stage"] = zero_stage;
      }
      emitter.emit(proto::EventData{"bench", r});
      std::cout << r.dump() << std::endl;  // the product of `bench train`: one JSON line on stdout
    }
    emitter.emit(proto::ExitData{exit_status, 0, exit_status == "stopped" ? "stop requested" : ""});
    emitter.close();
    std::cerr << "done: " << exit_status << " at step " << st.step << " in " << std::fixed << std::setprecision(1)
              << seconds_since(t_start) << " s\n";
    return 0;
  } catch (const dist::CommError& e) {
    // A peer is gone or a collective failed: report and leave at once (a process group with a
    // failed collective can hang in its destructor). Rank 0 lingers until the others have left
    // so that they can still read its rendezvous store to find out who is gone.
    fail("rank_failed", e.what(), "the rank named here died or was killed first: its stderr says why");
    emitter.close();
    if (world_to_leave) world_to_leave->leave_after_failure();
    std::quick_exit(1);
  } catch (const c10::Error& e) {
    std::string msg = e.what_without_backtrace();
    const int rc = msg.find("out of memory") != std::string::npos
                       ? fail("cuda_oom", msg, "lower train.micro_batch_size, enable model.activation_checkpointing, or raise optimizer.zero.stage; `fathom-engine estimate` shows what fits")
                       : fail("torch_error", msg, "");
    if (multi_rank) {  // the other ranks learn of it from their collectives; do not hang in teardown
      emitter.close();
      std::quick_exit(rc);
    }
    return rc;
  } catch (const std::exception& e) {
    const int rc = fail("train_failed", e.what(), "");
    if (multi_rank) {
      emitter.close();
      std::quick_exit(rc);
    }
    return rc;
  }
}

}  // namespace fathom::train
