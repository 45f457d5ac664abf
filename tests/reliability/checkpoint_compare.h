// Checkpoint comparisons shared by the fault tests (test_kill_resume, test_disk_full).
#pragma once
#include <gtest/gtest.h>

#include <map>
#include <nlohmann/json.hpp>
#include <string>

#include "engine/engine_process.h"

namespace fathom::testing {

// `fathom-engine inspect DIR --json`: verifies the checkpoint's MANIFEST (sha256 of every file).
inline nlohmann::json inspect_checkpoint(const std::string& ckpt, const std::string& scratch) {
  if (run_engine({"inspect", ckpt, "--json"}, scratch) != 0) return nullptr;
  return nlohmann::json::parse(read_text(scratch + "/stdout.txt"), nullptr, false);
}

// Two checkpoints hold bit-identical weights and optimizer state: their files hash the same (the
// tensors, their order and the metadata are all in the bytes), and each verifies. *second_report
// gets b's inspect report.
inline void expect_identical_checkpoints(const std::string& a, const std::string& b, const std::string& scratch,
                                         nlohmann::json* second_report = nullptr) {
  const auto ia = inspect_checkpoint(a, scratch), ib = inspect_checkpoint(b, scratch);
  if (second_report) *second_report = ib;
  ASSERT_TRUE(ia.is_object() && ib.is_object()) << read_text(scratch + "/stderr.txt");
  EXPECT_TRUE(ia["verified"].get<bool>()) << ia.dump();
  EXPECT_TRUE(ib["verified"].get<bool>()) << ib.dump();
  std::map<std::string, std::string> ha, hb;
  for (const auto& f : ia["files"]) ha[f["name"]] = f["sha256"];
  for (const auto& f : ib["files"]) hb[f["name"]] = f["sha256"];
  for (const char* name : {"model.safetensors", "optimizer.safetensors"}) {
    ASSERT_TRUE(ha.count(name) && hb.count(name)) << name;
    EXPECT_EQ(ha[name], hb[name]) << name << " differs between " << a << " and " << b;
  }
}

}  // namespace fathom::testing
