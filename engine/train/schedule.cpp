// Learning-rate schedules (see schedule.h).
#include "engine/train/schedule.h"

#include <algorithm>
#include <cmath>

namespace fathom::train {

double LrSchedule::at(int64_t step) const {
  if (step < warmup_steps) return lr * static_cast<double>(step + 1) / static_cast<double>(warmup_steps);
  if (kind == "constant") return lr;
  const double span = static_cast<double>(std::max<int64_t>(1, max_steps - warmup_steps));
  const double progress = std::clamp(static_cast<double>(step - warmup_steps) / span, 0.0, 1.0);
  if (kind == "linear") return min_lr + (lr - min_lr) * (1.0 - progress);
  return min_lr + 0.5 * (1.0 + std::cos(M_PI * progress)) * (lr - min_lr);  // cosine
}

}  // namespace fathom::train
