// Preparing a model to run: compiled module, weights for every parameter, a backend.
#pragma once

#include "frontend/weights.h"
#include "runtime/runner.h"
#include "tools/driver.h"

namespace vitc::tools {

// Checks an image batch against the model's input and returns the batch size.
Expected<int64_t> checkImageBatch(const Tensor &images, const std::string &path,
                                  const frontend::LoadedModel &model);

// Loads the global value of every parameter of `m` from `source`.
Expected<std::vector<Tensor>> loadParams(const ir::Module &m, frontend::WeightSource &source);

// Refuses work that needs more memory than the machine has, before allocating it.
Status checkMemory(int64_t bytes, const std::string &what);

} // namespace vitc::tools
