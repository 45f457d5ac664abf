// The workbench's item models over a real workspace registry: QAbstractItemModelTester on every
// model while rows are inserted, updated and removed through the repositories (which signal the
// changes), plus the values and roles the views rely on.
#include <QAbstractItemModelTester>
#include <QApplication>
#include <QSignalSpy>
#include <QStandardPaths>
#include <QTemporaryDir>
#include <QtTest>

#include <cmath>

#include "cluster/workspace/Workspace.h"
#include "ui/models/CheckpointTableModel.h"
#include "ui/models/RunTableModel.h"

using namespace fathom::cluster;
using fathom::ui::CheckpointTableModel;
using fathom::ui::RunTableModel;

namespace {

RunRecord makeRun(const QString& id, const QString& status, int ageSeconds) {
  RunRecord r;
  r.id = id;
  r.name = id.section(QLatin1Char('-'), 0, 0);
  r.runDir = QStringLiteral("/tmp/ws/runs/") + id;
  r.configPath = QStringLiteral("/tmp/ws/projects/demo.yaml");
  r.status = status;
  r.devices = {QStringLiteral("cpu")};
  r.createdAt = QDateTime::currentDateTimeUtc().addSecs(-ageSeconds);
  r.startedAt = r.createdAt.addSecs(1);
  if (isFinalStatus(status)) r.endedAt = r.startedAt.addSecs(75);
  r.lastStep = 120;
  r.lastLoss = 3.25;
  return r;
}

}  // namespace

class TestModels : public QObject {
  Q_OBJECT
 private slots:
  void initTestCase() {
    QStandardPaths::setTestModeEnabled(true);
    QVERIFY(m_dir.isValid());
    QString error;
    QVERIFY2(m_ws.open(m_dir.path(), &error), qPrintable(error));
  }

  void runTableModel() {
    QVERIFY(m_ws.runs().upsert(makeRun(QStringLiteral("alpha-1"), run_status::completed, 300)));
    QVERIFY(m_ws.runs().upsert(makeRun(QStringLiteral("beta-1"), run_status::running, 100)));
    RunTableModel model(&m_ws);
    QAbstractItemModelTester tester(&model, QAbstractItemModelTester::FailureReportingMode::QtTest);
    QCOMPARE(model.rowCount(), 2);
    QCOMPARE(model.columnCount(), int(RunTableModel::ColumnCount));
    // Newest first.
    QCOMPARE(model.runId(0), QStringLiteral("beta-1"));
    QCOMPARE(model.index(1, RunTableModel::Status).data().toString(), QStringLiteral("completed"));
    QCOMPARE(model.index(1, RunTableModel::Loss).data().toString(), QStringLiteral("3.25"));
    QCOMPARE(model.index(1, RunTableModel::Step).data(RunTableModel::SortRole).toLongLong(), 120);
    QCOMPARE(model.index(1, RunTableModel::Duration).data().toString(), QStringLiteral("1m 15s"));
    QCOMPARE(model.index(1, RunTableModel::Devices).data().toString(), QStringLiteral("cpu"));
    QVERIFY(model.index(1, RunTableModel::Status).data(Qt::ForegroundRole).value<QColor>().isValid());
    QCOMPARE(model.headerData(RunTableModel::TokensPerSecond, Qt::Horizontal).toString(), QStringLiteral("Tokens/s"));

    // A new run appears at the top, through the repository's signal.
    QSignalSpy inserted(&model, &QAbstractItemModel::rowsInserted);
    QVERIFY(m_ws.runs().upsert(makeRun(QStringLiteral("gamma-1"), run_status::queued, 0)));
    QCOMPARE(inserted.count(), 1);
    QCOMPARE(model.rowCount(), 3);
    QCOMPARE(model.runId(0), QStringLiteral("gamma-1"));

    // An update changes the row in place.
    QSignalSpy changed(&model, &QAbstractItemModel::dataChanged);
    RunRecord g = *m_ws.runs().get(QStringLiteral("gamma-1"));
    g.status = run_status::failed;
    g.lastLoss = NAN;
    g.error = QStringLiteral("engine exited with code 1");
    QVERIFY(m_ws.runs().upsert(g));
    QVERIFY(changed.count() >= 1);
    QCOMPARE(model.index(0, RunTableModel::Status).data().toString(), QStringLiteral("failed"));
    QCOMPARE(model.index(0, RunTableModel::Loss).data().toString(), QString());  // NaN shows nothing
    QVERIFY(model.index(0, RunTableModel::Name).data(Qt::ToolTipRole).toString().contains(QStringLiteral("exited with code 1")));

    // Removal.
    QSignalSpy removed(&model, &QAbstractItemModel::rowsRemoved);
    QVERIFY(m_ws.runs().remove(QStringLiteral("alpha-1")));
    QCOMPARE(removed.count(), 1);
    QCOMPARE(model.rowCount(), 2);
    QCOMPARE(model.rowOf(QStringLiteral("alpha-1")), -1);

    // Reload gives the same rows.
    model.reload();
    QCOMPARE(model.rowCount(), 2);
  }

  void checkpointTableModel() {
    QVERIFY(m_ws.runs().upsert(makeRun(QStringLiteral("delta-1"), run_status::stopped, 50)));
    CheckpointTableModel model(&m_ws);
    QAbstractItemModelTester tester(&model, QAbstractItemModelTester::FailureReportingMode::QtTest);
    const int before = model.rowCount();
    CheckpointRecord c;
    c.runId = QStringLiteral("delta-1");
    c.path = m_dir.filePath(QStringLiteral("runs/delta-1/checkpoints/step-30"));
    c.step = 30;
    c.bytes = 3 * 1024 * 1024;
    c.valLoss = 4.5;
    c.verified = true;
    c.createdAt = QDateTime::currentDateTimeUtc();
    QSignalSpy reset(&model, &QAbstractItemModel::modelReset);
    QVERIFY(m_ws.checkpoints().upsert(c));
    QVERIFY(reset.count() >= 1);  // reloaded through Workspace::checkpointsChanged
    QCOMPARE(model.rowCount(), before + 1);
    QCOMPARE(model.countForRun(QStringLiteral("delta-1")), 1);
    int row = -1;
    for (int i = 0; i < model.rowCount(); ++i)
      if (model.record(i).runId == QLatin1String("delta-1")) row = i;
    QVERIFY(row >= 0);
    QCOMPARE(model.index(row, CheckpointTableModel::Step).data(CheckpointTableModel::SortRole).toLongLong(), 30);
    QCOMPARE(model.index(row, CheckpointTableModel::Size).data().toString(), QStringLiteral("3.00 MiB"));
    QCOMPARE(model.index(row, CheckpointTableModel::ValLoss).data().toString(), QStringLiteral("4.5"));
    QVERIFY(model.index(row, CheckpointTableModel::Verified).data().toString().contains(QStringLiteral("verified")));
    QVERIFY(model.index(row, CheckpointTableModel::Run).data().toString().startsWith(QStringLiteral("delta (delta-1)")));
    // A second checkpoint, then the run's removal takes both away.
    c.step = 60;
    c.path = m_dir.filePath(QStringLiteral("runs/delta-1/checkpoints/step-60"));
    c.verified = false;
    QVERIFY(m_ws.checkpoints().upsert(c));
    QCOMPARE(model.countForRun(QStringLiteral("delta-1")), 2);
    QVERIFY(m_ws.runs().remove(QStringLiteral("delta-1")));
    QCOMPARE(model.countForRun(QStringLiteral("delta-1")), 0);
  }

 private:
  QTemporaryDir m_dir;
  Workspace m_ws;
};

QTEST_MAIN(TestModels)
#include "test_models.moc"
