// What the training tests share: the fixtures' files, safetensors read whole, and the check that
// trained weights match expected ones within a share of the update.
#pragma once

#include <algorithm>
#include <cmath>
#include <functional>
#include <map>
#include <memory>
#include <string>

#include <gtest/gtest.h>

#include "frontend/formats/safetensors.h"
#include "tests/common/subprocess.h"

namespace vitc::test {

inline std::string fixture(const std::string &name, const std::string &file = "") {
  return sourcePath("tests/fixtures/" + name + (file.empty() ? "" : "/" + file));
}

// The model of a fixture as `vitc` takes it: a spec, or a Hugging Face directory.
inline std::string fixtureModel(const std::string &name) {
  return name == "tv_tok" ? fixture(name) : fixture(name, "model.vit");
}

inline std::map<std::string, Tensor> readAll(const std::string &path) {
  std::map<std::string, Tensor> out;
  auto file = formats::SafetensorsFile::open(path);
  EXPECT_TRUE(file) << (file ? "" : file.error().str());
  if (!file)
    return out;
  for (const formats::SafetensorsEntry &e : file->entries())
    out[e.name] = *file->load(e.name);
  return out;
}

// Every weight of `got` equals `want` within `tolerance` of the update's size (want - initial),
// at least `floor` absolutely; entries for which `noisy(name, index)` holds within `noiseScale`.
inline void expectUpdates(const std::map<std::string, Tensor> &initial,
                          const std::map<std::string, Tensor> &got,
                          const std::map<std::string, Tensor> &want, double tolerance, double floor,
                          double noiseScale,
                          const std::function<bool(const std::string &, int64_t)> &noisy) {
  ASSERT_EQ(got.size(), want.size());
  for (const auto &[name, w] : want) {
    ASSERT_TRUE(got.count(name)) << name;
    const Tensor &g = got.at(name), &w0 = initial.at(name);
    ASSERT_EQ(g.shape(), w.shape()) << name;
    double update = 0;
    for (int64_t i = 0; i < w.numel(); ++i)
      update = std::max(update, std::abs(double(w.data()[i]) - w0.data()[i]));
    for (int64_t i = 0; i < w.numel(); ++i) {
      double bound = noisy(name, i) ? noiseScale : std::max(floor, tolerance * update);
      ASSERT_NEAR(g.data()[i], w.data()[i], bound)
          << name << "[" << i << "] (update " << update << ")";
    }
  }
}

// The entries of a fixture's weights whose AdamW steps are rounding noise: AdamW divides each
// gradient by its own size, so the float32 rounding of a gradient entry much smaller than its
// tensor's largest (1e-7 of the largest is 1e-3 of an entry 1e-4 of it) moves that entry's step by
// as much; such entries, and the key biases whose gradients are rounding noise alone, may differ by
// a few lr between two correct implementations. `below` is the share of the tensor's largest
// gradient under which an entry counts as noise.
inline std::function<bool(const std::string &, int64_t)> adamwNoise(const std::string &fixtureName,
                                                                    double below = 1e-3) {
  auto grads = std::make_shared<std::map<std::string, Tensor>>(
      readAll(fixture(fixtureName, "grads.safetensors")));
  auto largest = std::make_shared<std::map<std::string, double>>();
  for (const auto &[n, g] : *grads)
    for (int64_t i = 0; i < g.numel(); ++i)
      (*largest)[n] = std::max((*largest)[n], double(std::abs(g.data()[i])));
  return [grads, largest, below](const std::string &n, int64_t i) {
    // Key biases get no gradient in exact arithmetic (a softmax ignores a shift of all of a
    // query's scores), whatever the size of their rounding noise.
    bool keyBias = n.find("key.bias") != std::string::npos ||
                   (n == "head.attention.in_proj_bias" && i >= 64 && i < 128);
    return keyBias || std::abs(grads->at(n).data()[i]) < below * largest->at(n);
  };
}

} // namespace vitc::test
