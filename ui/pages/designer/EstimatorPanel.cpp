// Estimator panel. The chart is one horizontal stacked bar (QCPBars::moveAbove) in GiB with a
// vertical line at the device's usable memory (capacity minus the estimator's headroom).
#include "ui/pages/designer/EstimatorPanel.h"

#include <QComboBox>
#include <QFormLayout>
#include <QHBoxLayout>
#include <QLabel>
#include <QListWidget>
#include <QPushButton>
#include <QSpinBox>
#include <QVBoxLayout>

#include <qcustomplot.h>

#include <cmath>

#include "engine/config/units.h"
#include "ui/Format.h"
#include "ui/Theme.h"

namespace fathom::ui {
namespace cfg = fathom::config;

namespace {
QString qs(const std::string& s) { return QString::fromStdString(s); }
constexpr double kGiB = 1024.0 * 1024.0 * 1024.0;
}  // namespace

EstimatorPanel::EstimatorPanel(QWidget* parent) : QWidget(parent) {
  auto* layout = new QVBoxLayout(this);
  layout->setContentsMargins(6, 6, 6, 6);
  layout->setSpacing(6);

  auto* deviceRow = new QHBoxLayout;
  deviceRow->addWidget(new QLabel(tr("Device"), this));
  m_device = new QComboBox(this);
  m_device->setToolTip(tr("Memory and peak FLOP/s the estimate is checked against, per rank"));
  for (const cfg::DeviceSpec& d : cfg::known_devices()) {
    if (d.name == "cpu") continue;  // this machine's entry comes from the engine (or below)
    m_device->addItem(QStringLiteral("%1 (%2)").arg(qs(d.name).toUpper(), formatBytes(double(d.memory_bytes), 0)), qs(d.name));
  }
  m_device->insertItem(0, tr("This computer: CPU"), QStringLiteral("cpu"));
  m_device->setCurrentIndex(0);
  deviceRow->addWidget(m_device, 1);
  deviceRow->addWidget(new QLabel(QStringLiteral("×"), this));
  m_ranks = new QSpinBox(this);
  m_ranks->setRange(1, 4096);
  m_ranks->setSuffix(tr(" ranks"));
  m_ranks->setToolTip(tr("Data-parallel ranks (one device each); ZeRO shards over them"));
  deviceRow->addWidget(m_ranks);
  layout->addLayout(deviceRow);

  auto* facts = new QFormLayout;
  facts->setLabelAlignment(Qt::AlignRight);
  m_params = new QLabel(this);
  m_params->setWordWrap(true);
  m_params->setTextInteractionFlags(Qt::TextSelectableByMouse);
  m_compute = new QLabel(this);
  m_compute->setWordWrap(true);
  m_compute->setTextInteractionFlags(Qt::TextSelectableByMouse);
  facts->addRow(tr("Parameters"), m_params);
  facts->addRow(tr("Compute"), m_compute);
  layout->addLayout(facts);

  m_plot = new QCustomPlot(this);
  m_plot->setMinimumHeight(150);
  m_plot->setMaximumHeight(190);
  m_plot->setInteractions({});
  m_plot->yAxis->setVisible(false);
  m_plot->xAxis->setLabel(tr("memory per rank (GiB)"));
  m_plot->legend->setVisible(true);
  m_plot->legend->setFillOrder(QCPLegend::foColumnsFirst);
  m_plot->legend->setWrap(2);
  m_plot->plotLayout()->addElement(1, 0, m_plot->legend);
  m_plot->plotLayout()->setRowStretchFactor(1, 0.001);
  m_plot->legend->setBorderPen(Qt::NoPen);
  m_plot->legend->setBrush(Qt::NoBrush);
  m_plot->axisRect()->setAutoMargins(QCP::msLeft | QCP::msRight | QCP::msBottom);
  m_plot->axisRect()->setMargins(QMargins(0, 6, 0, 0));
  const QString names[] = {tr("parameters"), tr("gradients"), tr("optimizer state"), tr("activations")};
  for (int i = 0; i < 4; ++i) {
    auto* bars = new QCPBars(m_plot->yAxis, m_plot->xAxis);  // horizontal: key axis is y
    bars->setName(names[i]);
    bars->setWidth(0.6);
    bars->setProperty("label", names[i]);
    if (!m_bars.isEmpty()) bars->moveAbove(m_bars.back());
    m_bars << bars;
  }
  m_capacity = new QCPItemStraightLine(m_plot);
  m_capacityLabel = new QCPItemText(m_plot);
  m_capacityLabel->setPositionAlignment(Qt::AlignRight | Qt::AlignTop);
  m_capacityLabel->position->setTypeX(QCPItemPosition::ptPlotCoords);
  m_capacityLabel->position->setTypeY(QCPItemPosition::ptAxisRectRatio);
  m_capacityLabel->setClipToAxisRect(false);
  m_plot->yAxis->setRange(0.4, 1.6);
  layout->addWidget(m_plot);

  m_verdict = new QLabel(this);
  m_verdict->setWordWrap(true);
  QFont vf = m_verdict->font();
  vf.setBold(true);
  m_verdict->setFont(vf);
  layout->addWidget(m_verdict);

  m_suggestions = new QListWidget(this);
  m_suggestions->setToolTip(tr("Double-click a suggestion to apply it (and the ones above it) to the YAML"));
  m_suggestions->setMaximumHeight(110);
  m_suggestions->setWordWrap(true);
  layout->addWidget(m_suggestions);
  auto* apply = new QPushButton(tr("Apply suggestion"), this);
  apply->setEnabled(false);
  layout->addWidget(apply, 0, Qt::AlignRight);
  auto applySelected = [this] {
    const int row = m_suggestions->currentRow();
    if (row < 0 || row >= static_cast<int>(m_estimate.suggestions.size())) return;
    // Suggestions are cumulative: applying #k applies #0..k.
    QStringList overrides;
    for (int i = 0; i <= row; ++i)
      for (const auto& o : m_estimate.suggestions[i].overrides) overrides << qs(o);
    emit applyOverrides(overrides);
  };
  connect(apply, &QPushButton::clicked, this, applySelected);
  connect(m_suggestions, &QListWidget::itemDoubleClicked, this, applySelected);
  connect(m_suggestions, &QListWidget::currentRowChanged, apply, [apply](int row) { apply->setEnabled(row >= 0); });

  m_notes = new QLabel(this);
  m_notes->setWordWrap(true);
  m_notes->setForegroundRole(QPalette::PlaceholderText);
  layout->addWidget(m_notes);
  layout->addStretch(1);

  connect(m_device, &QComboBox::currentIndexChanged, this, [this] { recompute(); });
  connect(m_ranks, &QSpinBox::valueChanged, this, [this] { recompute(); });
  connect(Theme::instance(), &Theme::changed, this, [this] { applyTheme(); updateChart(); });
  applyTheme();
}

void EstimatorPanel::applyTheme() {
  Theme* t = Theme::instance();
  const QColor bg = palette().color(QPalette::Window), text = t->color(QStringLiteral("chart.text"));
  m_plot->setBackground(bg);
  m_plot->axisRect()->setBackground(bg);
  m_plot->xAxis->setBasePen(QPen(t->color(QStringLiteral("chart.axis"))));
  m_plot->xAxis->setTickPen(QPen(t->color(QStringLiteral("chart.axis"))));
  m_plot->xAxis->setSubTickPen(QPen(t->color(QStringLiteral("chart.axis"))));
  m_plot->xAxis->setTickLabelColor(text);
  m_plot->xAxis->setLabelColor(text);
  m_plot->xAxis->grid()->setPen(QPen(t->color(QStringLiteral("chart.grid"))));
  m_plot->legend->setTextColor(palette().color(QPalette::WindowText));
  const char* keys[] = {"estimate.parameters", "estimate.gradients", "estimate.optimizer", "estimate.activations"};
  for (int i = 0; i < m_bars.size(); ++i) {
    const QColor c = t->color(QLatin1String(keys[i]));
    m_bars[i]->setBrush(c);
    m_bars[i]->setPen(QPen(c.darker(115)));
  }
  QPen cap(t->color(QStringLiteral("estimate.capacity")));
  cap.setWidthF(1.5);
  cap.setStyle(Qt::DashLine);
  m_capacity->setPen(cap);
  m_capacityLabel->setColor(t->color(QStringLiteral("estimate.capacity")));
}

void EstimatorPanel::setLocalDevices(const QList<EngineDevice>& devices) {
  // Replace the "This computer" entries with what the engine reports.
  const QString current = m_device->currentData().toString();
  for (int i = m_device->count() - 1; i >= 0; --i)
    if (m_device->itemData(i, Qt::UserRole + 1).toBool() || m_device->itemData(i).toString() == QLatin1String("cpu"))
      m_device->removeItem(i);
  int at = 0;
  for (const EngineDevice& d : devices) {
    QString spec;
    QString label;
    if (d.kind == QLatin1String("cpu")) {
      spec = QStringLiteral("cpu");
      label = tr("This computer: CPU (%1)").arg(formatBytes(double(d.memoryTotal), 0));
    } else {
      spec = QStringLiteral("mem=%1B").arg(d.memoryTotal);
      // A known GPU keeps its FLOP/s: match the engine's name against the estimator's table.
      const QString lower = d.name.toLower();
      // Only when the memory agrees too (an A100 may be the 40 or the 80 GB one).
      for (const cfg::DeviceSpec& k : cfg::known_devices()) {
        const QString kn = qs(k.name);
        const bool sameMemory = std::abs(double(k.memory_bytes - d.memoryTotal)) < 0.05 * double(k.memory_bytes);
        if (kn != QLatin1String("cpu") && lower.contains(kn.section(QLatin1Char('-'), 0, 0)) && sameMemory) {
          spec = kn;
          break;
        }
      }
      label = tr("This computer: %1 %2 (%3)").arg(d.id(), d.name, formatBytes(double(d.memoryTotal), 0));
    }
    m_device->insertItem(at, label, spec);
    m_device->setItemData(at, true, Qt::UserRole + 1);
    ++at;
  }
  const int keep = m_device->findData(current);
  m_device->setCurrentIndex(keep >= 0 ? keep : 0);
  recompute();
}

QString EstimatorPanel::deviceSpec() const {
  const QString base = m_device->currentData().toString();
  return m_ranks->value() > 1 ? QStringLiteral("%1:%2").arg(base).arg(m_ranks->value()) : base;
}

void EstimatorPanel::setConfig(const cfg::RunConfig& config, bool valid) {
  const bool worldChanged = config.distributed.world_size != m_config.distributed.world_size;
  m_config = config;
  m_valid = valid;
  if (worldChanged && config.distributed.world_size > 1) {
    QSignalBlocker block(m_ranks);
    m_ranks->setValue(static_cast<int>(config.distributed.world_size));
  }
  recompute();
}

void EstimatorPanel::recompute() {
  std::string err;
  std::vector<cfg::DeviceSpec> devices = cfg::parse_devices(deviceSpec().toStdString(), &err);
  if (devices.empty()) {
    m_verdict->setText(tr("Cannot read the device choice: %1").arg(qs(err)));
    return;
  }
  m_estimate = cfg::estimate(m_config, devices);
  const cfg::ParamCounts& p = m_estimate.params;
  m_params->setText(tr("%1 total · %2 embedding · %3 non-embedding · %4 active per token%5")
                        .arg(qs(cfg::format_count(double(p.total))), qs(cfg::format_count(double(p.embedding))),
                             qs(cfg::format_count(double(p.non_embedding))), qs(cfg::format_count(double(p.active_per_token))),
                             p.vocab_assumed ? tr(" (vocabulary size assumed)") : QString()));
  QString compute = tr("%1/token · %2 tokens/step")
                        .arg(qs(cfg::format_flops(m_estimate.flops_per_token)), formatSi(double(m_estimate.tokens_per_step)));
  if (!m_estimate.devices.empty() && m_estimate.devices.front().step_seconds > 0)
    compute += tr(" · ~%1/step at %2 MFU (%3)")
                   .arg(qs(cfg::format_seconds(m_estimate.devices.front().step_seconds)),
                        formatFraction(m_estimate.assumed_mfu, 0), formatTokensPerSecond(m_estimate.tokens_per_second));
  m_compute->setText(compute);

  const cfg::DeviceVerdict* v = m_estimate.devices.empty() ? nullptr : &m_estimate.devices.front();
  Theme* t = Theme::instance();
  QPalette pal = m_verdict->palette();
  if (!m_valid) {
    m_verdict->setText(tr("The config has errors; the estimate uses the values that could be read."));
    pal.setColor(QPalette::WindowText, t->color(QStringLiteral("status.stopped")));
  } else if (v) {
    const double pct = v->usable_bytes > 0 ? double(v->required_bytes) / double(v->usable_bytes) : 0;
    if (m_estimate.fits) {
      m_verdict->setText(tr("✓ Fits: %1 of %2 usable per rank (%3)")
                             .arg(formatBytes(double(v->required_bytes)), formatBytes(double(v->usable_bytes)), formatFraction(pct, 0)));
      pal.setColor(QPalette::WindowText, t->color(QStringLiteral("status.completed")));
    } else {
      m_verdict->setText(tr("✗ Does not fit: %1 needed per rank, %2 usable on %3")
                             .arg(formatBytes(double(v->required_bytes)), formatBytes(double(v->usable_bytes)), qs(v->device.name)));
      pal.setColor(QPalette::WindowText, t->color(QStringLiteral("status.failed")));
    }
  }
  m_verdict->setPalette(pal);

  m_suggestions->clear();
  for (const cfg::Suggestion& s : m_estimate.suggestions) {
    QStringList o;
    for (const auto& x : s.overrides) o << qs(x);
    auto* item = new QListWidgetItem(
        tr("%1 → %2 per rank%3").arg(qs(s.description), formatBytes(double(s.total_bytes)), s.fits ? tr(" ✓ fits") : QString()),
        m_suggestions);
    item->setToolTip(o.join(QLatin1Char('\n')));
  }
  m_suggestions->setVisible(!m_estimate.suggestions.empty());
  QStringList notes;
  for (const auto& n : m_estimate.notes) notes << qs(n);
  m_notes->setText(notes.join(QLatin1Char('\n')));
  updateChart();
}

void EstimatorPanel::updateChart() {
  const cfg::MemoryBreakdown& m = m_estimate.memory;
  const double parts[] = {double(m.parameters), double(m.gradients), double(m.optimizer_state), double(m.activations)};
  double total = 0;
  for (double p : parts) total += p;
  double usable = 0;
  if (!m_estimate.devices.empty()) usable = double(m_estimate.devices.front().usable_bytes);
  // A config far below the device's memory would be an invisible sliver on a true scale: then the
  // axis fits the bar and the capacity is written at the right edge instead.
  const bool capacityOnScale = usable <= total * 4;
  const double extent = capacityOnScale ? std::max(total, usable) : total;
  // Axis unit by magnitude, so ticks read 2, 4, 6 MiB rather than 0.002 GiB.
  double unit = kGiB;
  QString unitName = QStringLiteral("GiB");
  if (extent < 0.5 * kGiB) {
    unit = extent < 0.5 * 1024 * 1024 ? 1024.0 : 1024.0 * 1024.0;
    unitName = extent < 0.5 * 1024 * 1024 ? QStringLiteral("KiB") : QStringLiteral("MiB");
  }
  for (int i = 0; i < m_bars.size(); ++i) {
    m_bars[i]->data()->clear();
    m_bars[i]->addData(1.0, parts[i] / unit);
    m_bars[i]->setName(QStringLiteral("%1 %2").arg(m_bars[i]->property("label").toString(), formatBytes(parts[i])));
  }
  const double xMax = (capacityOnScale ? extent * 1.08 : total * 1.35) / unit + 1e-9;
  m_capacity->point1->setCoords(usable / unit, 0);
  m_capacity->point2->setCoords(usable / unit, 1);
  m_capacity->setVisible(usable > 0 && capacityOnScale);
  m_capacityLabel->position->setCoords(capacityOnScale ? usable / unit : xMax, 0.0);
  m_capacityLabel->setText(capacityOnScale ? tr("usable %1").arg(formatBytes(usable, 1))
                                           : tr("usable %1 →").arg(formatBytes(usable, 1)));
  m_capacityLabel->setVisible(usable > 0);
  m_plot->xAxis->setRange(0, xMax);
  m_plot->xAxis->setLabel(tr("memory per rank (%1; %2 in all)").arg(unitName, formatBytes(total)));
  m_plot->replot(QCustomPlot::rpQueuedReplot);
}

}  // namespace fathom::ui
