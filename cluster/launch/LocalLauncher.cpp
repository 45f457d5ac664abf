// Detached local launch: fork twice, setsid, one process group for the ranks, a supervisor that
// records how each rank ended. Everything between fork() and execve() is async-signal-safe (the
// workbench is multi-threaded): argv, envp and paths are prepared as C strings beforehand.
#include "cluster/launch/LocalLauncher.h"

#include <QCoreApplication>
#include <QDir>
#include <QFile>
#include <QFileInfo>
#include <QHostAddress>
#include <QJsonDocument>
#include <QProcess>
#include <QProcessEnvironment>
#include <QStandardPaths>
#include <QTcpServer>

#include <fcntl.h>
#include <poll.h>
#include <sys/prctl.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>

#include <cerrno>
#include <cstring>
#include <string>
#include <vector>

#include "cluster/launch/ProcessInfo.h"
#include "cluster/workspace/RunFiles.h"
#include "engine/config/config.h"

namespace fathom::cluster {

namespace {

// Environment names a launch sets itself; inherited values (a workbench started under torchrun
// or Slurm) would otherwise leak into single-process runs.
const QStringList kRendezvousVars = {QStringLiteral("MASTER_ADDR"), QStringLiteral("MASTER_PORT"),
                                     QStringLiteral("RANK"),        QStringLiteral("WORLD_SIZE"),
                                     QStringLiteral("LOCAL_RANK"),  QStringLiteral("LOCAL_WORLD_SIZE")};

// Owns C strings and the null-terminated pointer array execve() wants.
struct CStrings {
  std::vector<std::string> storage;
  std::vector<char*> ptrs;
  void add(const QString& s) { storage.push_back(s.toStdString()); }
  char** finish() {
    ptrs.clear();
    for (auto& s : storage) ptrs.push_back(s.data());
    ptrs.push_back(nullptr);
    return ptrs.data();
  }
};

struct RankPlan {
  int rank = 0;
  CStrings argv, envp;
  std::string stderrPath;
};

// What the supervisor reports back per rank through the pipe.
struct RankReport {
  int32_t rank;
  int32_t pid;
  int32_t execErrno;  // 0 = exec succeeded
};

// ---- async-signal-safe helpers (used between fork and exec) ---------------------------------

void closeFrom(int lowest, int keep) {
#ifdef SYS_close_range
  if (keep >= lowest) {
    if (keep > lowest) syscall(SYS_close_range, static_cast<unsigned>(lowest), static_cast<unsigned>(keep - 1), 0u);
    if (syscall(SYS_close_range, static_cast<unsigned>(keep + 1), ~0u, 0u) == 0) return;
  } else if (syscall(SYS_close_range, static_cast<unsigned>(lowest), ~0u, 0u) == 0) {
    return;
  }
#endif
  const long max = sysconf(_SC_OPEN_MAX);
  for (int fd = lowest; fd < (max > 0 ? max : 65536); ++fd)
    if (fd != keep) close(fd);
}

void writeAll(int fd, const char* p, size_t n) {
  while (n > 0) {
    const ssize_t w = write(fd, p, n);
    if (w < 0) {
      if (errno == EINTR) continue;
      return;
    }
    p += w;
    n -= static_cast<size_t>(w);
  }
}

// Appends the decimal digits of v to buf at *len.
void appendInt(char* buf, size_t* len, long long v) {
  char tmp[24];
  int n = 0;
  const bool neg = v < 0;
  unsigned long long u = neg ? static_cast<unsigned long long>(-(v + 1)) + 1 : static_cast<unsigned long long>(v);
  do {
    tmp[n++] = static_cast<char>('0' + u % 10);
    u /= 10;
  } while (u > 0);
  if (neg) buf[(*len)++] = '-';
  while (n > 0) buf[(*len)++] = tmp[--n];
}

void appendStr(char* buf, size_t* len, const char* s) {
  while (*s) buf[(*len)++] = *s++;
}

double monotonicSeconds() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) * 1e-9;
}

void resetSignals() {
  struct sigaction sa {};
  sa.sa_handler = SIG_DFL;
  sigemptyset(&sa.sa_mask);
  for (int s : {SIGTERM, SIGINT, SIGHUP, SIGPIPE, SIGQUIT, SIGCHLD, SIGUSR1, SIGUSR2}) sigaction(s, &sa, nullptr);
  sigset_t none;
  sigemptyset(&none);
  sigprocmask(SIG_SETMASK, &none, nullptr);
}

[[noreturn]] void execRank(RankPlan& plan, const char* engine, const char* runDir, const char* devNull, int errFd,
                           pid_t groupLeader) {
  // Rank 0 leads the group; the others join it, so one kill(-pgid) reaches every rank.
  setpgid(0, groupLeader);
  resetSignals();
  const int in = open(devNull, O_RDONLY);
  const int out = open(devNull, O_WRONLY);
  const int err = open(plan.stderrPath.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
  int e = 0;
  if (in < 0 || out < 0 || err < 0) e = errno;
  if (!e && (dup2(in, 0) < 0 || dup2(out, 1) < 0 || dup2(err, 2) < 0)) e = errno;
  if (!e && chdir(runDir) != 0) e = errno;
  if (!e) {
    execve(engine, plan.argv.ptrs.data(), plan.envp.ptrs.data());
    e = errno;
  }
  const int32_t code = e;
  writeAll(errFd, reinterpret_cast<const char*>(&code), sizeof code);
  _exit(127);
}

// The supervisor: starts the ranks, reports their pids, then waits for all of them and writes
// exit_status. If one rank fails while others run, the rest get SIGTERM (then SIGKILL after 30 s)
// so a distributed job does not hang in a collective (torchrun does the same).
[[noreturn]] void supervise(std::vector<RankPlan>& plans, const char* engine, const char* runDir, const char* devNull,
                            const char* statusTmp, const char* statusPath, int reportFd) {
  setsid();
  prctl(PR_SET_NAME, "fathom-superv", 0, 0, 0);  // what ps shows instead of the workbench's name
  struct sigaction ign {};
  ign.sa_handler = SIG_IGN;
  sigemptyset(&ign.sa_mask);
  for (int s : {SIGTERM, SIGINT, SIGHUP, SIGPIPE, SIGQUIT}) sigaction(s, &ign, nullptr);
  struct sigaction dfl {};
  dfl.sa_handler = SIG_DFL;
  sigemptyset(&dfl.sa_mask);
  sigaction(SIGCHLD, &dfl, nullptr);
  sigset_t none;
  sigemptyset(&none);
  sigprocmask(SIG_SETMASK, &none, nullptr);
  if (reportFd < 3) reportFd = fcntl(reportFd, F_DUPFD_CLOEXEC, 3);  // 0..2 are about to become /dev/null
  closeFrom(3, reportFd);  // the workbench's sockets, X connection, database: not ours to hold
  const int nul = open(devNull, O_RDWR);
  if (nul >= 0) {
    dup2(nul, 0);
    dup2(nul, 1);
    dup2(nul, 2);
    if (nul > 2 && nul != reportFd) close(nul);
  }

  {
    const RankReport self{-2, static_cast<int32_t>(getpid()), 0};  // the supervisor itself
    writeAll(reportFd, reinterpret_cast<const char*>(&self), sizeof self);
  }
  const size_t n = plans.size();
  pid_t pids[256];
  int status[256];
  bool done[256];
  size_t started = 0;
  pid_t group = 0;
  for (size_t i = 0; i < n && i < 256; ++i) {
    int ep[2];
    if (pipe2(ep, O_CLOEXEC) != 0) {
      const RankReport r{plans[i].rank, 0, errno};
      writeAll(reportFd, reinterpret_cast<const char*>(&r), sizeof r);
      break;
    }
    const pid_t child = fork();
    if (child == 0) {
      close(ep[0]);
      close(reportFd);
      execRank(plans[i], engine, runDir, devNull, ep[1], group);
    }
    close(ep[1]);
    int32_t execErr = 0;
    if (child < 0) {
      execErr = errno;
    } else {
      if (group == 0) group = child;
      setpgid(child, group);  // also here: whichever of parent and child runs first wins the race
      ssize_t got;
      do {
        got = read(ep[0], &execErr, sizeof execErr);
      } while (got < 0 && errno == EINTR);
      if (got != static_cast<ssize_t>(sizeof execErr)) execErr = 0;  // EOF: exec succeeded
    }
    close(ep[0]);
    const RankReport r{plans[i].rank, child > 0 ? child : 0, execErr};
    writeAll(reportFd, reinterpret_cast<const char*>(&r), sizeof r);
    if (child > 0) {
      pids[started] = child;
      status[started] = 0;
      done[started] = false;
      ++started;
    }
    if (execErr != 0) {
      if (group > 0) kill(-group, SIGKILL);
      break;
    }
  }
  close(reportFd);  // the workbench stops waiting here

  size_t remaining = started;
  bool terminating = false;
  double killAt = 0;
  while (remaining > 0) {
    int st = 0;
    const pid_t p = waitpid(-1, &st, terminating ? WNOHANG : 0);
    if (p < 0 && errno == EINTR) continue;
    if (p < 0) break;  // ECHILD: nothing left
    if (p == 0) {
      if (monotonicSeconds() >= killAt) kill(-group, SIGKILL);
      const timespec tick{0, 100 * 1000 * 1000};
      nanosleep(&tick, nullptr);
      continue;
    }
    for (size_t i = 0; i < started; ++i) {
      if (pids[i] != p || done[i]) continue;
      done[i] = true;
      status[i] = st;
      --remaining;
      const bool bad = !(WIFEXITED(st) && WEXITSTATUS(st) == 0);
      if (bad && remaining > 0 && !terminating) {
        terminating = true;
        killAt = monotonicSeconds() + 30.0;
        kill(-group, SIGTERM);
      }
    }
  }

  char buf[256 * 64];
  size_t len = 0;
  for (size_t i = 0; i < started; ++i) {
    appendStr(buf, &len, "rank=");
    appendInt(buf, &len, plans[i].rank);
    appendStr(buf, &len, " pid=");
    appendInt(buf, &len, pids[i]);
    if (WIFSIGNALED(status[i])) {
      appendStr(buf, &len, " signal=");
      appendInt(buf, &len, WTERMSIG(status[i]));
    } else {
      appendStr(buf, &len, " exit=");
      appendInt(buf, &len, WIFEXITED(status[i]) ? WEXITSTATUS(status[i]) : 0);
    }
    buf[len++] = '\n';
  }
  const int fd = open(statusTmp, O_WRONLY | O_CREAT | O_TRUNC, 0644);
  if (fd >= 0) {
    writeAll(fd, buf, len);
    fsync(fd);
    close(fd);
    rename(statusTmp, statusPath);
  }
  _exit(0);
}

bool isCpu(const QString& d) { return d.compare(QLatin1String("cpu"), Qt::CaseInsensitive) == 0; }

}  // namespace

// ---- public -----------------------------------------------------------------------------------

QString LocalLauncher::shellQuote(const QString& arg) {
  if (arg.isEmpty()) return QStringLiteral("''");
  static const QString safe = QStringLiteral(
      "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789@%_-+=:,./");
  bool plain = true;
  for (const QChar c : arg)
    if (!safe.contains(c)) plain = false;
  if (plain) return arg;
  QString q = arg;
  q.replace(QLatin1Char('\''), QLatin1String("'\\''"));
  return QLatin1Char('\'') + q + QLatin1Char('\'');
}

QString LocalLauncher::findEngineBinary(const QString& preferred, QString* error) {
  QStringList tried;
  auto usable = [&](const QString& path) {
    if (path.isEmpty()) return false;
    tried.append(path);
    const QFileInfo fi(path);
    return fi.isFile() && fi.isExecutable();
  };
  const QString hint = QStringLiteral("Build it (cmake --build <build> --target fathom-engine), set FATHOM_ENGINE_BIN "
                                      "to its path, or put it on PATH.");
  // A path the user named explicitly must be used or refused, never silently replaced by another.
  if (!preferred.isEmpty()) {
    if (usable(preferred)) return QFileInfo(preferred).absoluteFilePath();
    if (error) *error = QStringLiteral("fathom-engine was not found: %1 (the engine chosen for this launch) does not exist "
                                       "or is not executable. %2").arg(preferred, hint);
    return {};
  }
  const QString env = qEnvironmentVariable("FATHOM_ENGINE_BIN");
  if (!env.isEmpty()) {
    if (usable(env)) return QFileInfo(env).absoluteFilePath();
    if (error) *error = QStringLiteral("fathom-engine was not found: FATHOM_ENGINE_BIN=%1 does not exist or is not "
                                       "executable. %2").arg(env, hint);
    return {};
  }
  if (QCoreApplication::instance()) {
    const QString next = QDir(QCoreApplication::applicationDirPath()).filePath(QStringLiteral("fathom-engine"));
    if (usable(next)) return next;
  }
  const QString onPath = QStandardPaths::findExecutable(QStringLiteral("fathom-engine"));
  if (!onPath.isEmpty()) return onPath;
  tried.append(QStringLiteral("fathom-engine on PATH"));
  if (error) {
    *error = QStringLiteral("fathom-engine was not found (looked at: %1). %2").arg(tried.join(QStringLiteral(", ")), hint);
  }
  return {};
}

QString LocalLauncher::engineCommand(const LaunchSpec& spec) {
  if (!spec.command.isEmpty()) return spec.command;
  config::LoadOptions o;
  o.check_paths = false;
  const config::LoadResult r = config::load_config_file(spec.configPath.toStdString(), o);
  return r.config.lora.enabled ? QStringLiteral("finetune") : QStringLiteral("train");
}

QStringList LocalLauncher::engineArguments(const LaunchSpec& spec, int rank) {
  const QString runDir = spec.runDir.isEmpty() ? QStringLiteral("<run-dir>") : spec.runDir;
  QStringList a{engineCommand(spec), spec.configPath};
  for (const QString& o : spec.overrides) a << QStringLiteral("--set") << o;
  if (!spec.devices.isEmpty()) {
    QStringList gpuIds;
    bool cpu = false;
    for (const QString& d : spec.devices) {
      if (isCpu(d)) cpu = true;
      else if (d.startsWith(QLatin1String("cuda:"))) gpuIds << d.mid(5);
      else if (d == QLatin1String("cuda")) gpuIds << QStringLiteral("0");
    }
    if (!gpuIds.isEmpty() && !cpu) {
      a << QStringLiteral("--set") << QStringLiteral("run.device=cuda") << QStringLiteral("--set")
        << QStringLiteral("distributed.gpu_ids=[%1]").arg(gpuIds.join(QLatin1Char(',')));
    } else if (cpu) {
      a << QStringLiteral("--set") << QStringLiteral("run.device=cpu");
    }
  }
  if (spec.nprocs > 1) {
    a << QStringLiteral("--set") << QStringLiteral("distributed.world_size=%1").arg(spec.nprocs)
      << QStringLiteral("--set") << QStringLiteral("distributed.rank=%1").arg(rank);
    // Data parallel over the devices chosen: NCCL between GPUs, Gloo between CPU processes.
    bool gpus = false, cpu = false;
    for (const QString& d : spec.devices) (isCpu(d) ? cpu : gpus) = true;
    if (gpus && !cpu) a << QStringLiteral("--set") << QStringLiteral("distributed.backend=nccl");
    else if (cpu) a << QStringLiteral("--set") << QStringLiteral("distributed.backend=gloo");
  }
  a << QStringLiteral("--run-dir") << runDir << QStringLiteral("--run-id")
    << (spec.runId.isEmpty() ? QFileInfo(runDir).fileName() : spec.runId) << QStringLiteral("--control-fifo")
    << QDir(runDir).filePath(run_files::controlFifoForRank(rank));
  if (!spec.resume.isEmpty()) a << QStringLiteral("--resume") << spec.resume;
  return a;
}

QStringList LocalLauncher::rankEnvironment(const LaunchSpec& spec, int rank, int masterPort) {
  QStringList env;
  for (const QString& e : spec.environment)
    if (e.indexOf(QLatin1Char('=')) > 0) env << e;
  if (spec.nprocs <= 1) return env;
  env << QStringLiteral("MASTER_ADDR=127.0.0.1");
  if (masterPort > 0) env << QStringLiteral("MASTER_PORT=%1").arg(masterPort);
  env << QStringLiteral("RANK=%1").arg(rank) << QStringLiteral("WORLD_SIZE=%1").arg(spec.nprocs)
      << QStringLiteral("LOCAL_RANK=%1").arg(rank) << QStringLiteral("LOCAL_WORLD_SIZE=%1").arg(spec.nprocs);
  // N CPU processes share the cores: each one's BLAS gets its part (unless the spec says otherwise).
  bool cpu = spec.devices.isEmpty();
  for (const QString& d : spec.devices) cpu = cpu || isCpu(d);
  bool userSet = false;
  for (const QString& e : spec.environment) userSet = userSet || e.startsWith(QLatin1String("OPENBLAS_NUM_THREADS="));
  if (cpu && !userSet) {
    const long cores = std::max(1L, sysconf(_SC_NPROCESSORS_ONLN));
    env << QStringLiteral("OPENBLAS_NUM_THREADS=%1").arg(std::max(1L, cores / spec.nprocs));
  }
  return env;
}

QStringList LocalLauncher::commandPreview(const LaunchSpec& spec) const {
  QString engine = findEngineBinary(spec.engineBinary);
  if (engine.isEmpty()) engine = QStringLiteral("fathom-engine");
  const int port = spec.nprocs > 1 ? freePort() : 0;
  const QString runDir = spec.runDir.isEmpty() ? QStringLiteral("<run-dir>") : spec.runDir;
  QStringList lines;
  for (int rank = 0; rank < std::max(1, spec.nprocs); ++rank) {
    QStringList parts{QStringLiteral("cd"), shellQuote(runDir), QStringLiteral("&&")};
    for (const QString& e : rankEnvironment(spec, rank, port)) {
      const int eq = e.indexOf(QLatin1Char('='));
      parts << e.left(eq + 1) + shellQuote(e.mid(eq + 1));
    }
    parts << shellQuote(engine);
    for (const QString& a : engineArguments(spec, rank)) parts << shellQuote(a);
    parts << QStringLiteral("</dev/null") << QStringLiteral(">/dev/null")
          << QStringLiteral("2>>") + shellQuote(QDir(runDir).filePath(run_files::stderrFileForRank(rank)));
    lines << parts.join(QLatin1Char(' '));
  }
  return lines;
}

LaunchResult LocalLauncher::start(const LaunchSpec& spec) {
  LaunchResult result;
  auto fail = [&](const QString& why) {
    result.ok = false;
    result.error = why;
    return result;
  };
  if (spec.runDir.isEmpty()) return fail(QStringLiteral("no run directory given; the job queue assigns <workspace>/runs/<run-id>"));
  if (spec.configPath.isEmpty()) return fail(QStringLiteral("no config file given"));
  if (!QFileInfo(spec.configPath).isFile())
    return fail(QStringLiteral("config file %1 does not exist; save the config first or pick another file").arg(spec.configPath));
  if (spec.nprocs < 1 || spec.nprocs > 256)
    return fail(QStringLiteral("nprocs %1 is out of range; use 1..256 processes on one computer").arg(spec.nprocs));
  QString err;
  const QString engine = findEngineBinary(spec.engineBinary, &err);
  if (engine.isEmpty()) return fail(err);
  if (!QDir().mkpath(spec.runDir))
    return fail(QStringLiteral("cannot create the run directory %1; check the permissions of the workspace").arg(spec.runDir));
  LaunchSpec s = spec;
  s.runDir = QFileInfo(spec.runDir).absoluteFilePath();
  s.configPath = QFileInfo(spec.configPath).absoluteFilePath();
  // A previous attempt's exit_status would read as this attempt's end.
  QFile::remove(QDir(s.runDir).filePath(run_files::exitStatusFile()));

  const int port = s.nprocs > 1 ? freePort() : 0;
  if (s.nprocs > 1 && port <= 0) return fail(QStringLiteral("no free TCP port on 127.0.0.1 for MASTER_PORT"));

  // Inherited environment minus rendezvous variables, plus this rank's.
  QProcessEnvironment base = QProcessEnvironment::systemEnvironment();
  for (const QString& v : kRendezvousVars) base.remove(v);
  // LibTorch's OpenMP workers otherwise spin between parallel regions and steal the cores that
  // OpenBLAS uses for CPU matmuls (~10% on the demo preset, 2 cores).
  if (!base.contains(QStringLiteral("OMP_WAIT_POLICY"))) base.insert(QStringLiteral("OMP_WAIT_POLICY"), QStringLiteral("PASSIVE"));
  std::vector<RankPlan> plans(static_cast<size_t>(s.nprocs));
  for (int rank = 0; rank < s.nprocs; ++rank) {
    RankPlan& p = plans[static_cast<size_t>(rank)];
    p.rank = rank;
    p.argv.add(engine);
    const QStringList args = engineArguments(s, rank);
    for (const QString& a : args) p.argv.add(a);
    p.argv.finish();
    QProcessEnvironment env = base;
    for (const QString& e : rankEnvironment(s, rank, port)) {
      const int eq = e.indexOf(QLatin1Char('='));
      env.insert(e.left(eq), e.mid(eq + 1));
    }
    for (const QString& kv : env.toStringList()) p.envp.add(kv);
    p.envp.finish();
    p.stderrPath = QDir(s.runDir).filePath(run_files::stderrFileForRank(rank)).toStdString();
  }
  const std::string engineC = engine.toStdString(), runDirC = s.runDir.toStdString();
  const std::string statusPath = QDir(s.runDir).filePath(run_files::exitStatusFile()).toStdString();
  const std::string statusTmp = statusPath + ".tmp";
  const char* devNull = "/dev/null";

  int rp[2];
  if (pipe2(rp, O_CLOEXEC) != 0) return fail(QStringLiteral("cannot create a pipe: %1").arg(QString::fromLocal8Bit(strerror(errno))));
  const pid_t first = fork();
  if (first < 0) {
    const int e = errno;
    close(rp[0]);
    close(rp[1]);
    return fail(QStringLiteral("fork failed: %1 (too many processes or not enough memory)").arg(QString::fromLocal8Bit(strerror(e))));
  }
  if (first == 0) {
    close(rp[0]);
    // The supervisor is a grandchild: when this child exits at once it is reparented to init
    // (or the nearest subreaper), so it never becomes a zombie of the workbench.
    const pid_t sup = fork();
    if (sup == 0) supervise(plans, engineC.c_str(), runDirC.c_str(), devNull, statusTmp.c_str(), statusPath.c_str(), rp[1]);
    if (sup < 0) {
      const RankReport r{-1, 0, errno};
      writeAll(rp[1], reinterpret_cast<const char*>(&r), sizeof r);
    }
    _exit(0);
  }
  close(rp[1]);
  int st = 0;
  while (waitpid(first, &st, 0) < 0 && errno == EINTR) {
  }

  // Read one report per rank; the supervisor closes its end after the last (or on failure).
  QByteArray got;
  for (;;) {
    pollfd pfd{rp[0], POLLIN, 0};
    const int pr = poll(&pfd, 1, 30000);
    if (pr < 0 && errno == EINTR) continue;
    if (pr <= 0) break;  // 30 s without a word: give up waiting, report what we have
    char buf[512];
    const ssize_t n = read(rp[0], buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    got.append(buf, static_cast<int>(n));
  }
  close(rp[0]);

  result.rankPids = QList<qint64>(s.nprocs, 0);
  QStringList problems;
  for (int off = 0; off + static_cast<int>(sizeof(RankReport)) <= got.size(); off += sizeof(RankReport)) {
    RankReport r{};
    std::memcpy(&r, got.constData() + off, sizeof r);
    if (r.rank == -2) {
      result.supervisorPid = r.pid;
      continue;
    }
    if (r.rank < 0) {
      problems << QStringLiteral("cannot start the supervisor process: %1").arg(QString::fromLocal8Bit(strerror(r.execErrno)));
      continue;
    }
    if (r.rank < s.nprocs) result.rankPids[r.rank] = r.pid;
    if (r.execErrno != 0) {
      problems << QStringLiteral("rank %1: cannot execute %2: %3 (check that it is an executable fathom-engine built "
                                 "for this machine, and that %4 is writable)")
                      .arg(r.rank)
                      .arg(engine, QString::fromLocal8Bit(strerror(r.execErrno)), s.runDir);
    }
  }
  for (int rank = 0; rank < s.nprocs; ++rank)
    if (result.rankPids[rank] == 0 && problems.isEmpty())
      problems << QStringLiteral("rank %1 did not start (no report from the launch supervisor)").arg(rank);
  result.commandLines = commandPreview(s);
  if (!problems.isEmpty()) {
    if (result.rankPids.value(0) > 0) ::kill(-static_cast<pid_t>(result.rankPids[0]), SIGKILL);
    return fail(problems.join(QLatin1Char('\n')));
  }
  result.ok = true;
  result.pid = result.rankPids[0];
  result.pgid = result.rankPids[0];
  return result;
}

bool LocalLauncher::stop(qint64 pid, QString* error) {
  if (pid <= 0) {
    if (error) *error = QStringLiteral("no process id to stop");
    return false;
  }
  const pid_t pgid = getpgid(static_cast<pid_t>(pid));
  const int rc = pgid > 1 ? ::kill(-pgid, SIGTERM) : ::kill(static_cast<pid_t>(pid), SIGTERM);
  if (rc != 0) {
    if (error) *error = QStringLiteral("cannot send SIGTERM to process %1: %2").arg(pid).arg(QString::fromLocal8Bit(strerror(errno)));
    return false;
  }
  return true;
}

bool LocalLauncher::kill(qint64 pgid, QString* error) {
  if (pgid <= 1) {
    if (error) *error = QStringLiteral("no process group to kill");
    return false;
  }
  if (::kill(-static_cast<pid_t>(pgid), SIGKILL) != 0) {
    if (error) *error = QStringLiteral("cannot send SIGKILL to process group %1: %2").arg(pgid).arg(QString::fromLocal8Bit(strerror(errno)));
    return false;
  }
  return true;
}

bool LocalLauncher::isAlive(qint64 pid, const QString& runDir) { return isEngineProcessFor(pid, runDir); }

QJsonArray LocalLauncher::probeDevices(const QString& engineBinary, QString* error, int timeoutMs) {
  QString err;
  const QString engine = findEngineBinary(engineBinary, &err);
  if (engine.isEmpty()) {
    if (error) *error = err;
    return {};
  }
  QProcess p;
  p.start(engine, {QStringLiteral("devices"), QStringLiteral("--json")});
  if (!p.waitForFinished(timeoutMs)) {
    p.kill();
    p.waitForFinished(1000);
    if (error) *error = QStringLiteral("%1 devices --json did not answer within %2 s").arg(engine).arg(timeoutMs / 1000);
    return {};
  }
  QJsonParseError perr{};
  const QByteArray out = p.readAllStandardOutput();
  const QJsonDocument doc = QJsonDocument::fromJson(out.trimmed(), &perr);
  if (p.exitStatus() != QProcess::NormalExit || p.exitCode() != 0 || !doc.isArray()) {
    if (error) {
      *error = QStringLiteral("%1 devices --json failed (exit %2): %3")
                   .arg(engine)
                   .arg(p.exitCode())
                   .arg(QString::fromUtf8(p.readAllStandardError()).trimmed().left(500) +
                        (doc.isArray() ? QString() : QStringLiteral(" (output is not a JSON array: %1)").arg(perr.errorString())));
    }
    return {};
  }
  return doc.array();
}

int LocalLauncher::freePort() {
  QTcpServer server;
  if (!server.listen(QHostAddress::LocalHost, 0)) return 0;
  const int port = server.serverPort();
  server.close();
  return port;
}

}  // namespace fathom::cluster
