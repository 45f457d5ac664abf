// Plain value types shared by the workspace registry, the run sessions and the job queue: one run,
// one checkpoint, one metric point, one event, one sample. No behaviour beyond small helpers.
#pragma once

#include <QDateTime>
#include <QMetaType>
#include <QString>
#include <QStringList>
#include <QVector>

#include <cmath>

namespace fathom::cluster {

// Run status strings (RunRecord::status). "queued" and "running" are live states, the others final.
namespace run_status {
inline const QString queued = QStringLiteral("queued");
inline const QString running = QStringLiteral("running");
inline const QString completed = QStringLiteral("completed");
inline const QString stopped = QStringLiteral("stopped");
inline const QString failed = QStringLiteral("failed");
inline const QString killed = QStringLiteral("killed");
}  // namespace run_status

inline bool isFinalStatus(const QString& status) {
  return status == run_status::completed || status == run_status::stopped || status == run_status::failed ||
         status == run_status::killed;
}

struct RunRecord {
  QString id, name, configPath, runDir;
  QString status;  // queued | running | completed | stopped | failed | killed
  QString host = QStringLiteral("local");
  QString error;   // why it failed: the engine's error record and/or the tail of stderr.log
  qint64 pid = 0;   // rank 0's process id (0 = none)
  qint64 pgid = 0;  // process group of all ranks (0 = none)
  int nprocs = 1;
  QStringList devices;    // "cpu", "cuda:0", ...
  QStringList overrides;  // "train.max_steps=100", as given to --set
  QDateTime createdAt, startedAt, endedAt;
  qint64 lastStep = 0;
  double lastLoss = NAN;
  int exitCode = 0;
  QString parentRunId;
  // Added: "" or the --resume argument of the next launch ("auto" or a checkpoint dir), so a
  // queued resume survives a restart of the workbench.
  QString resume;
};

// One process of a run (run_ranks table): rank, pid and process group for re-attach and kill.
struct RankRecord {
  int rank = 0;
  qint64 pid = 0;
  qint64 pgid = 0;
  QString host = QStringLiteral("local");
};

// Integrity of a checkpoint as last checked by a full verification (sha256 of every file, done by
// `fathom-engine inspect DIR --json`); stored apart from the checkpoints rows so that a rescan,
// which rebuilds those rows from the files, keeps what a long hash check found.
namespace checkpoint_integrity {
inline const QString unchecked = QString();                      // never hashed
inline const QString verified = QStringLiteral("verified");      // every file matches MANIFEST.json's sha256
inline const QString damaged = QStringLiteral("damaged");        // a file is missing, resized or hashes differently
}  // namespace checkpoint_integrity

struct CheckpointRecord {
  QString runId, path;  // path: absolute directory checkpoints/step-N
  qint64 step = 0;
  qint64 bytes = 0;     // sum of the files in the directory
  double valLoss = NAN;
  bool verified = false;  // MANIFEST.json present and every file it lists has the listed size
  QDateTime createdAt;
  // Added (issue 5; new fields stay at the end so aggregate initialisers keep working):
  qint64 tokens = 0;           // state.json "tokens": tokens seen up to this step
  QString parentCheckpoint{};    // state.json "parent_checkpoint": the checkpoint this run resumed from
  QString initFrom{};            // the run config's model.init_from: what it was fine-tuned from
  QString integrity{};           // checkpoint_integrity::*; from the last full verification
  QString integrityDetail{};     // why damaged: one "file: problem" per line
  QDateTime checkedAt{};         // when that verification ran (invalid = never)
  QStringList exports{};         // directories this checkpoint was exported to (Hugging Face format)
  // Added (issue 6). Read from the checkpoint's files whenever a row is read (not stored in the
  // registry): a LoRA fine-tune's checkpoint is also a PEFT adapter directory.
  bool lora = false;             // adapter_config.json present, or state.json "lora": true
  int loraR = 0;                 // adapter_config.json "r"
  double loraAlpha = 0;          // adapter_config.json "lora_alpha"
  QString loraBase{};            // the base it adapts: state.json "base", else base_model_name_or_path
  QStringList loraTargets{};     // adapter_config.json "target_modules"
  QString mergedFrom{};          // state.json "merged_from": the adapter `lora merge` folded into the base

  bool isAdapter() const { return lora; }

  // Whole: the manifest's files are all there with their sizes, and no hash check found damage.
  bool isWhole() const { return verified && integrity != checkpoint_integrity::damaged; }
  bool isDamaged() const { return !verified || integrity == checkpoint_integrity::damaged; }
};

struct MetricPoint {
  qint64 step = 0;
  qint64 tokens = 0;
  double tSec = 0;  // seconds since the run's first record (wall time, pauses included)
  QString key;      // "loss", "gpu0.util_pct", ... (see RecordConvert.h)
  double value = 0;
  int rank = 0;
  qint64 seq = 0;   // added: protocol seq of the record the point came from (0 = unknown)
};

struct EventItem {
  qint64 step = -1;  // -1 when the event carries no step
  QString name;      // checkpoint_saved, eval, sample, nan_skipped, resumed, ...
  QString json;      // the record's whole `data` object, compact JSON
  int rank = 0;      // added
  qint64 seq = 0;    // added
  double tSec = 0;   // added
};

// A `sample` event, unpacked for the Monitor's sample view (added).
struct SampleItem {
  qint64 step = 0;
  QString prompt, text;
  double temperature = 0;
  int rank = 0;
};

// Registers the types above (and QVector<...> of them) with Qt's meta-type system, for queued
// connections and QSignalSpy. Idempotent; Workspace and RunSession call it.
void registerMetaTypes();

}  // namespace fathom::cluster

Q_DECLARE_METATYPE(fathom::cluster::RunRecord)
Q_DECLARE_METATYPE(fathom::cluster::CheckpointRecord)
Q_DECLARE_METATYPE(fathom::cluster::MetricPoint)
Q_DECLARE_METATYPE(fathom::cluster::EventItem)
Q_DECLARE_METATYPE(fathom::cluster::SampleItem)
