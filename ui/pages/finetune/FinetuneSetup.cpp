// Base inspection, fine-tune YAML and preview parsing. The Hugging Face config.json mapping follows
// the engine's importer (engine/checkpoint/hf.cpp) closely enough for the estimate and the module
// list; the engine remains the judge of what it can load.
#include "ui/pages/finetune/FinetuneSetup.h"

#include <QDir>
#include <QFile>
#include <QFileInfo>
#include <QJsonArray>
#include <QJsonDocument>
#include <QJsonObject>

#include <algorithm>
#include <cmath>

namespace fathom::ui {

namespace {

QJsonObject readJsonObject(const QString& path, QString* error) {
  QFile f(path);
  if (!f.open(QIODevice::ReadOnly)) {
    if (error) *error = QStringLiteral("cannot read %1: %2").arg(QDir::toNativeSeparators(path), f.errorString());
    return {};
  }
  QJsonParseError pe{};
  const QJsonDocument doc = QJsonDocument::fromJson(f.readAll(), &pe);
  if (!doc.isObject()) {
    if (error) *error = QStringLiteral("%1 is not a JSON object (%2)").arg(QDir::toNativeSeparators(path), pe.errorString());
    return {};
  }
  return doc.object();
}

qint64 integer(const QJsonObject& o, const char* key, qint64 fallback = 0) {
  const QJsonValue v = o.value(QLatin1String(key));
  return v.isDouble() ? static_cast<qint64>(v.toDouble()) : fallback;
}

// YAML scalar for a path or name: always double-quoted, so ':' and '#' are safe.
QString quoted(const QString& s) {
  QString q = s;
  q.replace(QLatin1Char('\\'), QStringLiteral("\\\\")).replace(QLatin1Char('"'), QStringLiteral("\\\""));
  return QLatin1Char('"') + q + QLatin1Char('"');
}

// A float the config loader reads as a float: always with a '.' or an exponent.
QString yamlFloat(double v) {
  QString s = QString::number(v, 'g', 10);
  if (!s.contains(QLatin1Char('.')) && !s.contains(QLatin1Char('e')) && !s.contains(QLatin1String("inf")) &&
      !s.contains(QLatin1String("nan")))
    s += QStringLiteral(".0");
  return s;
}

QString yamlBool(bool b) { return b ? QStringLiteral("true") : QStringLiteral("false"); }

}  // namespace

// ---- the base --------------------------------------------------------------------------------

QString FinetuneBase::architectureText() const {
  if (kind == Kind::None) return {};
  const config::ModelConfig& m = model;
  QStringList parts{QString::fromStdString(m.family)};
  parts << QStringLiteral("%1 layers").arg(m.n_layers) << QStringLiteral("d_model %1").arg(m.d_model);
  const qint64 kv = m.n_kv_heads > 0 ? m.n_kv_heads : m.n_heads;
  parts << (kv != m.n_heads ? QStringLiteral("%1 heads (%2 kv)").arg(m.n_heads).arg(kv) : QStringLiteral("%1 heads").arg(m.n_heads));
  if (m.attention == "mla") parts << QStringLiteral("MLA (kv rank %1)").arg(m.mla.kv_lora_rank);
  if (m.moe.n_routed_experts > 0)
    parts << QStringLiteral("MoE %1 experts, top-%2").arg(m.moe.n_routed_experts).arg(m.moe.top_k);
  parts << QStringLiteral("max %1 tokens").arg(m.max_seq_len);
  return parts.join(QStringLiteral(" · "));
}

QStringList FinetuneBase::moduleNames() const {
  QStringList out;
  if (model.attention == "mla") {
    if (model.mla.q_lora_rank > 0) out << QStringLiteral("q_a_proj") << QStringLiteral("q_b_proj");
    else out << QStringLiteral("q_proj");
    out << QStringLiteral("kv_a_proj_with_mqa") << QStringLiteral("kv_b_proj") << QStringLiteral("o_proj");
  } else {
    out << QStringLiteral("q_proj") << QStringLiteral("k_proj") << QStringLiteral("v_proj") << QStringLiteral("o_proj");
  }
  out << QStringLiteral("gate_proj") << QStringLiteral("up_proj") << QStringLiteral("down_proj");
  if (model.moe.n_routed_experts > 0) {
    out << QStringLiteral("experts");
    if (model.moe.n_shared_experts > 0) out << QStringLiteral("shared_experts");
  }
  if (model.attention != "mla") out << QStringLiteral("query_key_value");  // the brief's fused name: q, k and v
  return out;
}

QStringList FinetuneBase::defaultTargets() const {
  if (model.attention == "mla")
    return {model.mla.q_lora_rank > 0 ? QStringLiteral("q_b_proj") : QStringLiteral("q_proj"), QStringLiteral("kv_b_proj")};
  return {QStringLiteral("q_proj"), QStringLiteral("v_proj")};
}

FinetuneBase inspectCheckpointBase(const QString& dirIn) {
  FinetuneBase b;
  b.kind = FinetuneBase::Kind::Checkpoint;
  b.dir = QFileInfo(dirIn).absoluteFilePath();
  const QDir dir(b.dir);
  if (!dir.exists()) {
    b.error = QStringLiteral("%1 does not exist").arg(QDir::toNativeSeparators(b.dir));
    return b;
  }
  if (!QFileInfo(dir.filePath(QStringLiteral("model.safetensors"))).isFile()) {
    b.error = QStringLiteral("%1 holds no model.safetensors: not a whole Fathom checkpoint").arg(QDir::toNativeSeparators(b.dir));
    return b;
  }
  QString err;
  const QJsonObject state = readJsonObject(dir.filePath(QStringLiteral("state.json")), &err);
  b.step = integer(state, "step", 0);
  if (b.step == 0) {
    const QString name = dir.dirName();
    if (name.startsWith(QLatin1String("step-"))) b.step = name.mid(5).toLongLong();
  }
  b.runId = state.value(QStringLiteral("run_id")).toString();
  // <run>/checkpoints/step-N: the run's resolved config.yaml is two levels up.
  const QString runDir = QDir::cleanPath(dir.filePath(QStringLiteral("../..")));
  if (b.runId.isEmpty()) b.runId = QFileInfo(runDir).fileName();
  const QString cfgPath = QDir(runDir).filePath(QStringLiteral("config.yaml"));
  if (!QFileInfo(cfgPath).isFile()) {
    b.error = QStringLiteral("no config.yaml in the run directory %1, so the model's architecture is unknown")
                  .arg(QDir::toNativeSeparators(runDir));
    return b;
  }
  config::LoadOptions o;
  o.check_paths = false;
  const config::LoadResult r = config::load_config_file(cfgPath.toStdString(), o);
  if (!r.ok()) {
    b.error = QStringLiteral("the base run's config does not load: %1").arg(QString::fromStdString(r.errors.front().message()));
    return b;
  }
  b.model = r.config.model;
  b.model.init_from.clear();  // the checkpoint already holds those weights
  b.tokenizer = r.config.tokenizer;
  b.runName = QString::fromStdString(r.config.run.name);
  b.baseIsLora = r.config.lora.enabled;
  const QString tok = state.value(QStringLiteral("tokenizer")).toString();
  if (b.tokenizer.path.empty()) {
    if (!tok.isEmpty() && QFileInfo::exists(tok)) b.tokenizer.path = tok.toStdString();
    else b.notes << QStringLiteral("the tokenizer the base trained with was not found (state.json names %1)").arg(tok.isEmpty() ? QStringLiteral("none") : tok);
  }
  if (b.baseIsLora) b.notes << QStringLiteral("the base run was itself a LoRA fine-tune");
  return b;
}

FinetuneBase inspectHuggingFaceBase(const QString& dirIn) {
  FinetuneBase b;
  b.kind = FinetuneBase::Kind::HuggingFace;
  b.dir = QFileInfo(dirIn).absoluteFilePath();
  const QDir dir(b.dir);
  const QString cfgPath = dir.filePath(QStringLiteral("config.json"));
  if (!QFileInfo(cfgPath).isFile()) {
    b.error = QStringLiteral("%1 has no config.json: not a Hugging Face model folder").arg(QDir::toNativeSeparators(b.dir));
    return b;
  }
  if (dir.entryList({QStringLiteral("*.safetensors")}, QDir::Files).isEmpty()) {
    b.error = QStringLiteral("%1 has no *.safetensors weights (PyTorch .bin files are not read; convert them with "
                             "transformers' save_pretrained(safe_serialization=True))").arg(QDir::toNativeSeparators(b.dir));
    return b;
  }
  QString err;
  const QJsonObject j = readJsonObject(cfgPath, &err);
  if (!err.isEmpty()) {
    b.error = err;
    return b;
  }
  const QJsonArray archs = j.value(QStringLiteral("architectures")).toArray();
  b.architecture = archs.isEmpty() ? j.value(QStringLiteral("model_type")).toString() : archs.first().toString();
  const QString mt = j.value(QStringLiteral("model_type")).toString();
  config::ModelConfig& m = b.model;
  if (b.architecture.startsWith(QLatin1String("Llama")) || mt == QLatin1String("llama")) m.family = "llama";
  else if (b.architecture.startsWith(QLatin1String("Qwen2")) || mt == QLatin1String("qwen2")) m.family = "qwen2";
  else if (b.architecture.startsWith(QLatin1String("DeepseekV3")) || mt == QLatin1String("deepseek_v3")) m.family = "deepseek";
  else {
    b.error = QStringLiteral("architecture \"%1\" is not supported; Fathom fine-tunes LlamaForCausalLM, Qwen2ForCausalLM "
                             "and DeepseekV3ForCausalLM models").arg(b.architecture.isEmpty() ? QStringLiteral("(none given)") : b.architecture);
    return b;
  }
  m.vocab_size = integer(j, "vocab_size");
  m.d_model = integer(j, "hidden_size");
  m.n_layers = integer(j, "num_hidden_layers");
  m.n_heads = integer(j, "num_attention_heads");
  m.n_kv_heads = integer(j, "num_key_value_heads", m.n_heads);
  m.d_ff = integer(j, "intermediate_size");
  m.max_seq_len = integer(j, "max_position_embeddings", 2048);
  double theta = j.value(QStringLiteral("rope_theta")).toDouble(10000.0);
  const QJsonObject rp = j.value(QStringLiteral("rope_parameters")).toObject();
  if (rp.contains(QStringLiteral("rope_theta"))) theta = rp.value(QStringLiteral("rope_theta")).toDouble(theta);
  m.rope_theta = theta;
  m.norm_eps = j.value(QStringLiteral("rms_norm_eps")).toDouble(1e-6);
  m.tie_embeddings = j.value(QStringLiteral("tie_word_embeddings")).toBool(false);
  m.init_std = j.value(QStringLiteral("initializer_range")).toDouble(0.02);
  m.attention = "mha";
  if (m.vocab_size <= 0 || m.d_model <= 0 || m.n_layers <= 0 || m.n_heads <= 0 || m.d_ff <= 0) {
    b.error = QStringLiteral("config.json lacks a size (vocab_size, hidden_size, num_hidden_layers, num_attention_heads, "
                             "intermediate_size must all be > 0)");
    return b;
  }
  if (m.family == "llama") m.attention_bias = j.value(QStringLiteral("attention_bias")).toBool(false);
  if (m.family != "deepseek" && j.contains(QStringLiteral("head_dim"))) {
    m.head_dim = integer(j, "head_dim");
    if (m.head_dim * m.n_heads == m.d_model) m.head_dim = 0;
  }
  if (m.family == "deepseek") {
    m.attention = "mla";
    m.mla.kv_lora_rank = integer(j, "kv_lora_rank");
    m.mla.q_lora_rank = integer(j, "q_lora_rank", 0);
    m.mla.qk_rope_head_dim = integer(j, "qk_rope_head_dim");
    m.mla.qk_nope_head_dim = integer(j, "qk_nope_head_dim");
    m.mla.v_head_dim = integer(j, "v_head_dim");
    m.mla.rope_interleave = j.value(QStringLiteral("rope_interleave")).toBool(true);
    m.n_kv_heads = m.n_heads;
    m.head_dim = 0;
    const qint64 experts = integer(j, "n_routed_experts", 0);
    if (experts > 0) {
      m.moe.n_routed_experts = experts;
      m.moe.n_shared_experts = integer(j, "n_shared_experts", 0);
      m.moe.top_k = integer(j, "num_experts_per_tok", 2);
      m.moe.d_expert = integer(j, "moe_intermediate_size", m.d_ff);
      m.moe.first_k_dense = integer(j, "first_k_dense_replace", 0);
      m.moe.gate = "sigmoid";
      m.moe.balance = "bias_update";
      m.moe.norm_topk_prob = j.value(QStringLiteral("norm_topk_prob")).toBool(true);
      m.moe.routed_scaling_factor = j.value(QStringLiteral("routed_scaling_factor")).toDouble(1.0);
      m.moe.n_group = integer(j, "n_group", 1);
      m.moe.topk_group = integer(j, "topk_group", 1);
    }
  }
  b.runName = QFileInfo(b.dir).fileName();
  b.tokenizer.kind = "hf";
  if (QFileInfo(dir.filePath(QStringLiteral("tokenizer.json"))).isFile()) {
    b.tokenizer.path = dir.filePath(QStringLiteral("tokenizer.json")).toStdString();
  } else {
    b.tokenizer.path = b.dir.toStdString();
    b.notes << QStringLiteral("no tokenizer.json in the folder: set tokenizer.path in the config to the model's tokenizer");
  }
  return b;
}

FinetuneBase inspectBase(const QString& dir) {
  const QDir d(dir);
  if (QFileInfo(d.filePath(QStringLiteral("state.json"))).isFile() || QFileInfo(d.filePath(QStringLiteral("MANIFEST.json"))).isFile())
    return inspectCheckpointBase(dir);
  return inspectHuggingFaceBase(dir);
}

// ---- the YAML ----------------------------------------------------------------------------------

QString finetuneYaml(const FinetuneBase& base, const FinetuneSettings& s) {
  const config::ModelConfig& m = base.model;
  QString y;
  y += QStringLiteral("# LoRA fine-tune written by the Fine-tune page.\n");
  if (base.kind == FinetuneBase::Kind::Checkpoint)
    y += QStringLiteral("# Base: run %1, step %2 (%3).\n").arg(base.runName.isEmpty() ? base.runId : base.runName).arg(base.step).arg(base.dir);
  else if (base.kind == FinetuneBase::Kind::HuggingFace)
    y += QStringLiteral("# Base: the Hugging Face %1 in %2.\n").arg(base.architecture, base.dir);
  y += QStringLiteral("# The model and tokenizer sections describe the base; the engine loads its weights from lora.base.\n");
  y += QStringLiteral("run:\n  name: %1\n").arg(quoted(s.name));
  if (base.kind != FinetuneBase::Kind::None) {
    y += QStringLiteral("model:\n");
    y += QStringLiteral("  family: %1\n").arg(QString::fromStdString(m.family));
    y += QStringLiteral("  vocab_size: %1\n").arg(m.vocab_size);
    y += QStringLiteral("  d_model: %1\n").arg(m.d_model);
    y += QStringLiteral("  n_layers: %1\n").arg(m.n_layers);
    y += QStringLiteral("  n_heads: %1\n").arg(m.n_heads);
    y += QStringLiteral("  n_kv_heads: %1\n").arg(m.n_kv_heads);
    if (m.head_dim > 0 && m.n_heads > 0 && m.head_dim * m.n_heads != m.d_model) y += QStringLiteral("  head_dim: %1\n").arg(m.head_dim);
    y += QStringLiteral("  d_ff: %1\n").arg(m.d_ff);
    y += QStringLiteral("  max_seq_len: %1\n").arg(m.max_seq_len);
    y += QStringLiteral("  rope_theta: %1\n").arg(yamlFloat(m.rope_theta));
    y += QStringLiteral("  norm_eps: %1\n").arg(yamlFloat(m.norm_eps));
    y += QStringLiteral("  tie_embeddings: %1\n").arg(yamlBool(m.tie_embeddings));
    y += QStringLiteral("  attention_bias: %1\n").arg(yamlBool(m.attention_bias));
    y += QStringLiteral("  attention: %1\n").arg(QString::fromStdString(m.attention));
    if (m.attention == "mla") {
      y += QStringLiteral("  mla:\n    kv_lora_rank: %1\n    q_lora_rank: %2\n    qk_rope_head_dim: %3\n    qk_nope_head_dim: %4\n"
                          "    v_head_dim: %5\n    rope_interleave: %6\n")
               .arg(m.mla.kv_lora_rank)
               .arg(m.mla.q_lora_rank)
               .arg(m.mla.qk_rope_head_dim)
               .arg(m.mla.qk_nope_head_dim)
               .arg(m.mla.v_head_dim)
               .arg(yamlBool(m.mla.rope_interleave));
    }
    if (m.moe.n_routed_experts > 0) {
      y += QStringLiteral("  moe:\n    n_routed_experts: %1\n    n_shared_experts: %2\n    top_k: %3\n    d_expert: %4\n"
                          "    first_k_dense: %5\n    gate: %6\n    balance: %7\n    norm_topk_prob: %8\n"
                          "    routed_scaling_factor: %9\n")
               .arg(m.moe.n_routed_experts)
               .arg(m.moe.n_shared_experts)
               .arg(m.moe.top_k)
               .arg(m.moe.d_expert)
               .arg(m.moe.first_k_dense)
               .arg(QString::fromStdString(m.moe.gate), QString::fromStdString(m.moe.balance), yamlBool(m.moe.norm_topk_prob),
                    yamlFloat(m.moe.routed_scaling_factor));
      y += QStringLiteral("    n_group: %1\n    topk_group: %2\n").arg(m.moe.n_group).arg(m.moe.topk_group);
    }
    y += QStringLiteral("tokenizer:\n  kind: %1\n").arg(QString::fromStdString(base.tokenizer.kind));
    if (!base.tokenizer.path.empty()) y += QStringLiteral("  path: %1\n").arg(quoted(QString::fromStdString(base.tokenizer.path)));
    if (base.tokenizer.kind == "bpe") y += QStringLiteral("  vocab_size: %1\n").arg(base.tokenizer.vocab_size);
  }
  y += QStringLiteral("data:\n");
  y += QStringLiteral("  train: [%1]\n").arg(s.dataFile.isEmpty() ? QString() : quoted(s.dataFile));
  y += QStringLiteral("  format: jsonl\n  task: instruct\n");
  y += QStringLiteral("  chat_template: %1\n").arg(s.chatTemplate);
  y += QStringLiteral("  packing: %1\n").arg(yamlBool(s.packing));
  y += QStringLiteral("  seq_len: %1\n").arg(s.seqLen);
  // Instruction sets are small: 1 % (the default) of a few hundred examples holds out nothing.
  y += QStringLiteral("  validation_fraction: 0.1\n");
  y += QStringLiteral("train:\n");
  y += QStringLiteral("  max_steps: %1\n").arg(s.maxSteps);
  y += QStringLiteral("  micro_batch_size: %1\n").arg(s.microBatch);
  y += QStringLiteral("  gradient_accumulation_steps: %1\n").arg(s.accumulation);
  y += QStringLiteral("  log_interval: %1\n").arg(std::max(1, s.maxSteps / 100));
  y += QStringLiteral("optimizer:\n");
  y += QStringLiteral("  lr: %1\n").arg(yamlFloat(s.lr));
  y += QStringLiteral("  min_lr: %1\n").arg(yamlFloat(s.lr / 10));
  y += QStringLiteral("  weight_decay: 0.0\n");
  y += QStringLiteral("  warmup_steps: %1\n").arg(std::min(100, std::max(0, s.maxSteps / 10)));
  y += QStringLiteral("lora:\n  enabled: true\n");
  if (base.kind != FinetuneBase::Kind::None) y += QStringLiteral("  base: %1\n").arg(quoted(base.dir));
  y += QStringLiteral("  r: %1\n").arg(s.r);
  y += QStringLiteral("  lora_alpha: %1\n").arg(yamlFloat(s.alpha));
  y += QStringLiteral("  dropout: %1\n").arg(yamlFloat(s.dropout));
  y += QStringLiteral("  use_rslora: %1\n").arg(yamlBool(s.rslora));
  y += QStringLiteral("  target_modules: [%1]\n").arg(s.targets.join(QStringLiteral(", ")));
  y += QStringLiteral("  quantize_base: %1\n").arg(s.int8Base ? QStringLiteral("int8") : QStringLiteral("none"));
  // The adapter's own rank and targets win over r and target_modules (the engine takes them from it).
  if (!s.adapter.isEmpty()) y += QStringLiteral("  adapter: %1\n").arg(quoted(s.adapter));
  y += QStringLiteral("checkpoint:\n");
  y += QStringLiteral("  save_interval: 0\n");
  y += QStringLiteral("  save_every_steps: %1\n").arg(std::max(1, std::min(500, s.maxSteps / 2)));
  y += QStringLiteral("  keep_n_latest: 3\n");
  return y;
}

// ---- the preview ---------------------------------------------------------------------------------

DataPreview parsePreview(const QByteArray& json) {
  DataPreview p;
  QJsonParseError pe{};
  // The engine prints one JSON object; tolerate log lines before it: parse from the first line
  // that starts one.
  const QByteArray text = json.trimmed();
  QJsonDocument doc = QJsonDocument::fromJson(text, &pe);
  for (qsizetype at = text.indexOf("\n{"); !doc.isObject() && at >= 0; at = text.indexOf("\n{", at + 1)) {
    QJsonParseError e{};
    doc = QJsonDocument::fromJson(text.mid(at + 1), &e);
  }
  if (!doc.isObject()) {
    p.error = QStringLiteral("the preview is not a JSON object (%1): %2").arg(pe.errorString(), QString::fromUtf8(text.left(300)));
    return p;
  }
  const QJsonObject o = doc.object();
  p.seqLen = integer(o, "seq_len");
  p.count = integer(o, "count");
  p.truncated = integer(o, "truncated");
  p.chatTemplate = o.value(QStringLiteral("template")).toString();
  p.trainableParams = integer(o, "trainable_params");
  p.baseParams = integer(o, "base_params");
  for (const QJsonValue& ev : o.value(QStringLiteral("examples")).toArray()) {
    const QJsonObject e = ev.toObject();
    PreviewExample x;
    x.index = static_cast<int>(integer(e, "index"));
    x.tokens = integer(e, "tokens");
    x.truncated = e.value(QStringLiteral("truncated")).toBool();
    for (const QJsonValue& sv : e.value(QStringLiteral("segments")).toArray()) {
      const QJsonObject s = sv.toObject();
      x.segments.append({s.value(QStringLiteral("text")).toString(), s.value(QStringLiteral("train")).toBool()});
    }
    p.examples.append(x);
  }
  const QJsonObject h = o.value(QStringLiteral("histogram")).toObject();
  for (const QJsonValue& v : h.value(QStringLiteral("edges")).toArray()) p.edges.append(v.toDouble());
  for (const QJsonValue& v : h.value(QStringLiteral("counts")).toArray()) p.counts.append(v.toDouble());
  return p;
}

}  // namespace fathom::ui
