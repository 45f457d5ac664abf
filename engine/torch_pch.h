// Precompiled header for fathom_engine translation units (torch is expensive to parse).
#pragma once
#include <torch/torch.h>
