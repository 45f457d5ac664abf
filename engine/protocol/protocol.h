// fathom_protocol, the engine <-> workbench protocol (ARCHITECTURE.md §3, docs/protocol.md): one
// include for everything. Plain C++17 + nlohmann-json; no torch, no Qt. POSIX for file I/O.
#pragma once

#include "engine/protocol/control.h"             // Control, decode_control, encode_control
#include "engine/protocol/emitter.h"             // Emitter (engine side)
#include "engine/protocol/events_file_reader.h"  // EventsFileReader, scan_last_seq (workbench side)
#include "engine/protocol/payloads.h"            // HelloData, MetricData, ..., as<T>, try_as<T>
#include "engine/protocol/record.h"              // Record, encode_line, decode_line, LineDecoder
