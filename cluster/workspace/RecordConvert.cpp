// Record -> MetricPoint / EventItem / SampleItem / log line. Key strings are built once and shared
// (implicitly shared QStrings), since a long run produces millions of points.
#include "cluster/workspace/RecordConvert.h"

#include <QJsonDocument>

#include "engine/protocol/payloads.h"

namespace fathom::cluster {

namespace proto = fathom::protocol;

namespace {

QString qs(const std::string& s) { return QString::fromStdString(s); }

// json::value() throws on a type mismatch; engine output must never take the workbench down.
QString jsonString(const nlohmann::json& j, const char* key) {
  const auto it = j.find(key);
  return it != j.end() && it->is_string() ? qs(it->get<std::string>()) : QString();
}

struct GpuKeys {
  QString util, sm, used, total, reserved, allocated, frag, temp, power, clock;
};

const GpuKeys& gpuKeys(int index) {
  static QHash<int, GpuKeys> cache;
  auto it = cache.find(index);
  if (it == cache.end()) {
    const QString p = QStringLiteral("gpu%1.").arg(index);
    it = cache.insert(index, GpuKeys{p + "util_pct", p + "sm_active_pct", p + "mem_used", p + "mem_total",
                                     p + "mem_reserved", p + "mem_allocated", p + "fragmentation_pct",
                                     p + "temperature_c", p + "power_w", p + "clock_sm_mhz"});
  }
  return it.value();
}

const QString& internKey(const std::string& key) {
  static QHash<QByteArray, QString> cache;
  const QByteArray k = QByteArray::fromStdString(key);
  auto it = cache.find(k);
  if (it == cache.end()) it = cache.insert(k, QString::fromUtf8(k));
  return it.value();
}

}  // namespace

QStringList standardMetricKeys() {
  return {QStringLiteral("loss"),   QStringLiteral("lr"),     QStringLiteral("grad_norm"),
          QStringLiteral("tokens_per_s"), QStringLiteral("mfu"), QStringLiteral("step_time_s"),
          QStringLiteral("data_s"), QStringLiteral("fwd_s"),  QStringLiteral("bwd_s"),
          QStringLiteral("opt_s"),  QStringLiteral("comm_s")};
}

QJsonObject toQJsonObject(const nlohmann::json& j) {
  if (!j.is_object()) return {};
  const std::string text = j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  return QJsonDocument::fromJson(QByteArray::fromStdString(text)).object();
}

void RecordConverter::reset() {
  m_originMs = 0;
  m_lastStep.clear();
  m_lastTokens.clear();
}

double RecordConverter::secondsOf(const proto::Record& record) {
  if (m_originMs == 0 && record.t_ms > 0) m_originMs = record.t_ms;
  if (record.t_ms <= 0 || m_originMs == 0) return 0.0;
  return static_cast<double>(record.t_ms - m_originMs) / 1000.0;
}

void RecordConverter::convert(const proto::Record& record, QVector<MetricPoint>* metrics,
                              QVector<EventItem>* events, QVector<SampleItem>* samples, QStringList* logs) {
  const double t = secondsOf(record);
  const int rank = record.rank;
  switch (record.type) {
    case proto::RecordType::metric: {
      const auto m = proto::as<proto::MetricData>(record);
      m_lastStep[rank] = m.step;
      m_lastTokens[rank] = m.tokens;
      if (!metrics) break;
      auto add = [&](const QString& key, double v) {
        metrics->append(MetricPoint{m.step, m.tokens, t, key, v, rank, record.seq});
      };
      static const QStringList k = standardMetricKeys();
      add(k[0], m.loss);
      add(k[1], m.lr);
      add(k[2], m.grad_norm);
      add(k[3], m.tokens_per_s);
      add(k[4], m.mfu);
      add(k[5], m.step_time_s);
      add(k[6], m.data_s);
      add(k[7], m.fwd_s);
      add(k[8], m.bwd_s);
      add(k[9], m.opt_s);
      add(k[10], m.comm_s);
      static const QString kLossScale = QStringLiteral("loss_scale"), kValLoss = QStringLiteral("val_loss");
      if (m.loss_scale) add(kLossScale, *m.loss_scale);
      if (m.val_loss) add(kValLoss, *m.val_loss);
      for (const auto& [key, v] : m.extra) add(internKey(key), v);
      break;
    }
    case proto::RecordType::system: {
      if (!metrics) break;
      const auto s = proto::as<proto::SystemData>(record);
      const qint64 step = m_lastStep.value(rank, 0), tokens = m_lastTokens.value(rank, 0);
      auto add = [&](const QString& key, double v) {
        metrics->append(MetricPoint{step, tokens, t, key, v, rank, record.seq});
      };
      static const QString kCpu = QStringLiteral("cpu.util_pct"), kRam = QStringLiteral("ram.used"),
                           kRamTotal = QStringLiteral("ram.total");
      if (s.cpu_util_pct) add(kCpu, *s.cpu_util_pct);
      if (s.ram_used) add(kRam, static_cast<double>(*s.ram_used));
      if (s.ram_total) add(kRamTotal, static_cast<double>(*s.ram_total));
      for (const auto& g : s.gpus) {
        const GpuKeys& k = gpuKeys(g.index);
        if (g.util_pct) add(k.util, *g.util_pct);
        if (g.sm_active_pct) add(k.sm, *g.sm_active_pct);
        if (g.mem_used) add(k.used, static_cast<double>(*g.mem_used));
        if (g.mem_total) add(k.total, static_cast<double>(*g.mem_total));
        if (g.mem_reserved) add(k.reserved, static_cast<double>(*g.mem_reserved));
        if (g.mem_allocated) add(k.allocated, static_cast<double>(*g.mem_allocated));
        if (g.fragmentation_pct) add(k.frag, *g.fragmentation_pct);
        if (g.temperature_c) add(k.temp, *g.temperature_c);
        if (g.power_w) add(k.power, *g.power_w);
        if (g.clock_sm_mhz) add(k.clock, *g.clock_sm_mhz);
      }
      for (const auto& c : s.collectives) {
        const std::string p = "comm." + c.op + ".";
        add(internKey(p + "busbw_gbps"), c.busbw_gbps);
        add(internKey(p + "algbw_gbps"), c.algbw_gbps);
        add(internKey(p + "time_ms"), c.time_ms);
        add(internKey(p + "bytes"), static_cast<double>(c.bytes));
      }
      break;
    }
    case proto::RecordType::event: {
      const auto e = proto::as<proto::EventData>(record);
      qint64 step = -1;
      if (record.data.contains("step") && record.data["step"].is_number_integer())
        step = record.data["step"].get<int64_t>();
      if (events) {
        const std::string text = record.data.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
        events->append(EventItem{step, internKey(e.name), QString::fromStdString(text), rank, record.seq, t});
      }
      if (samples && e.name == proto::event_name::sample) {
        SampleItem s;
        s.step = step < 0 ? m_lastStep.value(rank, 0) : step;
        s.prompt = jsonString(e.fields, "prompt");
        s.text = jsonString(e.fields, "text");
        const auto it = e.fields.find("temperature");
        s.temperature = it != e.fields.end() && it->is_number() ? it->get<double>() : 0.0;
        s.rank = rank;
        samples->append(s);
      }
      break;
    }
    case proto::RecordType::log:
      if (logs) {
        const auto l = proto::as<proto::LogData>(record);
        logs->append(QStringLiteral("[rank %1] %2: %3").arg(rank).arg(qs(l.level), qs(l.message)));
      }
      break;
    case proto::RecordType::error:
      if (logs) {
        const auto e = proto::as<proto::ErrorData>(record);
        QString line = QStringLiteral("[rank %1] error %2: %3").arg(rank).arg(qs(e.code), qs(e.message));
        if (!e.hint.empty()) line += QStringLiteral(" (hint: %1)").arg(qs(e.hint));
        logs->append(line);
      }
      break;
    case proto::RecordType::exit:
      if (logs) {
        const auto x = proto::as<proto::ExitData>(record);
        QString line = QStringLiteral("[rank %1] exit %2 (code %3)").arg(rank).arg(qs(x.status)).arg(x.code);
        if (!x.reason.empty()) line += QStringLiteral(": ") + qs(x.reason);
        logs->append(line);
      }
      break;
    case proto::RecordType::hello:
    case proto::RecordType::unknown:
      break;
  }
}

}  // namespace fathom::cluster
