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

// The interface Gloo/NCCL sockets should use on a host (GLOO_SOCKET_IFNAME): the one carrying
// `ownAddress`, else the one the route to `peerAddress` leaves by (never loopback); "" when neither
// is found. Parses `ip -o -4 addr show` and `ip -o route get` run on the host; host names are
// resolved there (getent ahostsv4).
QString findSocketInterface(SshSession& session, const QString& ownAddress, const QString& peerAddress, int timeoutMs = 15000);
QString parseSocketInterface(const QByteArray& ipOutput, const QString& ownAddress);
// A TCP port in 29500..49499 that nothing on the host listens on (its /proc/net/tcp{,6}); 0 when
// the host could not be asked.
int findFreePort(SshSession& session, int timeoutMs = 15000);

}  // namespace fathom::cluster
