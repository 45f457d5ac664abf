// Learning-rate schedules: linear warmup to lr, then cosine / linear decay to min_lr at max_steps,
// or constant. `step` counts optimizer steps from 0.
#pragma once
#include <cstdint>
#include <string>

namespace fathom::train {

struct LrSchedule {
  std::string kind = "cosine";  // cosine | linear | constant
  double lr = 3e-4;
  double min_lr = 3e-5;
  int64_t warmup_steps = 0;
  int64_t max_steps = 1;

  double at(int64_t step) const;
};

}  // namespace fathom::train
