// Learning-rate schedules, the optimizer's per-step scalars, and augmentation.
#include <cmath>

#include <gtest/gtest.h>

#include "train/augment.h"
#include "train/schedule.h"

namespace vitc::train {
namespace {

TEST(Schedule, WarmupRisesLinearlyThenEachKindDecays) {
  Schedule s;
  s.lr = 1.0;
  s.warmup = 4;
  s.total = 104;
  EXPECT_DOUBLE_EQ(learningRate(s, 0), 0.25);
  EXPECT_DOUBLE_EQ(learningRate(s, 3), 1.0);
  EXPECT_DOUBLE_EQ(learningRate(s, 50), 1.0); // constant
  s.kind = Schedule::Kind::Cosine;
  EXPECT_DOUBLE_EQ(learningRate(s, 4), 1.0);
  EXPECT_NEAR(learningRate(s, 54), 0.5, 1e-12); // halfway through the decay
  EXPECT_NEAR(learningRate(s, 103), 0.5 * (1 + std::cos(M_PI * 0.99)), 1e-12);
  s.kind = Schedule::Kind::Rsqrt;
  s.timescale = 10;
  EXPECT_NEAR(learningRate(s, 14), 1 / std::sqrt(2.0), 1e-12);
}

TEST(Schedule, CooldownFallsLinearlyOverTheLastSteps) {
  Schedule s;
  s.lr = 2.0;
  s.total = 10;
  s.cooldown = 3;
  EXPECT_DOUBLE_EQ(learningRate(s, 6), 2.0);
  EXPECT_DOUBLE_EQ(learningRate(s, 7), 2.0 * 3 / 4);
  EXPECT_DOUBLE_EQ(learningRate(s, 9), 2.0 * 1 / 4);
}

TEST(Schedule, KindsParseByName) {
  Schedule::Kind k;
  for (const char *name : {"constant", "cosine", "rsqrt"}) {
    ASSERT_TRUE(parseScheduleKind(name, k));
    EXPECT_EQ(scheduleName(k), name);
  }
  EXPECT_FALSE(parseScheduleKind("linear", k));
}

TEST(OptimizerScalars, AdamWBiasCorrectionsArePyTorchs) {
  passes::OptimizerOptions o;
  o.kind = passes::OptimizerOptions::Kind::AdamW;
  o.weightDecay = 0.1;
  auto s = optimizerScalars(o, 0.01, 2); // the third step
  ASSERT_EQ(s.size(), 3u);
  EXPECT_EQ(s[0].first, "optimizer.decay");
  EXPECT_DOUBLE_EQ(s[0].second, 1 - 0.01 * 0.1);
  EXPECT_DOUBLE_EQ(s[1].second, 1 / std::sqrt(1 - std::pow(0.999, 3)));
  EXPECT_DOUBLE_EQ(s[2].second, 0.01 / (1 - std::pow(0.9, 3)));
}

TEST(Augment, FlipsAndCropsAreSeededByStepAndPlace) {
  const int64_t n = 4, c = 2, h = 5, w = 6;
  std::vector<float> base(n * c * h * w);
  for (size_t i = 0; i < base.size(); ++i)
    base[i] = static_cast<float>(i + 1);
  auto run = [&](const char *kind, uint64_t seed, int64_t step) {
    std::vector<float> x = base;
    augmentBatch(*parseAugment(kind), x.data(), n, c, h, w, seed, step);
    return x;
  };
  EXPECT_EQ(run("none", 1, 0), base);
  EXPECT_EQ(run("crop-flip", 1, 3), run("crop-flip", 1, 3));
  EXPECT_NE(run("crop-flip", 1, 3), run("crop-flip", 1, 4));
  // A flip reverses every row of every channel, or leaves the image alone.
  std::vector<float> flipped = run("flip", 7, 0);
  int changed = 0;
  for (int64_t i = 0; i < n; ++i) {
    const float *a = base.data() + i * c * h * w, *b = flipped.data() + i * c * h * w;
    bool same = std::equal(a, a + c * h * w, b);
    bool mirrored = true;
    for (int64_t r = 0; r < c * h; ++r)
      for (int64_t x = 0; x < w; ++x)
        mirrored &= b[r * w + x] == a[r * w + w - 1 - x];
    EXPECT_TRUE(same || mirrored) << i;
    changed += !same;
  }
  EXPECT_GT(changed, 0);
  // A crop keeps the pixels it does not uncover, shifted; what it uncovers is zero.
  std::vector<float> cropped = run("crop", 2, 1);
  for (float v : cropped)
    EXPECT_TRUE(v == 0 || (v >= 1 && v <= static_cast<float>(base.size())));
  EXPECT_FALSE(parseAugment("rotate"));
}

} // namespace
} // namespace vitc::train
