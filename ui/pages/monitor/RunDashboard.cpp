// Panel table and key routing. A (key, rank) pair is resolved once and cached; unknown keys
// (metric `extra` series) get a panel of their own on first sight, so nothing the engine
// reports is dropped.
#include "ui/pages/monitor/RunDashboard.h"

#include <QRegularExpression>
#include <QSplitter>
#include <QVBoxLayout>

#include <cmath>

#include "cluster/jobs/RunSession.h"
#include "cluster/launch/ClusterSpec.h"
#include "ui/Theme.h"
#include "ui/charts/ExpertLoadMap.h"
#include "ui/pages/monitor/RankHeatMap.h"

namespace fathom::ui {

namespace {

constexpr double kGiB = 1024.0 * 1024.0 * 1024.0;
const char* kStackKeys[5] = {"data_s", "fwd_s", "bwd_s", "opt_s", "comm_s"};

struct Spec {
  const char* id;
  const char* title;
  const char* unit;
  double scale;
  const char* pattern;  // regex over the key; capture 1 (if any) is the device index
  bool training;        // gets event markers
  bool alwaysVisible;
};

// Order = default order in the grid.
const Spec kSpecs[] = {
    {"loss", "Loss", "", 1, R"(^(?:loss|val_loss)$)", true, true},
    {"lr", "Learning rate", "", 1, R"(^lr$)", true, false},
    {"grad_norm", "Gradient norm", "", 1, R"(^grad_norm$)", true, false},
    {"tokens_per_s", "Throughput", "tok/s", 1, R"(^tokens_per_s$)", true, false},
    {"mfu", "MFU", "%", 100, R"(^mfu$)", true, false},
    {"step_time", "Step time split", "s", 1, R"(^(?:data_s|fwd_s|bwd_s|opt_s|comm_s)$)", true, false},
    {"gpu_util", "GPU utilisation", "%", 1, R"(^gpu(\d+)\.util_pct$)", false, false},
    {"gpu_mem", "GPU memory used / reserved", "GiB", 1 / kGiB, R"(^gpu(\d+)\.(?:mem_used|mem_reserved)$)", false, false},
    {"gpu_frag", "Allocator fragmentation", "%", 1, R"(^gpu(\d+)\.fragmentation_pct$)", false, false},
    {"gpu_temp", "GPU temperature", "°C", 1, R"(^gpu(\d+)\.temperature_c$)", false, false},
    {"gpu_power", "GPU power", "W", 1, R"(^gpu(\d+)\.power_w$)", false, false},
    {"comm_busbw", "Collective bus bandwidth", "GB/s", 1, R"(^comm\.(.+)\.busbw_gbps$)", false, false},
    // Data parallelism, one series per rank: stragglers (step time), the communication each step
    // did (overlapped or not), what backward could not hide, and the share spent waiting.
    {"rank_step_time", "Step time per rank", "s", 1, R"(^step_time_s$)", true, false},
    {"comm_time", "Communication per step (per rank)", "s", 1, R"(^$)", true, false},
    {"comm_sync", "Gradient sync latency after backward", "s", 1, R"(^comm\.sync_s$)", true, false},
    {"comm_wait", "Time waiting on communication", "%", 100, R"(^comm\.wait_frac$)", true, false},
    {"cpu", "CPU utilisation", "%", 1, R"(^cpu\.util_pct$)", false, false},
    {"ram", "Host memory used", "GiB", 1 / kGiB, R"(^ram\.used$)", false, false},
    {"loss_scale", "Loss scale (fp16)", "", 1, R"(^loss_scale$)", true, false},
    // DeepSeekMoE routing (metric extra keys; the per-expert moe.load.<layer>.<expert> go to the
    // heat map, not to line charts).
    {"moe_aux", "MoE auxiliary loss", "", 1, R"(^moe\.aux_loss$)", true, false},
    {"moe_imbalance", "MoE load imbalance (max / mean expert load)", "×", 1, R"(^moe\.load_imbalance$)", true, false},
    {"moe_dropped", "MoE dropped tokens (over capacity)", "%", 100, R"(^moe\.dropped_frac$)", true, false},
};

// Keys that are read but not charted (totals are constant; the rest is too detailed for the grid).
bool ignoredKey(const QString& key) {
  static const QRegularExpression re(QStringLiteral(
      R"(^(?:ram\.total|gpu\d+\.(?:mem_total|mem_allocated|sm_active_pct|clock_sm_mhz|clock_mem_mhz|energy_j)|comm\..+\.(?:algbw_gbps|time_ms|bytes))$)"));
  return re.match(key).hasMatch();
}

QString eventText(const cluster::EventItem& e) {
  if (e.name == QLatin1String("checkpoint_saved")) return QObject::tr("checkpoint saved (step %1)").arg(e.step);
  if (e.name == QLatin1String("eval")) return QObject::tr("eval (step %1)").arg(e.step);
  if (e.name == QLatin1String("nan_skipped")) return QObject::tr("non-finite step skipped (step %1)").arg(e.step);
  if (e.name == QLatin1String("resumed")) return QObject::tr("resumed from step %1").arg(e.step);
  return e.name;
}

bool markedEvent(const QString& name) {
  return name == QLatin1String("checkpoint_saved") || name == QLatin1String("eval") ||
         name == QLatin1String("nan_skipped") || name == QLatin1String("resumed");
}

}  // namespace

RunDashboard::RunDashboard(QWidget* parent) : QWidget(parent) {
  auto* layout = new QVBoxLayout(this);
  layout->setContentsMargins(0, 0, 0, 0);
  // The expert-load heat map sits above the grid, shown only for runs that report moe.load.*.
  auto* split = new QSplitter(Qt::Vertical, this);
  m_expertLoad = new ExpertLoadMap(split);
  m_expertLoad->hide();
  // Data-parallel runs: rank × step coloured by step time (shown once two ranks report).
  m_rankMap = new RankHeatMap(split);
  m_rankMap->hide();
  m_grid = new ChartGrid(split);
  split->addWidget(m_expertLoad);
  split->addWidget(m_rankMap);
  split->addWidget(m_grid);
  split->setStretchFactor(0, 1);
  split->setStretchFactor(1, 1);
  split->setStretchFactor(2, 3);
  split->setSizes({260, 180, 700});
  layout->addWidget(split);
  buildPanels();
  connect(Theme::instance(), &Theme::changed, this, [this] { reload(); });
}

void RunDashboard::buildPanels() {
  for (const Spec& s : kSpecs) {
    auto* p = new ChartPanel(QString::fromLatin1(s.id), tr(s.title), QString::fromUtf8(s.unit), s.scale);
    if (QLatin1String(s.id) == QLatin1String("step_time")) p->setStacked(true);
    m_grid->addPanel(p, s.alwaysVisible);
  }
}

void RunDashboard::resetRouting() {
  m_routes.clear();
  m_tokensAtStep.clear();
  m_ranks.clear();
  m_events.clear();
  m_stackStep = -1;
  m_stackHave = 0;
  m_expertLoad->clear();
  m_expertLoad->hide();
  m_rankMap->clear();
  m_rankMap->hide();
  for (ChartPanel* p : m_grid->panels()) {
    p->clearSeries();
    p->setMarkers({});
    p->setXAxisKind(m_xKind);
  }
  // Panels of `extra` keys stay (empty, so hidden) and are reused if the next run has them too.
}

void RunDashboard::setSession(cluster::RunSession* session) {
  for (const auto& c : m_connections) disconnect(c);
  m_connections.clear();
  m_session = session;
  if (session) {
    m_connections << connect(session, &cluster::RunSession::metricsAppended, this,
                             [this](const QString&, const QVector<cluster::MetricPoint>& pts) { appendPoints(pts); });
    m_connections << connect(session, &cluster::RunSession::eventsAppended, this,
                             [this](const QString&, const QVector<cluster::EventItem>& ev) { appendEvents(ev); });
    m_connections << connect(session, &cluster::RunSession::sessionReset, this, [this] { reload(); });
  }
  reload();
}

void RunDashboard::setXAxisKind(XAxisKind kind) {
  if (kind == m_xKind) return;
  m_xKind = kind;
  reload();
}

QString RunDashboard::rankName(int rank) const {
  const QString host = m_rankHosts.value(rank);
  return host.isEmpty() ? QStringLiteral("r%1").arg(rank) : QStringLiteral("r%1@%2").arg(rank).arg(host);
}

void RunDashboard::reload() {
  resetRouting();
  // SSH cluster runs (issue 9): each rank's host from <runDir>/cluster.json (ranks host by host).
  m_rankHosts.clear();
  cluster::ClusterSpec spec;
  if (m_session && cluster::ClusterSpec::load(m_session->runDir(), &spec))
    for (int r = 0; r < spec.worldSize(); ++r) m_rankHosts.insert(r, spec.hosts.value(spec.hostOfRank(r)).displayName());
  m_rankMap->setRankHosts(m_rankHosts);
  if (!m_session) {
    m_grid->relayout();
    return;
  }
  // Rank 0 first so that the step -> tokens map exists before other ranks' points arrive.
  QList<int> ranks = m_session->ranks();
  std::sort(ranks.begin(), ranks.end());
  for (int r : ranks) m_ranks.insert(r);  // series are named per rank from the first point on
  const QStringList keys = m_session->keys();
  for (int rank : ranks) {
    QVector<cluster::MetricPoint> all;
    for (const QString& key : keys) {
      const QVector<cluster::MetricPoint> s = m_session->series(key, rank);
      if (s.isEmpty()) continue;
      all += s;
    }
    // Points of one record stay together (same step), as the live stream delivers them.
    std::stable_sort(all.begin(), all.end(), [](const cluster::MetricPoint& a, const cluster::MetricPoint& b) {
      return a.seq != b.seq ? a.seq < b.seq : a.step < b.step;
    });
    appendPoints(all);
  }
  appendEvents(m_session->events());
  m_grid->relayout();
}

double RunDashboard::xOf(const cluster::MetricPoint& p) const {
  switch (m_xKind) {
    case XAxisKind::Step: return double(p.step);
    case XAxisKind::Tokens: return double(p.tokens);
    case XAxisKind::Time: return p.tSec;
  }
  return double(p.step);
}

RunDashboard::Route RunDashboard::routeFor(const QString& key, int rank) {
  const auto cacheKey = qMakePair(key, rank);
  auto it = m_routes.find(cacheKey);
  if (it != m_routes.end()) return it.value();
  Route r;
  if (ignoredKey(key)) {
    m_routes.insert(cacheKey, r);
    return r;
  }
  Theme* theme = Theme::instance();
  const bool multiRank = m_ranks.size() > 1 || rank > 0;
  // Values every rank reports identically (the global mean loss, the schedule, the global norm
  // and throughput): rank 0's series only, so the charts do not repeat one line per rank.
  static const QRegularExpression global(QStringLiteral(R"(^(?:loss|val_loss|lr|grad_norm|tokens_per_s|mfu|loss_scale)$)"));
  if (rank != 0 && global.match(key).hasMatch()) {
    m_routes.insert(cacheKey, r);
    return r;
  }
  for (const Spec& s : kSpecs) {
    static QHash<const Spec*, QRegularExpression> compiled;
    auto cit = compiled.find(&s);
    if (cit == compiled.end()) cit = compiled.insert(&s, QRegularExpression(QString::fromLatin1(s.pattern)));
    const QRegularExpressionMatch m = cit->match(key);
    if (!m.hasMatch()) continue;
    ChartPanel* panel = m_grid->panel(QString::fromLatin1(s.id));
    const QString id = QString::fromLatin1(s.id);
    QString name;
    int colorIndex = 0;
    Qt::PenStyle style = Qt::SolidLine;
    bool scatter = false;
    if (id == QLatin1String("step_time")) {
      if (rank != 0) {  // the split of rank 0 is representative; all ranks step together
        m_routes.insert(cacheKey, r);
        return r;
      }
      for (int i = 0; i < 5; ++i)
        if (key == QLatin1String(kStackKeys[i])) r.stackSlot = i;
      // Create all five in stacking order so the fills nest.
      if (panel->seriesCount() == 0)
        for (int i = 0; i < 5; ++i) panel->addSeries(QString::fromLatin1(kStackKeys[i]).chopped(2), theme->seriesColor(i));
      r.panel = panel;
      r.series = r.stackSlot;
      m_routes.insert(cacheKey, r);
      return r;
    }
    if (m.lastCapturedIndex() >= 1) {
      // Per device: one series per (device, rank) where several ranks report.
      const QString dev = m.captured(1);
      bool isNum = false;
      const int devIndex = dev.toInt(&isNum);
      name = id == QLatin1String("comm_busbw") ? dev : QStringLiteral("gpu%1").arg(dev);
      if (multiRank) name += QStringLiteral(" · ") + rankName(rank);
      colorIndex = isNum ? devIndex + (multiRank ? rank : 0) : panel->seriesCount();
      if (id == QLatin1String("gpu_mem")) {
        const bool reserved = key.endsWith(QLatin1String("mem_reserved"));
        name += reserved ? tr(" reserved") : tr(" used");
        style = reserved ? Qt::DashLine : Qt::SolidLine;
      }
    } else {
      name = key;
      if (multiRank) name += QStringLiteral(" · ") + rankName(rank);
      if (key == QLatin1String("val_loss")) {
        colorIndex = 1;
        scatter = true;
      }
      if (multiRank) colorIndex = rank * 2 + (key == QLatin1String("val_loss") ? 1 : 0);
    }
    r.panel = panel;
    r.series = panel->seriesIndex(name);
    if (r.series < 0) r.series = panel->addSeries(name, theme->seriesColor(colorIndex), style, scatter);
    m_routes.insert(cacheKey, r);
    m_grid->relayout();
    return r;
  }
  if (!r.panel) {
    // An `extra` series: its own panel.
    const QString id = QStringLiteral("extra:") + key;
    ChartPanel* panel = m_grid->panel(id);
    if (!panel) {
      panel = new ChartPanel(id, key, QString());
      panel->setProperty("extra", true);
      panel->setXAxisKind(m_xKind);
      m_grid->addPanel(panel);
    }
    const QString name = multiRank ? rankName(rank) : key;
    r.panel = panel;
    r.series = panel->seriesIndex(name);
    if (r.series < 0) r.series = panel->addSeries(name, theme->seriesColor(multiRank ? rank : 0));
    m_grid->relayout();
  }
  m_routes.insert(cacheKey, r);
  return r;
}

void RunDashboard::appendPoints(const QVector<cluster::MetricPoint>& points) {
  for (const cluster::MetricPoint& p : points) {
    if (!m_ranks.contains(p.rank)) m_ranks.insert(p.rank);
    if (p.rank == 0 && p.key == QLatin1String("loss")) m_tokensAtStep.insert(p.step, p.tokens);
    int layer = 0, expert = 0;
    if (p.key.startsWith(QLatin1String("moe.load.")) && ExpertLoadMap::parseKey(p.key, &layer, &expert)) {
      // Rank 0's routing stands for the run (every rank routes its own micro-batches alike).
      if (p.rank == 0) {
        m_expertLoad->setLoad(layer, expert, p.step, p.value);
        if (m_expertLoad->isHidden()) m_expertLoad->show();
      }
      continue;
    }
    const Route r = routeFor(p.key, p.rank);
    if (p.key == QLatin1String("step_time_s")) {
      m_rankMap->setStepTime(p.rank, p.step, p.value);
      if (m_rankMap->isHidden() && m_ranks.size() > 1) m_rankMap->show();
    }
    if (p.key == QLatin1String("comm_s") && m_ranks.size() > 1) {
      // Beside rank 0's step-time split: every rank's communication time in a panel of its own.
      ChartPanel* panel = m_grid->panel(QStringLiteral("comm_time"));
      const QString name = QStringLiteral("comm_s · r%1").arg(p.rank);
      int series = panel->seriesIndex(name);
      if (series < 0) {
        series = panel->addSeries(name, Theme::instance()->seriesColor(p.rank));
        m_grid->relayout();
      }
      panel->append(series, xOf(p), p.value);
    }
    if (!r.panel) continue;
    const double x = xOf(p);
    if (r.stackSlot >= 0) {
      if (p.step != m_stackStep) {
        flushStack();
        m_stackStep = p.step;
        m_stackX = x;
      }
      m_stackVals[r.stackSlot] = std::isfinite(p.value) ? p.value : 0;
      m_stackHave |= 1 << r.stackSlot;
      if (m_stackHave == 0x1f) flushStack();
      continue;
    }
    r.panel->append(r.series, x, p.value);
  }
  if (!points.isEmpty()) m_grid->requestReplotAll();
}

void RunDashboard::flushStack() {
  if (m_stackHave == 0 || m_stackStep < 0) return;
  ChartPanel* panel = m_grid->panel(QStringLiteral("step_time"));
  double cum = 0;
  for (int i = 0; i < 5; ++i) {
    cum += (m_stackHave & (1 << i)) ? m_stackVals[i] : 0;
    if (i < panel->seriesCount()) panel->append(i, m_stackX, cum);
    m_stackVals[i] = 0;
  }
  m_stackHave = 0;
  m_stackStep = -1;
}

double RunDashboard::markerX(const cluster::EventItem& e) const {
  switch (m_xKind) {
    case XAxisKind::Step: return double(e.step);
    case XAxisKind::Time: return e.tSec;
    case XAxisKind::Tokens: {
      if (m_tokensAtStep.isEmpty()) return NAN;
      auto it = m_tokensAtStep.lowerBound(e.step);
      if (it == m_tokensAtStep.end()) --it;
      return double(it.value());
    }
  }
  return NAN;
}

void RunDashboard::appendEvents(const QVector<cluster::EventItem>& events) {
  for (const cluster::EventItem& e : events) {
    m_events.push_back(e);
    if (!markedEvent(e.name) || e.step < 0) continue;
    const double x = markerX(e);
    if (!std::isfinite(x)) continue;
    const ChartMarker marker{x, e.name, eventText(e)};
    for (const Spec& s : kSpecs)
      if (s.training)
        if (ChartPanel* p = m_grid->panel(QString::fromLatin1(s.id))) p->addMarker(marker);
  }
}

}  // namespace fathom::ui
