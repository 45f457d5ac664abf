// SamplingParams::validate (see sampling_params.h).
#include "engine/infer/sampling_params.h"

#include <sstream>

namespace fathom::infer {

std::string SamplingParams::validate() const {
  std::ostringstream e;
  if (!(temperature >= 0 && temperature <= 100)) e << "temperature must be between 0 and 100";
  else if (top_k < 0) e << "top_k must be >= 0 (0 = off)";
  else if (!(top_p > 0 && top_p <= 1)) e << "top_p must be in (0, 1]";
  else if (!(min_p >= 0 && min_p < 1)) e << "min_p must be in [0, 1)";
  else if (!(repetition_penalty > 0 && repetition_penalty <= 100)) e << "repetition_penalty must be in (0, 100]";
  else if (!(presence_penalty >= -2 && presence_penalty <= 2)) e << "presence_penalty must be between -2 and 2";
  else if (!(frequency_penalty >= -2 && frequency_penalty <= 2)) e << "frequency_penalty must be between -2 and 2";
  else if (max_tokens < 1) e << "max_tokens must be >= 1";
  else if (logprobs < 0 || logprobs > 20) e << "logprobs must be between 0 and 20";
  else if (stop.size() > 16) e << "at most 16 stop strings";
  return e.str();
}

}  // namespace fathom::infer
