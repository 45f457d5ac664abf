// RunSession ingest: a writer thread appends real protocol lines (fathom_protocol's encode_line) in
// arbitrary chunks, half lines included, while the session follows; series, events, samples, logs
// and the batched signals are checked with QSignalSpy, including the rate bound (<= ~10 batches a
// second while 10,000 records a second are written). Also: catch-up in one batch, a resumed run in
// one file, multi-rank exits, a replaced file, and control lines through the FIFO.
#define QT_NO_KEYWORDS  // fathom_protocol has members named emit()
#include <QtTest>

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cmath>
#include <random>
#include <string>
#include <thread>

#include "cluster/jobs/RunSession.h"
#include "engine/protocol/protocol.h"

using namespace fathom::cluster;
namespace proto = fathom::protocol;

namespace {

constexpr int64_t kT0 = 1700000000000;

std::string line(const proto::Record& base, int rank, int64_t seq) {
  proto::Record r = base;
  r.run = "r";
  r.rank = rank;
  r.seq = seq;
  r.t_ms = kT0 + seq * 10;
  return proto::encode_line(r);
}

std::string metricLine(int64_t step, int rank, int64_t seq) {
  proto::MetricData m;
  m.step = step;
  m.tokens = step * 100;
  m.loss = 10.0 / static_cast<double>(step);
  m.lr = 1e-3;
  m.tokens_per_s = 5000;
  return line(proto::make_record(m), rank, seq);
}

std::string helloLine(int rank, int world, int64_t seq) {
  proto::HelloData h;
  h.world_size = world;
  h.pid = 1;
  h.command = "train";
  return line(proto::make_record(h), rank, seq);
}

std::string exitLine(const std::string& status, int code, int rank, int64_t seq) {
  return line(proto::make_record(proto::ExitData{status, code, ""}), rank, seq);
}

void appendBytes(const QString& path, const std::string& bytes) {
  const int fd = ::open(QFile::encodeName(path).constData(), O_WRONLY | O_CREAT | O_APPEND, 0644);
  QVERIFY(fd >= 0);
  QCOMPARE(::write(fd, bytes.data(), bytes.size()), static_cast<ssize_t>(bytes.size()));
  ::close(fd);
}

int pointsIn(const QSignalSpy& spy) {
  int n = 0;
  for (const auto& args : spy) n += args.at(1).value<QVector<MetricPoint>>().size();
  return n;
}

}  // namespace

class RunSessionTest : public QObject {
  Q_OBJECT

 private Q_SLOTS:
  void followsAChunkedWriter() {
    QTemporaryDir tmp;
    const QString events = tmp.filePath("events.jsonl");
    RunSession s(QStringLiteral("r"), tmp.path());
    QSignalSpy metrics(&s, &RunSession::metricsAppended);
    QSignalSpy eventsSpy(&s, &RunSession::eventsAppended);
    QSignalSpy samples(&s, &RunSession::samplesAppended);
    QSignalSpy logs(&s, &RunSession::logsAppended);
    QSignalSpy hello(&s, &RunSession::helloReceived);
    QSignalSpy status(&s, &RunSession::statusChanged);
    QSignalSpy finished(&s, &RunSession::finished);
    s.start();  // before the file exists
    QCOMPARE(metrics.size(), 0);

    constexpr int kSteps = 500;
    std::string all = helloLine(0, 1, 1);
    int64_t seq = 2;
    for (int step = 1; step <= kSteps; ++step) {
      all += metricLine(step, 0, seq++);
      if (step == 250) {
        all += line(proto::make_record(proto::EventData{"checkpoint_saved", {{"step", 250}, {"path", "/x/step-250"}}}), 0, seq++);
        all += line(proto::make_record(proto::EventData{"sample", {{"step", 250}, {"prompt", "The Congress"}, {"text", " shall"}, {"temperature", 0.8}}}), 0, seq++);
        all += line(proto::make_record(proto::LogData{"warn", "loss spike"}), 0, seq++);
      }
    }
    all += exitLine("completed", 0, 0, seq++);
    std::atomic<bool> done{false};
    std::thread writer([&] {
      std::mt19937 rng(12345);
      size_t pos = 0;
      int n = 0;
      while (pos < all.size()) {
        const size_t len = std::min<size_t>(all.size() - pos, 1 + rng() % 300);  // cuts lines anywhere
        appendBytes(events, all.substr(pos, len));
        pos += len;
        if (++n % 20 == 0) std::this_thread::sleep_for(std::chrono::milliseconds(2));
        if (n == 100) appendBytes(tmp.filePath("stderr.log"), "engine: preparing data\nengine: half a li");
        if (n == 200) appendBytes(tmp.filePath("stderr.log"), "ne, now whole\n");
      }
      done = true;
    });
    QTRY_VERIFY_WITH_TIMEOUT(done.load() && finished.size() == 1, 20000);
    writer.join();
    QTRY_VERIFY_WITH_TIMEOUT(s.logs().contains(QStringLiteral("engine: half a line, now whole")), 5000);

    const auto loss = s.series(QStringLiteral("loss"));
    QCOMPARE(loss.size(), kSteps);
    for (int i = 0; i < kSteps; ++i) {
      QCOMPARE(loss[i].step, qint64(i + 1));
      QCOMPARE(loss[i].value, 10.0 / (i + 1));
      QCOMPARE(loss[i].tokens, qint64((i + 1) * 100));
    }
    QVERIFY(loss.last().tSec > loss.first().tSec);
    QCOMPARE(s.series(QStringLiteral("tokens_per_s")).size(), kSteps);
    QVERIFY(s.keys().contains(QStringLiteral("grad_norm")));
    QCOMPARE(s.ranks(), QList<int>{0});
    // Every point arrived exactly once through the signals.
    QCOMPARE(pointsIn(metrics), kSteps * 11);
    QCOMPARE(hello.size(), 1);
    QCOMPARE(s.events().size(), 2);
    QCOMPARE(s.events()[0].name, QStringLiteral("checkpoint_saved"));
    QCOMPARE(s.events()[0].step, 250);
    QVERIFY(s.events()[0].json.contains(QStringLiteral("/x/step-250")));
    QCOMPARE(s.samples().size(), 1);
    QCOMPARE(s.samples()[0].prompt, QStringLiteral("The Congress"));
    QCOMPARE(s.samples()[0].text, QStringLiteral(" shall"));
    QCOMPARE(s.samples()[0].temperature, 0.8);
    QVERIFY(eventsSpy.size() >= 1);
    QCOMPARE(samples.size(), 1);
    QVERIFY(s.logs().contains(QStringLiteral("[rank 0] warn: loss spike")));
    QVERIFY(s.logs().contains(QStringLiteral("engine: preparing data")));
    QVERIFY(logs.size() >= 1);
    QCOMPARE(finished.at(0).at(1).toString(), QStringLiteral("completed"));
    QCOMPARE(finished.at(0).at(2).toInt(), 0);
    QCOMPARE(status.last().at(1).toString(), QStringLiteral("completed"));
    QCOMPARE(s.status(), QStringLiteral("completed"));
    QCOMPARE(s.lastStep(), kSteps);
    QCOMPARE(s.malformedLines(), 0);
  }

  void batchesAtMostTenTimesASecond() {
    QTemporaryDir tmp;
    const QString events = tmp.filePath("events.jsonl");
    RunSession s(QStringLiteral("r"), tmp.path());
    QSignalSpy metrics(&s, &RunSession::metricsAppended);
    QElapsedTimer sinceFirst;
    int64_t count = 0;
    connect(&s, &RunSession::metricsAppended, this, [&] {
      if (!sinceFirst.isValid()) sinceFirst.start();
      ++count;
    });
    s.start();
    appendBytes(events, helloLine(0, 1, 1));
    // 10,000 records a second for 2 seconds, in 10 ms slices, each slice split mid-line.
    constexpr int kPerSlice = 100, kSlices = 200;
    std::atomic<bool> done{false};
    std::thread writer([&] {
      int64_t seq = 2, step = 1;
      auto next = std::chrono::steady_clock::now();
      for (int slice = 0; slice < kSlices; ++slice) {
        std::string chunk;
        for (int i = 0; i < kPerSlice; ++i) chunk += metricLine(step++, 0, seq++);
        const size_t cut = chunk.size() / 2 + 7;
        appendBytes(events, chunk.substr(0, cut));
        appendBytes(events, chunk.substr(cut));
        next += std::chrono::milliseconds(10);
        std::this_thread::sleep_until(next);
      }
      done = true;
    });
    // Until the last batch was emitted (series() fills before the batched signal goes out).
    QTRY_VERIFY_WITH_TIMEOUT(done.load() && pointsIn(metrics) == kPerSlice * kSlices * 11, 60000);
    writer.join();
    QVERIFY(sinceFirst.isValid());
    const double seconds = sinceFirst.elapsed() / 1000.0;
    QTest::qWait(250);  // nothing more may come
    const int batches = metrics.size();
    qInfo("%d metricsAppended batches in %.2f s for %d records", batches, seconds, kPerSlice * kSlices);
    QVERIFY2(batches <= std::ceil(seconds * 10.0) + 2,
             qPrintable(QStringLiteral("%1 batches in %2 s").arg(batches).arg(seconds)));
    // Under a sanitizer (5-15x slower) the ingest cannot keep up with 10,000 records a second, so
    // the catch-up legitimately arrives in fewer batches; the upper bound above still holds.
    if (!qEnvironmentVariableIsSet("FATHOM_SANITIZED"))
      QVERIFY2(batches >= 5, "the ingest streams while the writer writes, not once at the end");
    QCOMPARE(pointsIn(metrics), kPerSlice * kSlices * 11);
  }

  void catchUpIsOneBatchAndAResumedRunFinishesOnce() {
    QTemporaryDir tmp;
    std::string all = helloLine(0, 1, 1);
    int64_t seq = 2;
    for (int step = 1; step <= 1000; ++step) all += metricLine(step, 0, seq++);
    all += exitLine("stopped", 0, 0, seq++);
    // Resumed in the same directory: a new hello, then more steps, then the real end.
    all += helloLine(0, 1, seq++);
    all += line(proto::make_record(proto::EventData{"resumed", {{"step", 1000}, {"path", "/x/step-1000"}}}), 0, seq++);
    for (int step = 1001; step <= 1500; ++step) all += metricLine(step, 0, seq++);
    all += exitLine("completed", 0, 0, seq++);
    appendBytes(tmp.filePath("events.jsonl"), all);

    RunSession s(QStringLiteral("r"), tmp.path());
    QSignalSpy metrics(&s, &RunSession::metricsAppended);
    QSignalSpy hello(&s, &RunSession::helloReceived);
    QSignalSpy finished(&s, &RunSession::finished);
    s.start();
    // Synchronous: the whole history is there when start() returns, as one batch.
    QCOMPARE(metrics.size(), 1);
    QCOMPARE(metrics.at(0).at(1).value<QVector<MetricPoint>>().size(), 1500 * 11);
    QCOMPARE(hello.size(), 2);
    QCOMPARE(finished.size(), 1);
    QCOMPARE(finished.at(0).at(1).toString(), QStringLiteral("completed"));
    QCOMPARE(s.series(QStringLiteral("loss")).size(), 1500);
    QCOMPARE(s.recordCount(), 1 + 1000 + 1 + 1 + 1 + 500 + 1);
    QTest::qWait(300);
    QCOMPARE(metrics.size(), 1);  // nothing new, nothing emitted
  }

  void catchUpEndsWhileAFastWriterKeepsAppending() {
    // Regression: catch-up read "until nothing is new", which never came while an engine appended
    // a line between any two reads (re-attach to a fast run hung the workbench).
    QTemporaryDir tmp;
    const QString events = tmp.filePath("events.jsonl");
    std::string all = helloLine(0, 1, 1);
    for (int step = 1; step <= 20000; ++step) all += metricLine(step, 0, step + 1);
    appendBytes(events, all);
    std::atomic<bool> stop{false};
    std::thread writer([&] {
      for (int64_t step = 20001; !stop; ++step) appendBytes(events, metricLine(step, 0, step + 1));
    });
    RunSession s(QStringLiteral("r"), tmp.path());
    QElapsedTimer t;
    t.start();
    s.start();
    const qint64 ms = t.elapsed();
    stop = true;
    writer.join();
    QVERIFY2(ms < 10000, qPrintable(QStringLiteral("start() took %1 ms").arg(ms)));
    QVERIFY(s.series(QStringLiteral("loss")).size() >= 20000);
  }

  void multiRankFinishesWhenEveryRankHasExited() {
    QTemporaryDir tmp;
    const QString events = tmp.filePath("events.jsonl");
    appendBytes(events, helloLine(0, 2, 1) + helloLine(1, 2, 1) + metricLine(1, 0, 2) + metricLine(1, 1, 2) +
                            exitLine("completed", 0, 0, 3));
    RunSession s(QStringLiteral("r"), tmp.path());
    QSignalSpy finished(&s, &RunSession::finished);
    s.start();
    QCOMPARE(s.worldSize(), 2);
    QCOMPARE(s.ranks(), (QList<int>{0, 1}));
    QCOMPARE(s.series(QStringLiteral("loss"), 1).size(), 1);
    QCOMPARE(s.status(), QStringLiteral("running"));
    QCOMPARE(finished.size(), 0);
    appendBytes(events, line(proto::make_record(proto::ErrorData{"cuda_oom", "out of memory on rank 1", "lower the batch"}), 1, 3) +
                            exitLine("failed", 1, 1, 4));
    QTRY_COMPARE_WITH_TIMEOUT(finished.size(), 1, 5000);
    QCOMPARE(finished.at(0).at(1).toString(), QStringLiteral("failed"));  // the worst rank decides
    QCOMPARE(finished.at(0).at(2).toInt(), 1);
    QVERIFY(s.lastErrorMessage().contains(QStringLiteral("out of memory on rank 1")));
    QVERIFY(s.lastErrorMessage().contains(QStringLiteral("lower the batch")));
  }

  void clusterRanksMergedOutOfOrderStillFinish() {
    // Regression (CI flake of test_cluster_ssh_engine): a cluster run's local events.jsonl merges
    // the hosts' streams as they arrive, so rank 1 may say hello, train and exit before rank 0's
    // hello is mirrored. Rank 0's hello used to clear every exit seen so far, rank 1's included:
    // the run never counted as finished and was called "ended without reporting how".
    QTemporaryDir tmp;
    const QString events = tmp.filePath("events.jsonl");
    appendBytes(events, helloLine(1, 2, 1) + metricLine(1, 1, 2) + exitLine("completed", 0, 1, 3));
    appendBytes(events, helloLine(0, 2, 1) + metricLine(1, 0, 2) + exitLine("completed", 0, 0, 3));
    RunSession s(QStringLiteral("r"), tmp.path());
    QSignalSpy finished(&s, &RunSession::finished);
    s.start();
    QVERIFY(s.hasExitRecord());
    QCOMPARE(s.status(), QStringLiteral("completed"));
    QTRY_COMPARE_WITH_TIMEOUT(finished.size(), 1, 5000);

    // Resumed in the same directory: the first hello of the new attempt (rank 1's, again first)
    // makes the old exits history; the run ends again only when both ranks of the new attempt have.
    appendBytes(events, helloLine(1, 2, 4) + exitLine("failed", 3, 1, 5));
    QTRY_COMPARE_WITH_TIMEOUT(s.status(), QStringLiteral("running"), 5000);
    QVERIFY(!s.hasExitRecord());
    appendBytes(events, helloLine(0, 2, 4) + metricLine(2, 0, 5));
    QTest::qWait(200);
    QVERIFY(!s.hasExitRecord());  // rank 1's new exit alone is not the end
    appendBytes(events, exitLine("completed", 0, 0, 6));
    QTRY_COMPARE_WITH_TIMEOUT(finished.size(), 2, 5000);
    QCOMPARE(s.status(), QStringLiteral("failed"));  // the worst rank of the new attempt decides
    QCOMPARE(s.exitCode(), 3);
  }

  void aReplacedFileStartsOver() {
    QTemporaryDir tmp;
    const QString events = tmp.filePath("events.jsonl");
    appendBytes(events, helloLine(0, 1, 1) + metricLine(1, 0, 2) + metricLine(2, 0, 3));
    RunSession s(QStringLiteral("r"), tmp.path());
    QSignalSpy reset(&s, &RunSession::sessionReset);
    s.start();
    QCOMPARE(s.series(QStringLiteral("loss")).size(), 2);
    QFile::remove(events);
    appendBytes(events, helloLine(0, 1, 1) + metricLine(7, 0, 2));
    QTRY_COMPARE_WITH_TIMEOUT(reset.size(), 1, 5000);
    QTRY_COMPARE_WITH_TIMEOUT(s.series(QStringLiteral("loss")).size(), 1, 5000);
    QCOMPARE(s.series(QStringLiteral("loss"))[0].step, 7);
  }

  void controlLinesGoThroughTheFifo() {
    QTemporaryDir tmp;
    RunSession s(QStringLiteral("r"), tmp.path());
    // Started with a hello whose pid is a live process that is not this run's engine: the stop
    // fallback must not signal it.
    const pid_t stranger = fork();
    if (stranger == 0) {
      ::pause();
      _exit(0);
    }
    proto::HelloData h;
    h.pid = stranger;
    appendBytes(tmp.filePath("events.jsonl"), line(proto::make_record(h), 0, 1));
    s.start();

    QString err;
    QVERIFY(!s.requestCheckpoint(&err));
    QVERIFY2(err.contains(QStringLiteral("does not exist")), qPrintable(err));
    QVERIFY(!s.requestStop(&err));
    QVERIFY2(err.contains(QStringLiteral("no live engine process")), qPrintable(err));
    QVERIFY2(::kill(stranger, 0) == 0, "the stranger was not signalled");

    const QByteArray fifo = QFile::encodeName(tmp.filePath("control.fifo"));
    QCOMPARE(::mkfifo(fifo.constData(), 0600), 0);
    QVERIFY(!s.requestCheckpoint(&err));
    QVERIFY2(err.contains(QStringLiteral("not reading")), qPrintable(err));  // ENXIO: no reader

    const int reader = ::open(fifo.constData(), O_RDONLY | O_NONBLOCK);  // plays the engine
    QVERIFY(reader >= 0);
    QVERIFY2(s.requestStop(&err), qPrintable(err));
    QVERIFY2(s.requestCheckpoint(&err), qPrintable(err));
    QVERIFY2(s.requestSample(QStringLiteral("Four score and \"seven\"\nyears"), &err), qPrintable(err));
    char buf[4096];
    const ssize_t n = ::read(reader, buf, sizeof buf);
    QVERIFY(n > 0);
    const QList<QByteArray> lines = QByteArray(buf, static_cast<int>(n)).split('\n');
    QCOMPARE(lines.size(), 4);  // three lines and the empty rest
    QCOMPARE(proto::decode_control(lines[0].toStdString())->op, std::string("stop"));
    QCOMPARE(proto::decode_control(lines[1].toStdString())->op, std::string("checkpoint"));
    const auto sample = proto::decode_control(lines[2].toStdString());
    QCOMPARE(sample->op, std::string("sample"));
    QCOMPARE(QString::fromStdString(sample->prompt), QStringLiteral("Four score and \"seven\"\nyears"));
    ::close(reader);

    s.setReadOnly(true);
    QVERIFY(!s.requestStop(&err));
    QVERIFY2(err.contains(QStringLiteral("not running under this workbench")), qPrintable(err));
    ::kill(stranger, SIGKILL);
    waitpid(stranger, nullptr, 0);
  }
};

QTEST_GUILESS_MAIN(RunSessionTest)
#include "test_run_session.moc"
