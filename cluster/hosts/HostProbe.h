// What a host offers, found over SSH in one command: OS, CPU, memory, free disk of the work
// directory, NVIDIA GPUs (nvidia-smi; none when absent), IPv4 interfaces (for NCCL/Gloo socket
// interfaces and MASTER_ADDR), and the installed fathom-engine's version.
#pragma once

#include <QByteArray>

#include "cluster/hosts/HostConfig.h"

namespace fathom::cluster {

class SshSession;

// The remote script (every value quoted); exposed for tests and the docs.
QString hostProbeScript(const HostConfig& host);
// Parses the script's output (sections "@@fathom:<name>").
HostProbeResult parseHostProbe(const QByteArray& output);
// Runs the probe on a connected session (blocks; off the GUI thread). ok=false with `error` when
// the command could not run.
HostProbeResult probeHost(SshSession& session, const HostConfig& host, int timeoutMs = 60000);

}  // namespace fathom::cluster
