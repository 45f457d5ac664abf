#!/usr/bin/env python3
"""Writes packaging/grafana/fathom.json, the Grafana dashboard of Fathom's Prometheus metrics.

One row per concern: training, GPUs (the row repeats for each value of $gpu), communication (repeats
for each $rank), serving, checkpoints. Edit this file, not the JSON: `python3 make_dashboard.py`.
Metric names are those of engine/telemetry/prometheus.cpp (train) and engine/serve (serve);
tests/engine/test_prometheus.cpp fails when a query names anything else.
"""
import json
import os

DS = {"type": "prometheus", "uid": "${datasource}"}
panels = []
next_id = 1
y = 0


def row(title, repeat=None):
    global next_id, y
    p = {"type": "row", "id": next_id, "title": title, "collapsed": False, "panels": [],
         "gridPos": {"h": 1, "w": 24, "x": 0, "y": y}}
    if repeat:
        p["repeat"] = repeat
    panels.append(p)
    next_id += 1
    y += 1


_x = 0


def panel(title, targets, unit="short", kind="timeseries", w=8, h=8, description="", stack=False, extra=None):
    """targets: [(expr, legend)]; panels flow left to right, 24 columns per line."""
    global next_id, y, _x
    if _x + w > 24:
        _x = 0
        y += h
    p = {"type": kind, "id": next_id, "title": title, "datasource": DS, "description": description,
         "gridPos": {"h": h, "w": w, "x": _x, "y": y},
         "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
         "options": {"legend": {"displayMode": "list", "placement": "bottom", "showLegend": True},
                     "tooltip": {"mode": "multi", "sort": "none"}} if kind == "timeseries" else
                    {"reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
                     "colorMode": "value", "graphMode": "area", "textMode": "auto"},
         "targets": [{"datasource": DS, "expr": e, "legendFormat": l, "refId": chr(ord("A") + i), "range": True}
                     for i, (e, l) in enumerate(targets)]}
    if kind == "timeseries":
        p["fieldConfig"]["defaults"]["custom"] = {"drawStyle": "line", "lineWidth": 1, "fillOpacity": 10 if stack else 0,
                                                  "showPoints": "never", "spanNulls": True,
                                                  "stacking": {"mode": "normal" if stack else "none", "group": "A"}}
    if extra:
        p.update(extra)
    panels.append(p)
    next_id += 1
    _x += w


def end_row(h=8):
    global y, _x
    if _x:
        y += h
    _x = 0


T = 'host=~"$host", rank=~"$rank"'

# ---- training ------------------------------------------------------------------------------------
row("Training")
panel("Loss", [(f'fathom_train_loss{{{T}}}', "train r{{rank}}"),
               (f'fathom_train_validation_loss{{{T}}}', "validation r{{rank}}")], w=12)
panel("Throughput", [(f'sum by (host) (fathom_train_tokens_per_second{{{T}, rank="0"}})', "tokens/s (all ranks)"),
                     (f'sum(rate(fathom_train_tokens_total{{{T}, rank="0"}}[$__rate_interval]))', "tokens/s from the counter")],
      unit="none", w=6, description="tokens/s over the engine's logging interval, and from the token counter")
panel("MFU", [(f'fathom_train_mfu_ratio{{{T}}}', "r{{rank}}")], unit="percentunit", w=6,
      description="Model FLOPs utilisation (PaLM appendix B) against the device's bf16 peak")
panel("Step time by phase", [(f'fathom_train_step_phase_duration_seconds{{{T}, rank="0"}}', "{{phase}}"),
                             (f'fathom_train_step_duration_seconds{{{T}, rank="0"}}', "step")], unit="s", w=8)
panel("Learning rate", [(f'fathom_train_learning_rate{{{T}, rank="0"}}', "lr")], w=4)
panel("Gradient norm", [(f'fathom_train_grad_norm{{{T}}}', "r{{rank}}")], w=4)
panel("Energy per token", [(f'fathom_train_energy_per_token_joules{{{T}}}', "r{{rank}}")], unit="joule", w=4,
      description="GPU energy from NVML's energy counter divided by the tokens trained meanwhile")
panel("Non-finite steps skipped", [(f'sum(increase(fathom_train_nan_skipped_total{{{T}}}[$__range]))', "skipped"),
                                   (f'sum(increase(fathom_train_errors_total{{{T}}}[$__range]))', "errors")],
      kind="stat", w=4)
end_row()

# ---- GPUs: one row per $gpu value ----------------------------------------------------------------
G = 'host=~"$host", rank=~"$rank", gpu=~"$gpu"'
row("GPU $gpu", repeat="gpu")
panel("Utilisation and SM activity", [(f'fathom_gpu_utilization_ratio{{{G}}}', "util {{host}} r{{rank}}"),
                                      (f'fathom_gpu_sm_active_ratio{{{G}}}', "SM active {{host}} r{{rank}}")],
      unit="percentunit", w=6)
panel("Memory", [(f'fathom_gpu_memory_used_bytes{{{G}}}', "used (NVML) r{{rank}}"),
                 (f'fathom_gpu_memory_reserved_bytes{{{G}}}', "reserved (allocator) r{{rank}}"),
                 (f'fathom_gpu_memory_allocated_bytes{{{G}}}', "allocated r{{rank}}"),
                 (f'fathom_gpu_memory_total_bytes{{{G}}}', "total r{{rank}}")], unit="bytes", w=6)
panel("Memory fragmentation", [(f'fathom_gpu_memory_fragmentation_ratio{{{G}}}', "r{{rank}}")], unit="percentunit", w=4,
      description="(reserved - allocated) / reserved in the CUDA caching allocator")
panel("Power and energy", [(f'fathom_gpu_power_watts{{{G}}}', "power r{{rank}}"),
                           (f'rate(fathom_gpu_energy_joules_total{{{G}}}[$__rate_interval])', "energy rate r{{rank}}")],
      unit="watt", w=4)
panel("Temperature and clocks", [(f'fathom_gpu_temperature_celsius{{{G}}}', "°C r{{rank}}"),
                                 (f'fathom_gpu_sm_clock_hertz{{{G}}} / 1e9', "SM GHz r{{rank}}"),
                                 (f'fathom_gpu_memory_clock_hertz{{{G}}} / 1e9', "mem GHz r{{rank}}")], w=4)
end_row()

# ---- communication: one row per $rank ------------------------------------------------------------
C = 'host=~"$host", rank=~"$rank"'
row("Communication, rank $rank", repeat="rank")
panel("NCCL bus bandwidth", [(f'fathom_comm_bus_bandwidth_bytes_per_second{{{C}}}', "{{op}} busbw"),
                             (f'fathom_comm_algorithm_bandwidth_bytes_per_second{{{C}}}', "{{op}} algbw")], unit="Bps", w=8)
panel("Gradient-sync latency", [(f'fathom_train_grad_sync_duration_seconds{{{C}}}', "sync after backward"),
                                (f'fathom_train_step_phase_duration_seconds{{{C}, phase="comm"}}', "collectives per step")],
      unit="s", w=8)
panel("Collectives", [(f'sum by (op) (rate(fathom_comm_transferred_bytes_total{{{C}}}[$__rate_interval]))', "{{op}} bytes/s"),
                      (f'fathom_train_comm_wait_ratio{{{C}}}', "share of time blocked")], unit="Bps", w=8)
end_row()

# ---- serving -------------------------------------------------------------------------------------
S = 'instance=~"$instance"'
row("Serving")
panel("Requests per second", [(f'sum by (endpoint, status) (rate(fathom_requests_total{{{S}}}[$__rate_interval]))',
                               "{{endpoint}} {{status}}")], unit="reqps", w=8)
panel("Latency", [(f'histogram_quantile(0.5, sum by (le) (rate(fathom_request_latency_seconds_bucket{{{S}}}[$__rate_interval])))', "p50"),
                  (f'histogram_quantile(0.95, sum by (le) (rate(fathom_request_latency_seconds_bucket{{{S}}}[$__rate_interval])))', "p95"),
                  (f'histogram_quantile(0.99, sum by (le) (rate(fathom_request_latency_seconds_bucket{{{S}}}[$__rate_interval])))', "p99")],
      unit="s", w=8)
panel("Time to first token", [(f'histogram_quantile(0.5, sum by (le) (rate(fathom_time_to_first_token_seconds_bucket{{{S}}}[$__rate_interval])))', "p50"),
                              (f'histogram_quantile(0.95, sum by (le) (rate(fathom_time_to_first_token_seconds_bucket{{{S}}}[$__rate_interval])))', "p95")],
      unit="s", w=8)
panel("Tokens per second", [(f'sum(rate(fathom_completion_tokens_total{{{S}}}[$__rate_interval]))', "generated"),
                            (f'sum(rate(fathom_prompt_tokens_total{{{S}}}[$__rate_interval]))', "prompt")], w=8)
panel("Batch", [(f'sum(fathom_requests_running{{{S}}})', "running"), (f'sum(fathom_requests_queued{{{S}}})', "queued"),
                (f'sum(rate(fathom_batch_size_sum{{{S}}}[$__rate_interval])) / sum(rate(fathom_batch_size_count{{{S}}}[$__rate_interval]))',
                 "mean batch size"),
                (f'max(fathom_batch_size_max{{{S}}})', "max batch")], w=8)
panel("KV cache", [(f'fathom_kv_cache_usage_ratio{{{S}}}', "reserved share {{instance}}"),
                   (f'fathom_kv_cache_used_tokens{{{S}}} / fathom_kv_cache_budget_tokens{{{S}}}', "filled share {{instance}}")],
      unit="percentunit", w=8)
end_row()

# ---- checkpoints ---------------------------------------------------------------------------------
row("Checkpoints")
panel("Checkpoint duration", [(f'fathom_train_checkpoint_last_duration_seconds{{{T}}}', "newest r{{rank}}"),
                              (f'histogram_quantile(0.9, sum by (le) (rate(fathom_train_checkpoint_duration_seconds_bucket{{{T}}}[$__range])))', "p90 over the range")],
      unit="s", w=8)
panel("Checkpoint size", [(f'fathom_train_checkpoint_size_bytes{{{T}}}', "newest r{{rank}}")], unit="bytes", w=8)
panel("Checkpoints written", [(f'sum(increase(fathom_train_checkpoint_duration_seconds_count{{{T}}}[$__range]))', "checkpoints"),
                              (f'sum(increase(fathom_train_checkpoint_written_bytes_total{{{T}}}[$__range]))', "bytes")],
      kind="stat", w=8)
end_row()


def var(name, query, label, multi=True):
    return {"name": name, "label": label, "type": "query", "datasource": DS, "refresh": 2, "includeAll": True,
            "multi": multi, "allValue": ".*", "current": {"selected": True, "text": ["All"], "value": ["$__all"]},
            "definition": query, "query": {"query": query, "refId": "PrometheusVariableQueryEditor-VariableQuery"},
            "sort": 3, "options": []}


dashboard = {
    "title": "Fathom",
    "uid": "fathom-overview",
    "description": "Training, GPUs, communication, serving and checkpoints of Fathom runs (fathom-engine /metrics).",
    "tags": ["fathom", "llm", "training", "inference"],
    "timezone": "browser",
    "editable": True,
    "graphTooltip": 1,
    "refresh": "10s",
    "schemaVersion": 39,
    "version": 1,
    "time": {"from": "now-1h", "to": "now"},
    "timepicker": {},
    "annotations": {"list": []},
    "links": [],
    "__inputs": [{"name": "DS_PROMETHEUS", "label": "Prometheus", "type": "datasource", "pluginId": "prometheus",
                  "pluginName": "Prometheus"}],
    "templating": {"list": [
        {"name": "datasource", "label": "Data source", "type": "datasource", "query": "prometheus",
         "current": {}, "hide": 0, "options": [], "refresh": 1, "regex": ""},
        var("host", "label_values(fathom_train_info, host)", "Host"),
        var("rank", 'label_values(fathom_train_step{host=~"$host"}, rank)', "Rank"),
        var("gpu", 'label_values(fathom_gpu_memory_total_bytes{host=~"$host", rank=~"$rank"}, gpu)', "GPU"),
        var("instance", "label_values(fathom_requests_running, instance)", "Serve instance"),
    ]},
    "panels": panels,
}

out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fathom.json")
with open(out, "w") as f:
    json.dump(dashboard, f, indent=2, ensure_ascii=False)
    f.write("\n")
print(out)
