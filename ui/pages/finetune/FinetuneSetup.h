// What the Fine-tune page works with, without widgets: the base model (a Fathom checkpoint or a
// Hugging Face model folder, read from its files), the settings the page collects, the run config
// YAML they make, and the answer of `fathom-engine finetune CONFIG --preview`. Pure functions over
// files and text, so the tests check them without a window.
#pragma once

#include <QByteArray>
#include <QList>
#include <QString>
#include <QStringList>
#include <QVector>

#include "engine/config/config.h"

namespace fathom::ui {

struct FinetuneBase {
  enum class Kind { None, Checkpoint, HuggingFace };
  Kind kind = Kind::None;
  QString dir;             // the checkpoint directory (…/checkpoints/step-N) or the HF model folder
  QString runId, runName;  // Checkpoint: the run that wrote it
  qint64 step = 0;         // Checkpoint: its step
  QString architecture;    // HuggingFace: config.json "architectures"[0] (or model_type)
  config::ModelConfig model;
  config::TokenizerConfig tokenizer;
  bool baseIsLora = false; // the checkpoint's own run was a LoRA fine-tune
  QString error;           // why it cannot be fine-tuned ("" = usable)
  QStringList notes;       // worth knowing, not fatal (no tokenizer.json, ...)

  bool isValid() const { return kind != Kind::None && error.isEmpty(); }
  // "llama · 2 layers · d_model 64 · 4 heads (2 kv) · max 64 tokens".
  QString architectureText() const;
  // Module names adapters can attach to, in the order the page shows them (Hugging Face names).
  QStringList moduleNames() const;
  // A sensible default selection among moduleNames() (attention q and v, as the LoRA paper).
  QStringList defaultTargets() const;
};

// A checkpoint directory as the engine writes it: reads state.json and the run's config.yaml
// (two levels up). The tokenizer is the one the base trained with (state.json "tokenizer").
FinetuneBase inspectCheckpointBase(const QString& dir);
// A Hugging Face model folder: config.json (llama, qwen2, deepseek_v3 families) and at least one
// *.safetensors; the tokenizer is its tokenizer.json.
FinetuneBase inspectHuggingFaceBase(const QString& dir);
// Whichever of the two `dir` is (a state.json or MANIFEST.json means a Fathom checkpoint).
FinetuneBase inspectBase(const QString& dir);

struct FinetuneSettings {
  QString name = QStringLiteral("finetune");
  QString dataFile;  // .jsonl: prompt/completion or chat messages
  QString chatTemplate = QStringLiteral("auto");
  bool packing = true;
  int seqLen = 256;
  int r = 16;
  double alpha = 32.0;
  double dropout = 0.05;
  bool rslora = false;
  QStringList targets{QStringLiteral("q_proj"), QStringLiteral("v_proj")};
  bool int8Base = false;
  int maxSteps = 200;
  int microBatch = 4;
  int accumulation = 1;
  double lr = 2e-4;
  QString adapter;  // lora.adapter: a LoRA checkpoint (or PEFT adapter dir) to continue from ("" = new adapters)
};

// The run config of the fine-tune: run name, the base's architecture and tokenizer (so the
// estimate and a reader see what is trained), instruct data, short-run training settings and lora.
QString finetuneYaml(const FinetuneBase& base, const FinetuneSettings& settings);

// `fathom-engine finetune CONFIG --preview` answer (see the page for the contract).
struct PreviewSegment {
  QString text;
  bool train = false;  // tokens the loss is computed on (the completion / assistant turns)
};
struct PreviewExample {
  int index = 0;
  qint64 tokens = 0;
  bool truncated = false;
  QList<PreviewSegment> segments;
};
struct DataPreview {
  qint64 seqLen = 0, count = 0, truncated = 0;
  QString chatTemplate;
  QList<PreviewExample> examples;
  QVector<double> edges, counts;  // histogram: bin i is [edges[i], edges[i+1]); counts.size() == edges.size() - 1 (or == edges.size())
  qint64 trainableParams = 0, baseParams = 0;
  QString error;  // "" when the JSON parsed
};
DataPreview parsePreview(const QByteArray& json);

}  // namespace fathom::ui
