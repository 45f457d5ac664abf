// known_hosts: Fathom does not parse the file itself; libssh does, when SshSession checks a host
// key (ssh_session_is_known_server) and when the Hosts page accepts one. This harness drives the
// same libssh code on our input: the first line is the destination as a user types it
// ("[user@]host[:port]", parsed by our parseDestination, as HostDialog and jump hosts do), the
// rest is a known_hosts file: each line through ssh_known_hosts_parse_line, and the whole file
// through ssh_session_has_known_hosts_entry for the parsed host. libssh is Debian's build (not
// instrumented): coverage guides on our code only, ASan still checks its heap use.
#include <libssh/libssh.h>

#include <QString>
#include <string>

#include "cluster/hosts/HostConfig.h"
#include "fuzz/fuzz_util.h"

// libssh 0.10.6 (Debian 12) leaks the entries it has already read when a later line of the file
// fails to parse (ssh_session_has_known_hosts_entry / ssh_session_is_known_server: a valid entry for
// the host, then a damaged one; ~200 bytes per check). Third-party and small, so suppressed here
// by library name; the input that showed it is kept as corpus/known_hosts/libssh_leak_damaged_line.
extern "C" const char* __lsan_default_suppressions() { return "leak:libssh.so.4\n"; }

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  const size_t nl = text.find('\n');
  const std::string dest = text.substr(0, nl);
  const std::string file = nl == std::string::npos ? std::string() : text.substr(nl + 1);

  QString user, host;
  int port = 0;
  const bool ok = fathom::cluster::parseDestination(QString::fromUtf8(dest.data(), static_cast<int>(dest.size())),
                                                     &user, &host, &port);
  if (ok && (host.isEmpty() || port < 1 || port > 65535)) fathom::fuzz::fail("parseDestination accepted a bad host/port");
  std::string h = ok ? host.toStdString() : std::string("example.org");
  if (h.find('\0') != std::string::npos) return 0;  // a C string cannot carry it
  const std::string host_key = ok && port != 22 ? "[" + h + "]:" + std::to_string(port) : h;

  size_t at = 0;
  int lines = 0;
  while (at < file.size() && lines < 64) {
    size_t eol = file.find('\n', at);
    if (eol == std::string::npos) eol = file.size();
    const std::string line = file.substr(at, eol - at);
    at = eol + 1;
    ++lines;
    if (line.find('\0') != std::string::npos) continue;
    ssh_knownhosts_entry* entry = nullptr;
    if (ssh_known_hosts_parse_line(host_key.c_str(), line.c_str(), &entry) == SSH_OK && entry) {
      (void)entry->hostname;
    }
    SSH_KNOWNHOSTS_ENTRY_FREE(entry);
  }

  fathom::fuzz::MemFile kh(file.data(), file.size(), "known_hosts");
  ssh_session s = ssh_new();
  if (!s) return 0;
  const int verbosity = SSH_LOG_NOLOG;
  ssh_options_set(s, SSH_OPTIONS_LOG_VERBOSITY, &verbosity);
  ssh_options_set(s, SSH_OPTIONS_HOST, h.c_str());
  if (ok) ssh_options_set(s, SSH_OPTIONS_PORT, &port);
  ssh_options_set(s, SSH_OPTIONS_KNOWNHOSTS, kh.path().c_str());
  ssh_options_set(s, SSH_OPTIONS_GLOBAL_KNOWNHOSTS, "/dev/null");
  (void)ssh_session_has_known_hosts_entry(s);
  ssh_free(s);
  return 0;
}
