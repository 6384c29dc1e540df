// Learning-rate schedules.
#include "train/schedule.h"

#include <algorithm>
#include <cmath>

namespace vitc::train {

bool parseScheduleKind(std::string_view word, Schedule::Kind &kind) {
  for (Schedule::Kind k : {Schedule::Kind::Constant, Schedule::Kind::Cosine, Schedule::Kind::Rsqrt})
    if (scheduleName(k) == word) {
      kind = k;
      return true;
    }
  return false;
}

std::string_view scheduleName(Schedule::Kind kind) {
  switch (kind) {
  case Schedule::Kind::Constant:
    return "constant";
  case Schedule::Kind::Cosine:
    return "cosine";
  case Schedule::Kind::Rsqrt:
    return "rsqrt";
  }
  return "?";
}

double learningRate(const Schedule &s, int64_t step) {
  // Step t's rate counts t + 1 steps done, so the first step of a warmup is not wasted at zero.
  double done = static_cast<double>(step + 1);
  double rate = s.lr;
  if (step < s.warmup)
    return s.lr * done / static_cast<double>(s.warmup);
  double after = static_cast<double>(step - s.warmup);
  double span = static_cast<double>(std::max<int64_t>(1, s.total - s.warmup));
  switch (s.kind) {
  case Schedule::Kind::Constant:
    break;
  case Schedule::Kind::Cosine:
    rate = s.lr * 0.5 * (1 + std::cos(M_PI * std::min(1.0, after / span)));
    break;
  case Schedule::Kind::Rsqrt:
    rate = s.lr / std::sqrt(1 + after / s.timescale);
    break;
  }
  if (s.cooldown > 0) {
    int64_t left = s.total - step; // this step and the ones after it
    if (left <= s.cooldown)
      rate *= static_cast<double>(left) / static_cast<double>(s.cooldown + 1);
  }
  return rate;
}

std::vector<std::pair<std::string, double>>
optimizerScalars(const passes::OptimizerOptions &o, double lr, int64_t step) {
  using Kind = passes::OptimizerOptions::Kind;
  double t = static_cast<double>(step + 1);
  switch (o.kind) {
  case Kind::Sgd:
    return {{"optimizer.lr", lr}};
  case Kind::AdamW:
    // PyTorch's AdamW: w *= 1 - lr * wd; w -= lr / (1 - b1^t) * m / (sqrt(v / (1 - b2^t)) + eps).
    return {{"optimizer.decay", 1 - lr * o.weightDecay},
            {"optimizer.rsqrt_bias2", 1 / std::sqrt(1 - std::pow(o.beta2, t))},
            {"optimizer.step_size", lr / (1 - std::pow(o.beta1, t))}};
  case Kind::Adafactor:
    // The second moments' decay grows with the step (Adafactor's 1 - t^-0.8).
    return {{"optimizer.beta2", 1 - std::pow(t, -0.8)}, {"optimizer.lr", lr}};
  }
  return {};
}

} // namespace vitc::train
