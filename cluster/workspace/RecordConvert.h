// Turns protocol records (engine/protocol) into the workbench's flat values: metric and system
// records become MetricPoints keyed like "loss" or "gpu0.util_pct", events become EventItems,
// log/error records become log lines. Stateful only in the time origin and each rank's last
// step/tokens (system samples carry no step; they are placed at the step last reported).
#pragma once

#include <QHash>
#include <QJsonObject>
#include <QStringList>
#include <QVector>

#include "cluster/workspace/Records.h"
#include "engine/protocol/record.h"

namespace fathom::cluster {

// Metric keys produced from a `metric` record, in this order; then "loss_scale" and "val_loss"
// when present, then each `extra` key as is.
//   loss lr grad_norm tokens_per_s mfu step_time_s data_s fwd_s bwd_s opt_s comm_s
// From a `system` record: "cpu.util_pct", "ram.used", "ram.total", and per GPU i
// "gpu<i>.util_pct", "gpu<i>.sm_active_pct", "gpu<i>.mem_used", "gpu<i>.mem_total",
// "gpu<i>.mem_reserved", "gpu<i>.mem_allocated", "gpu<i>.fragmentation_pct",
// "gpu<i>.temperature_c", "gpu<i>.power_w", "gpu<i>.clock_sm_mhz", and per collective op
// "comm.<op>.busbw_gbps", "comm.<op>.algbw_gbps", "comm.<op>.time_ms", "comm.<op>.bytes".
QStringList standardMetricKeys();

class RecordConverter {
 public:
  void reset();

  // Appends what `record` carries to the outputs (each may be null to ignore that kind).
  // Log lines: "[rank R] level: message" for log records, "[rank R] error <code>: message (hint)"
  // for error records, "[rank R] exit <status> (code N): reason" for exit records.
  void convert(const protocol::Record& record, QVector<MetricPoint>* metrics, QVector<EventItem>* events,
               QVector<SampleItem>* samples, QStringList* logs);

  // Unix ms of the first record seen (the time origin of tSec); 0 before any.
  qint64 originMs() const { return m_originMs; }
  qint64 lastStep(int rank) const { return m_lastStep.value(rank, 0); }

 private:
  double secondsOf(const protocol::Record& record);

  qint64 m_originMs = 0;
  QHash<int, qint64> m_lastStep, m_lastTokens;
};

// nlohmann JSON object -> QJsonObject (through its text; records are small).
QJsonObject toQJsonObject(const nlohmann::json& j);

}  // namespace fathom::cluster
