// Learning-rate schedules, and the per-step scalars an optimizer's update reads.
//
// ViT-G trains with a linear warmup, then a constant, cosine or reciprocal-square-root decay, and a
// linear cooldown to zero at the end (big_vision's schedules). The training loop evaluates the
// schedule on the host, once per step, and feeds the optimizer pass's rank-0 inputs
// (passes/optimizer.h) from it: a handful of numbers per step, not worth a kernel.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "passes/pass_options.h"

namespace vitc::train {

struct Schedule {
  enum class Kind { Constant, Cosine, Rsqrt };
  Kind kind = Kind::Constant;
  double lr = 1e-3;
  int64_t warmup = 0;   // steps of linear warmup from lr / warmup to lr
  int64_t cooldown = 0; // last steps, the rate falling linearly to zero
  int64_t total = 1;    // steps in the whole run
  double timescale = 10000; // rsqrt: lr / sqrt(1 + (step - warmup) / timescale)
};

// "constant", "cosine", "rsqrt"; false for another word.
bool parseScheduleKind(std::string_view word, Schedule::Kind &kind);
std::string_view scheduleName(Schedule::Kind kind);

// The learning rate of step `step` (0-based).
double learningRate(const Schedule &s, int64_t step);

// The values of the optimizer pass's `optimizer.*` inputs for step `step` (0-based) at learning
// rate `lr`, by input name.
std::vector<std::pair<std::string, double>>
optimizerScalars(const passes::OptimizerOptions &o, double lr, int64_t step);

} // namespace vitc::train
