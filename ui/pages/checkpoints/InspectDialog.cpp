// InspectDialog: fathom-engine inspect --json (kind "safetensors") shown as a sortable table.
#include "ui/pages/checkpoints/InspectDialog.h"

#include <QDialogButtonBox>
#include <QDir>
#include <QHeaderView>
#include <QJsonArray>
#include <QJsonDocument>
#include <QJsonObject>
#include <QLabel>
#include <QLineEdit>
#include <QLocale>
#include <QProgressBar>
#include <QTableWidget>
#include <QVBoxLayout>

#include "cluster/jobs/EngineTool.h"
#include "ui/Format.h"

namespace fathom::ui {

namespace {

// A table item that sorts by a number, not by its text.
class NumberItem : public QTableWidgetItem {
 public:
  NumberItem(const QString& text, double value) : QTableWidgetItem(text) {
    setData(Qt::UserRole, value);
    setTextAlignment(Qt::AlignRight | Qt::AlignVCenter);
  }
  bool operator<(const QTableWidgetItem& other) const override {
    return data(Qt::UserRole).toDouble() < other.data(Qt::UserRole).toDouble();
  }
};

}  // namespace

InspectDialog::InspectDialog(const QString& file, const QString& title, const QString& engineBinary, QWidget* parent)
    : QDialog(parent), m_file(file) {
  setWindowTitle(tr("Inspect — %1").arg(title));
  resize(860, 560);
  auto* layout = new QVBoxLayout(this);
  m_summary = new QLabel(tr("Reading the header of %1…").arg(QDir::toNativeSeparators(file)), this);
  m_summary->setWordWrap(true);
  m_summary->setTextInteractionFlags(Qt::TextSelectableByMouse);
  layout->addWidget(m_summary);
  m_busy = new QProgressBar(this);
  m_busy->setRange(0, 0);
  m_busy->setMaximumHeight(6);
  m_busy->setTextVisible(false);
  layout->addWidget(m_busy);
  m_filter = new QLineEdit(this);
  m_filter->setPlaceholderText(tr("Filter tensors by name"));
  m_filter->setClearButtonEnabled(true);
  layout->addWidget(m_filter);
  m_table = new QTableWidget(0, 5, this);
  m_table->setHorizontalHeaderLabels({tr("Tensor"), tr("dtype"), tr("Shape"), tr("Parameters"), tr("Bytes")});
  m_table->horizontalHeader()->setSectionResizeMode(0, QHeaderView::Stretch);
  m_table->verticalHeader()->hide();
  m_table->setEditTriggers(QAbstractItemView::NoEditTriggers);
  m_table->setSelectionBehavior(QAbstractItemView::SelectRows);
  m_table->setAlternatingRowColors(true);
  m_table->setShowGrid(false);
  layout->addWidget(m_table, 1);
  auto* buttons = new QDialogButtonBox(QDialogButtonBox::Close, this);
  connect(buttons, &QDialogButtonBox::rejected, this, &QDialog::reject);
  layout->addWidget(buttons);
  connect(m_filter, &QLineEdit::textChanged, this, [this](const QString& text) {
    for (int r = 0; r < m_table->rowCount(); ++r)
      m_table->setRowHidden(r, !m_table->item(r, 0)->text().contains(text, Qt::CaseInsensitive));
  });

  m_tool = new cluster::EngineTool(this);
  m_tool->setEngineBinary(engineBinary);
  connect(m_tool, &cluster::EngineTool::finished, this, &InspectDialog::onFinished);
  if (!m_tool->start({QStringLiteral("inspect"), file, QStringLiteral("--json")})) {
    m_busy->hide();
    m_summary->setText(tr("Cannot inspect %1: %2").arg(QDir::toNativeSeparators(file), m_tool->error()));
  }
}

bool InspectDialog::isLoading() const { return m_tool->isRunning(); }

QStringList InspectDialog::tensorNames() const {
  QStringList names;
  for (int r = 0; r < m_table->rowCount(); ++r) names.append(m_table->item(r, 0)->text());
  return names;
}

void InspectDialog::onFinished(bool ok) {
  m_busy->hide();
  QJsonParseError perr;
  const QJsonObject r = QJsonDocument::fromJson(m_tool->standardOutput(), &perr).object();
  if (!ok || r.value(QStringLiteral("kind")).toString() != QLatin1String("safetensors")) {
    m_summary->setText(tr("Cannot inspect %1:\n%2").arg(QDir::toNativeSeparators(m_file), m_tool->error()));
    emit loaded(false);
    return;
  }
  const QJsonArray tensors = r.value(QStringLiteral("tensors")).toArray();
  m_table->setSortingEnabled(false);
  m_table->setRowCount(static_cast<int>(tensors.size()));
  int row = 0;
  for (const QJsonValue& v : tensors) {
    const QJsonObject t = v.toObject();
    QStringList dims;
    for (const QJsonValue& d : t.value(QStringLiteral("shape")).toArray()) dims.append(QString::number(qint64(d.toDouble())));
    const double params = t.value(QStringLiteral("params")).toDouble(), bytes = t.value(QStringLiteral("bytes")).toDouble();
    m_table->setItem(row, 0, new QTableWidgetItem(t.value(QStringLiteral("name")).toString()));
    m_table->setItem(row, 1, new QTableWidgetItem(t.value(QStringLiteral("dtype")).toString()));
    m_table->setItem(row, 2, new QTableWidgetItem(QLatin1Char('[') + dims.join(QStringLiteral(", ")) + QLatin1Char(']')));
    m_table->setItem(row, 3, new NumberItem(QLocale().toString(qint64(params)), params));
    m_table->setItem(row, 4, new NumberItem(formatBytes(bytes), bytes));
    ++row;
  }
  m_table->setSortingEnabled(true);
  m_table->resizeColumnsToContents();
  QStringList dtypes;
  const QJsonObject dt = r.value(QStringLiteral("dtypes")).toObject();
  for (auto it = dt.begin(); it != dt.end(); ++it)
    dtypes.append(QStringLiteral("%1 × %2").arg(it.value().toObject().value(QStringLiteral("tensors")).toInt()).arg(it.key()));
  QStringList meta;
  const QJsonObject md = r.value(QStringLiteral("metadata")).toObject();
  for (auto it = md.begin(); it != md.end(); ++it) meta.append(QStringLiteral("%1=%2").arg(it.key(), it.value().toString()));
  m_summary->setText(tr("%1\n%2 tensors (%3), %4 parameters, %5 of data, header %6. Read from the header only.%7")
                         .arg(QDir::toNativeSeparators(m_file))
                         .arg(tensors.size())
                         .arg(dtypes.join(QStringLiteral(", ")))
                         .arg(formatSi(r.value(QStringLiteral("total_params")).toDouble()))
                         .arg(formatBytes(r.value(QStringLiteral("data_bytes")).toDouble()))
                         .arg(formatBytes(r.value(QStringLiteral("header_bytes")).toDouble()))
                         .arg(meta.isEmpty() ? QString() : tr("\nMetadata: %1").arg(meta.join(QStringLiteral(", ")))));
  emit loaded(true);
}

}  // namespace fathom::ui
