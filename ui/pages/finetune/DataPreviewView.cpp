// Data preview rendering: QTextEdit char formats for the segments, QCPBars for the histogram.
#include "ui/pages/finetune/DataPreviewView.h"

#include <QFontDatabase>
#include <QLabel>
#include <QSplitter>
#include <QTextCursor>
#include <QTextEdit>
#include <QVBoxLayout>

#include <qcustomplot.h>

#include "ui/Format.h"
#include "ui/Theme.h"

namespace fathom::ui {

namespace {
void setColor(QLabel* label, const QString& themeColor) {
  QPalette p = label->palette();
  p.setColor(QPalette::WindowText, Theme::instance()->color(themeColor));
  label->setPalette(p);
}
}  // namespace

DataPreviewView::DataPreviewView(QWidget* parent) : QWidget(parent) {
  auto* layout = new QVBoxLayout(this);
  layout->setContentsMargins(0, 0, 0, 0);
  auto* split = new QSplitter(Qt::Vertical, this);
  split->setObjectName(QStringLiteral("previewSplitter"));
  split->setChildrenCollapsible(false);
  m_examples = new QTextEdit(split);
  m_examples->setObjectName(QStringLiteral("examples"));
  m_examples->setReadOnly(true);
  m_examples->setFont(QFontDatabase::systemFont(QFontDatabase::FixedFont));
  m_examples->setLineWrapMode(QTextEdit::WidgetWidth);
  m_examples->setToolTip(tr("The first examples after the chat template, as the model reads them: grey text is context "
                            "(template and prompt, no loss); highlighted text is what the model learns to write"));

  auto* chart = new QWidget(split);
  auto* chartLayout = new QVBoxLayout(chart);
  chartLayout->setContentsMargins(0, 0, 0, 0);
  m_plot = new QCustomPlot(chart);
  m_plot->setObjectName(QStringLiteral("lengthHistogram"));
  m_plot->setMinimumHeight(150);
  m_plot->setInteractions({});
  m_plot->xAxis->setLabel(tr("tokens per example"));
  m_plot->yAxis->setLabel(tr("examples"));
  m_bars = new QCPBars(m_plot->xAxis, m_plot->yAxis);
  m_bars->setWidthType(QCPBars::wtPlotCoords);
  m_seqLine = new QCPItemStraightLine(m_plot);
  m_seqLabel = new QCPItemText(m_plot);
  m_seqLabel->setPositionAlignment(Qt::AlignLeft | Qt::AlignTop);
  m_seqLabel->position->setTypeX(QCPItemPosition::ptPlotCoords);
  m_seqLabel->position->setTypeY(QCPItemPosition::ptAxisRectRatio);
  m_seqLabel->setClipToAxisRect(false);
  chartLayout->addWidget(m_plot, 1);
  m_truncation = new QLabel(chart);
  m_truncation->setObjectName(QStringLiteral("truncation"));
  m_truncation->setWordWrap(true);
  chartLayout->addWidget(m_truncation);
  split->addWidget(m_examples);
  split->addWidget(chart);
  split->setStretchFactor(0, 3);
  split->setStretchFactor(1, 2);
  layout->addWidget(split);

  connect(Theme::instance(), &Theme::changed, this, [this] {
    applyTheme();
    render();
  });
  applyTheme();
  setMessage(tr("Pick a base model and a .jsonl file: the first examples appear here as the model will see them."), false);
}

void DataPreviewView::applyTheme() {
  Theme* t = Theme::instance();
  const QColor bg = palette().color(QPalette::Base), text = t->color(QStringLiteral("chart.text"));
  m_plot->setBackground(bg);
  m_plot->axisRect()->setBackground(bg);
  for (QCPAxis* a : {m_plot->xAxis, m_plot->yAxis}) {
    a->setBasePen(QPen(t->color(QStringLiteral("chart.axis"))));
    a->setTickPen(QPen(t->color(QStringLiteral("chart.axis"))));
    a->setSubTickPen(QPen(t->color(QStringLiteral("chart.axis"))));
    a->setTickLabelColor(text);
    a->setLabelColor(text);
    a->grid()->setPen(QPen(t->color(QStringLiteral("chart.grid"))));
  }
  const QColor c = t->seriesColor(0);
  m_bars->setBrush(c);
  m_bars->setPen(QPen(c.darker(115)));
  QPen line(t->color(QStringLiteral("status.failed")));
  line.setWidthF(1.5);
  line.setStyle(Qt::DashLine);
  m_seqLine->setPen(line);
  m_seqLabel->setColor(t->color(QStringLiteral("status.failed")));
}

void DataPreviewView::setMessage(const QString& text, bool isError) {
  m_preview = DataPreview{};
  m_message = text;
  m_messageIsError = isError;
  render();
}

void DataPreviewView::setPreview(const DataPreview& preview) {
  m_preview = preview;
  m_message.clear();
  m_messageIsError = false;
  render();
}

void DataPreviewView::render() {
  Theme* t = Theme::instance();
  m_examples->clear();
  QTextCursor cur(m_examples->document());
  QTextCharFormat base;
  base.setForeground(palette().color(QPalette::Text));
  if (!m_message.isEmpty()) {
    QTextCharFormat f = base;
    f.setForeground(m_messageIsError ? t->color(QStringLiteral("status.failed")) : t->color(QStringLiteral("text.muted")));
    cur.insertText(m_message, f);
  }
  const bool dark = t->isDark();
  QTextCharFormat context = base;
  context.setForeground(t->color(QStringLiteral("text.muted")));
  QTextCharFormat trained = base;
  QColor hl = t->color(QStringLiteral("status.completed"));
  hl.setAlpha(dark ? 90 : 45);
  trained.setBackground(hl);
  trained.setForeground(palette().color(QPalette::Text));
  QTextCharFormat header = base;
  header.setFontWeight(QFont::Bold);
  header.setFontFamilies({font().family()});
  QTextCharFormat warn = header;
  warn.setForeground(t->color(QStringLiteral("status.stopped")));
  bool first = true;
  for (const PreviewExample& e : m_preview.examples) {
    if (!first) cur.insertText(QStringLiteral("\n\n"), base);
    first = false;
    cur.insertText(tr("Example %1 · %n tokens", nullptr, static_cast<int>(e.tokens)).arg(e.index + 1), header);
    if (e.truncated) cur.insertText(tr("  · truncated to %1").arg(m_preview.seqLen), warn);
    cur.insertText(QStringLiteral("\n"), base);
    for (const PreviewSegment& s : e.segments) cur.insertText(s.text, s.train ? trained : context);
  }
  m_examples->moveCursor(QTextCursor::Start);

  // Histogram: one bar per bin, centred in it.
  QVector<double> keys, values;
  double width = 1;
  const int bins = std::min<int>(m_preview.counts.size(), std::max<int>(0, m_preview.edges.size() - 1));
  double maxCount = 0, maxX = 0;
  for (int i = 0; i < bins; ++i) {
    const double lo = m_preview.edges[i], hi = m_preview.edges[i + 1];
    keys << (lo + hi) / 2;
    values << m_preview.counts[i];
    width = std::max(1.0, (hi - lo) * 0.9);
    maxCount = std::max(maxCount, m_preview.counts[i]);
    maxX = std::max(maxX, hi);
  }
  m_bars->setWidth(width);
  m_bars->setData(keys, values, true);
  const double seq = static_cast<double>(m_preview.seqLen);
  const bool haveSeq = seq > 0 && bins > 0;
  m_seqLine->setVisible(haveSeq);
  m_seqLabel->setVisible(haveSeq);
  if (haveSeq) {
    m_seqLine->point1->setCoords(seq, 0);
    m_seqLine->point2->setCoords(seq, 1);
    m_seqLabel->position->setCoords(seq, 0.02);
    m_seqLabel->setText(QStringLiteral(" seq_len %1").arg(m_preview.seqLen));
  }
  m_plot->xAxis->setRange(bins > 0 ? std::min(0.0, m_preview.edges.first()) : 0, std::max({maxX, seq * 1.08, 1.0}));
  m_plot->yAxis->setRange(0, std::max(1.0, maxCount * 1.15));
  m_plot->replot();

  // No lengths yet: an empty 0..1 chart says nothing, so the examples get the room.
  m_plot->setVisible(bins > 0);
  if (!m_message.isEmpty() || m_preview.count == 0) {
    setColor(m_truncation, QStringLiteral("text.muted"));
    m_truncation->setText(tr("The token-length histogram appears with the preview."));
  } else {
    setColor(m_truncation, m_preview.truncated > 0 ? QStringLiteral("status.stopped") : QStringLiteral("status.completed"));
    m_truncation->setText(tr("%1 of %2 examples truncated at seq_len %3 · template %4")
                              .arg(m_preview.truncated)
                              .arg(m_preview.count)
                              .arg(m_preview.seqLen)
                              .arg(m_preview.chatTemplate.isEmpty() ? QStringLiteral("?") : m_preview.chatTemplate));
  }
}

}  // namespace fathom::ui
