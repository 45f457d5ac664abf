// The headless demo: Workspace + JobQueue + a terminal progress line.
#include "cluster/jobs/HeadlessDemo.h"

#include <QCoreApplication>
#include <QJsonObject>
#include <QTimer>

#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <cstdio>

#include "cluster/launch/LocalLauncher.h"
#include "engine/config/config.h"

namespace fathom::cluster {

namespace {

int g_signalPipe[2] = {-1, -1};

void onSignal(int) {
  const char c = 1;
  const ssize_t n = write(g_signalPipe[1], &c, 1);
  (void)n;
}

QString humanCount(double v) {
  if (v >= 1e9) return QString::number(v / 1e9, 'f', 1) + QLatin1Char('G');
  if (v >= 1e6) return QString::number(v / 1e6, 'f', 1) + QLatin1Char('M');
  if (v >= 1e3) return QString::number(v / 1e3, 'f', 1) + QLatin1Char('K');
  return QString::number(v, 'f', 0);
}

QString humanDuration(double s) {
  if (!(s >= 0) || s > 1e7) return QStringLiteral("?");
  const qint64 t = static_cast<qint64>(s + 0.5);
  if (t >= 3600) return QStringLiteral("%1h%2m").arg(t / 3600).arg((t % 3600) / 60, 2, 10, QLatin1Char('0'));
  if (t >= 60) return QStringLiteral("%1m%2s").arg(t / 60).arg(t % 60, 2, 10, QLatin1Char('0'));
  return QStringLiteral("%1s").arg(t);
}

void err(const QString& text) {
  const QByteArray b = text.toLocal8Bit();
  std::fwrite(b.constData(), 1, static_cast<size_t>(b.size()), stderr);
  std::fflush(stderr);
}

}  // namespace

HeadlessDemo::HeadlessDemo(const Options& options, QObject* parent) : QObject(parent), m_options(options) {
  m_tty = isatty(2);
}

HeadlessDemo::~HeadlessDemo() = default;

bool HeadlessDemo::start(QString* error) {
  auto fail = [&](const QString& why) {
    if (error) *error = why;
    m_exitCode = 2;
    return false;
  };
  m_ws = std::make_unique<Workspace>();
  QString e;
  const QString dir = m_options.workspaceDir.isEmpty() ? Workspace::defaultDir() : m_options.workspaceDir;
  if (!m_ws->open(dir, &e)) return fail(e);
  QString config = m_options.config;
  if (config.isEmpty()) {
    config = m_ws->ensureDefaultProject();
    if (config.isEmpty()) return fail(m_ws->lastError());
  }

  LaunchSpec spec;
  spec.configPath = config;
  spec.name = QStringLiteral("demo");
  spec.engineBinary = m_options.engineBinary;
  spec.overrides = m_options.overrides;
  if (m_options.steps > 0) spec.overrides << QStringLiteral("train.max_steps=%1").arg(m_options.steps);
  QString device = m_options.device;
  if (device.isEmpty()) {
    device = QStringLiteral("cpu");
    QString probeError;
    for (const QJsonValue& d : LocalLauncher::probeDevices(m_options.engineBinary, &probeError)) {
      if (d.toObject().value(QStringLiteral("kind")).toString() == QLatin1String("cuda")) {
        device = QStringLiteral("cuda:%1").arg(d.toObject().value(QStringLiteral("index")).toInt());
        break;
      }
    }
  }
  spec.devices = {device};

  // What the run will do, for the progress line's total and ETA (same loader as the engine).
  fathom::config::LoadOptions lo;
  for (const QString& o : spec.overrides) lo.overrides.push_back(o.toStdString());
  lo.check_paths = false;
  const auto loaded = fathom::config::load_config_file(config.toStdString(), lo);
  if (!loaded.ok()) {
    QStringList lines;
    for (const auto& ce : loaded.errors) lines << QString::fromStdString(ce.message());
    return fail(QStringLiteral("%1 does not load:\n%2").arg(config, lines.join(QLatin1Char('\n'))));
  }
  const auto& c = loaded.config;
  m_maxSteps = c.train.max_steps;
  m_tokensPerStep = c.train.micro_batch_size * c.data.seq_len * c.train.gradient_accumulation_steps;

  m_queue = std::make_unique<JobQueue>(m_ws.get());
  if (!m_queue->isManager()) return fail(m_queue->lastError());
  connect(m_queue.get(), &JobQueue::runFinished, this, &HeadlessDemo::onFinished);
  m_runId = m_queue->enqueue(spec);
  if (m_runId.isEmpty()) return fail(m_queue->lastError());
  const auto run = m_ws->runs().get(m_runId);
  if (run && run->status == run_status::failed) return fail(run->error);
  err(QStringLiteral("fathom: demo run %1 on %2 (%3 steps), run directory %4\n")
          .arg(m_runId, device)
          .arg(m_maxSteps)
          .arg(run ? run->runDir : QString()));
  if (run && run->status == run_status::queued)
    err(QStringLiteral("fathom: queued: waiting for %1 to be free\n").arg(device));
  if (RunSession* s = m_queue->session(m_runId)) {
    connect(s, &RunSession::metricsAppended, this, &HeadlessDemo::onMetrics);
    connect(s, &RunSession::samplesAppended, this, &HeadlessDemo::onSamples);
    connect(s, &RunSession::logsAppended, this, &HeadlessDemo::onLogs);
  }
  m_elapsed.start();
  return true;
}

void HeadlessDemo::interrupt() {
  if (m_runId.isEmpty() || !m_queue) return;
  clearProgress();
  if (++m_interrupts == 1) {
    err(QStringLiteral("fathom: stopping %1: saving a checkpoint, then exiting (Ctrl-C again to kill it)\n").arg(m_runId));
    if (!m_queue->stop(m_runId)) err(QStringLiteral("fathom: %1\n").arg(m_queue->lastError()));
  } else {
    err(QStringLiteral("fathom: killing %1\n").arg(m_runId));
    if (!m_queue->kill(m_runId)) err(QStringLiteral("fathom: %1\n").arg(m_queue->lastError()));
  }
}

void HeadlessDemo::onMetrics(const QString&, const QVector<MetricPoint>& points) {
  for (const MetricPoint& p : points) {
    if (p.rank != 0) continue;
    if (p.key == QLatin1String("loss")) {
      m_step = p.step;
      m_loss = p.value;
    } else if (p.key == QLatin1String("tokens_per_s")) {
      m_tokPerS = p.value;
    }
  }
  printProgress(false);
}

void HeadlessDemo::onSamples(const QString&, const QVector<SampleItem>& samples) {
  clearProgress();
  // The generated text in bold on a terminal, so it stands apart from the prompt.
  const QString on = m_tty ? QStringLiteral("\x1b[1m") : QString(), off = m_tty ? QStringLiteral("\x1b[0m") : QString();
  for (const SampleItem& s : samples)
    err(QStringLiteral("sample @%1 (T=%2): %3%4%5%6\n").arg(s.step).arg(s.temperature).arg(s.prompt, on, s.text, off));
  printProgress(true);
}

void HeadlessDemo::onLogs(const QString&, const QStringList& lines) {
  // The engine's protocol log records (few: "preparing data ...") and any warning or error matter
  // in a terminal; the rest stays in stderr.log.
  for (const QString& l : lines) {
    if (l.startsWith(QLatin1String("[rank 0] ")) || l.contains(QLatin1String("error"), Qt::CaseInsensitive) ||
        l.contains(QLatin1String("warn"), Qt::CaseInsensitive)) {
      clearProgress();
      err(l + QLatin1Char('\n'));
    }
  }
}

void HeadlessDemo::printProgress(bool force) {
  if (!force && m_sinceProgress.isValid() && m_sinceProgress.elapsed() < (m_tty ? 200 : 5000)) return;
  if (m_step <= 0) return;
  if (!m_tty && m_step == m_printedStep) return;  // a log file gets one line per new step reported
  m_printedStep = m_step;
  m_sinceProgress.restart();
  const double remaining = static_cast<double>(std::max<qint64>(0, m_maxSteps - m_step) * m_tokensPerStep);
  const QString eta = m_tokPerS > 0 ? humanDuration(remaining / m_tokPerS) : QStringLiteral("?");
  const QString line = QStringLiteral("[demo] step %1/%2  loss %3  %4 tok/s  ETA %5")
                           .arg(m_step)
                           .arg(m_maxSteps)
                           .arg(m_loss, 0, 'f', 4)
                           .arg(humanCount(m_tokPerS), eta);
  if (m_tty) {
    err(QStringLiteral("\r\x1b[K") + line);
    m_progressShown = true;
  } else {
    err(line + QLatin1Char('\n'));
  }
}

void HeadlessDemo::clearProgress() {
  if (m_tty && m_progressShown) err(QStringLiteral("\r\x1b[K"));
  m_progressShown = false;
}

void HeadlessDemo::onFinished(const QString& id, const QString& status) {
  if (id != m_runId) return;
  printProgress(true);
  clearProgress();
  const auto run = m_ws->runs().get(id);
  const int nCheckpoints = m_ws->checkpoints().listForRun(id).size();
  err(QStringLiteral("fathom: run %1 %2 at step %3 after %4; %5 checkpoint(s) in %6\n")
          .arg(id, status)
          .arg(run ? run->lastStep : m_step)
          .arg(humanDuration(m_elapsed.elapsed() / 1000.0))
          .arg(nCheckpoints)
          .arg(run ? run->runDir : QString()));
  if (run && !run->error.isEmpty()) err(QStringLiteral("fathom: %1\n").arg(run->error));
  m_exitCode = (status == run_status::completed || status == run_status::stopped) ? 0 : 1;
  Q_EMIT done(m_exitCode);
}

int HeadlessDemo::run(const QStringList& arguments) {
  Options o;
  for (int i = 1; i < arguments.size(); ++i) {
    const QString& a = arguments[i];
    auto value = [&](const char* name) -> QString {
      if (i + 1 >= arguments.size()) {
        err(QStringLiteral("fathom: %1 needs a value\n").arg(QLatin1String(name)));
        return {};
      }
      return arguments[++i];
    };
    if (a == QLatin1String("--steps")) {
      bool ok = false;
      o.steps = value("--steps").toLongLong(&ok);
      if (!ok || o.steps <= 0) {
        err(QStringLiteral("fathom: --steps needs a positive number of steps, e.g. --steps 200\n"));
        return 2;
      }
    } else if (a == QLatin1String("--workspace")) {
      o.workspaceDir = value("--workspace");
    } else if (a == QLatin1String("--config")) {
      o.config = value("--config");
    } else if (a == QLatin1String("--engine")) {
      o.engineBinary = value("--engine");
    } else if (a == QLatin1String("--device")) {
      o.device = value("--device");
    } else if (a == QLatin1String("--set")) {
      o.overrides << value("--set");
    }
    // Anything else (--headless-demo itself, Qt's options) belongs to the caller.
  }

  HeadlessDemo demo(o);
  QString error;
  if (!demo.start(&error)) {
    err(QStringLiteral("fathom: the demo could not start: %1\n").arg(error));
    return demo.exitCode();
  }
  // Ctrl-C / SIGTERM -> a byte on a pipe -> interrupt() on the event loop (a signal handler must
  // not touch Qt or the queue).
  if (g_signalPipe[0] < 0 && pipe2(g_signalPipe, O_CLOEXEC | O_NONBLOCK) != 0) g_signalPipe[0] = g_signalPipe[1] = -1;
  std::unique_ptr<QSocketNotifier> notifier;
  struct sigaction oldInt {}, oldTerm {};
  if (g_signalPipe[0] >= 0) {
    notifier = std::make_unique<QSocketNotifier>(g_signalPipe[0], QSocketNotifier::Read);
    QObject::connect(notifier.get(), &QSocketNotifier::activated, &demo, [&demo] {
      char buf[16];
      while (read(g_signalPipe[0], buf, sizeof buf) > 0) demo.interrupt();
    });
    struct sigaction sa {};
    sa.sa_handler = onSignal;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESTART;
    sigaction(SIGINT, &sa, &oldInt);
    sigaction(SIGTERM, &sa, &oldTerm);
  }
  int code = 0;
  QObject::connect(&demo, &HeadlessDemo::done, QCoreApplication::instance(), [&code](int c) {
    code = c;
    QCoreApplication::exit(c);
  });
  QCoreApplication::exec();
  if (g_signalPipe[0] >= 0) {
    sigaction(SIGINT, &oldInt, nullptr);
    sigaction(SIGTERM, &oldTerm, nullptr);
  }
  return code;
}

}  // namespace fathom::cluster
