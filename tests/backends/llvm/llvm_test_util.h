// Running IR text through the LLVM backend and the interpreter on the same values.
#pragma once

#include <cmath>
#include <filesystem>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "backends/interpreter/interpreter.h"
#include "backends/llvm/llvm_backend.h"
#include "ir/text.h"
#include "ir/verifier.h"
#include "passes/pass_manager.h"
#include "runtime/runner.h"
#include "tests/common/subprocess.h"
#include "tests/common/tensors.h"

namespace vitc::test {

// A fresh temporary directory, removed with everything in it when this goes out of scope.
struct ScopedTempDir {
  explicit ScopedTempDir(const std::string &name) : path(makeTempDir(name)) {}
  ~ScopedTempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path, ec);
  }
  const std::string path;
};

// Options for tests: the generated IR is always verified.
inline llvmbe::Options verifiedOptions() {
  llvmbe::Options o;
  o.verify = true;
  return o;
}

// Small tiles, so that modest shapes still cross many row, column and depth blocks.
inline llvmbe::Options smallTileOptions() {
  llvmbe::Options o = verifiedOptions();
  o.tiles.mr = 3;
  o.tiles.kc = 16;
  o.tiles.mc = 6;
  o.tiles.nc = 32;
  return o;
}

// How the bf16 products of a test multiply: as the host can (vdpbf16ps where it has
// AVX512-BF16), or forced to f32 math on bf16 values with AVX-512 or AVX2.
enum class Path { Host, Widened, Avx2 };

inline llvmbe::Options optionsFor(Path path, bool smallTiles = false) {
  llvmbe::Options o = smallTiles ? smallTileOptions() : verifiedOptions();
  if (path == Path::Widened)
    o.features = "-avx512bf16";
  if (path == Path::Avx2)
    o.cpu = "x86-64-v3";
  return o;
}

inline std::string pathName(Path path) {
  return path == Path::Host ? "Host" : path == Path::Widened ? "Widened" : "Avx2";
}

inline Expected<std::shared_ptr<const ir::Module>> parseAndPlan(const std::string &text,
                                                                bool planMemory = true) {
  VITC_ASSIGN(std::unique_ptr<ir::Module> m, ir::parseModule(text, "test.ir"));
  Diagnostics d = ir::verify(*m);
  if (!d.empty())
    return Error(d.str());
  if (planMemory) {
    passes::PipelineOptions pipeline;
    pipeline.passes = {"plan-memory"};
    pipeline.verifyEach = true;
    std::ostringstream sink;
    passes::PassManager pm(pipeline, sink);
    passes::PassContext ctx;
    VITC_TRY(pm.run(*m, ctx));
  }
  return std::shared_ptr<const ir::Module>(std::move(m));
}

struct Comparison {
  std::vector<Tensor> llvm, reference;
  double maxDiff = 0;    // largest |llvm - reference|
  double maxRelDiff = 0; // largest |llvm - reference| / max(1, largest |reference| of its output)
};

// Runs `m` with the interpreter and the JIT on the same seeded parameters and inputs.
inline Expected<Comparison> compareModule(std::shared_ptr<const ir::Module> m,
                                          const llvmbe::Options &options, float sd = 1.0f,
                                          uint32_t seed = 1) {
  std::vector<Tensor> params, inputs;
  uint32_t s = seed;
  for (const ir::Op *p : m->params())
    params.push_back(normalTensor(p->shape(), s++, sd));
  for (const ir::Op *in : m->inputs())
    inputs.push_back(normalTensor(in->shape(), s++, sd));
  Comparison c;
  VITC_ASSIGN(auto interpreted, interp::compile(m));
  VITC_ASSIGN(auto ref, runtime::MeshRunner::create(interpreted, params));
  VITC_ASSIGN(c.reference, ref->run(inputs));
  VITC_ASSIGN(auto compiled, llvmbe::compile(*m, options));
  VITC_ASSIGN(auto jit, runtime::MeshRunner::create(compiled, params));
  VITC_ASSIGN(c.llvm, jit->run(inputs));
  if (c.llvm.size() != c.reference.size())
    return Error("different numbers of outputs");
  for (size_t i = 0; i < c.llvm.size(); ++i) {
    if (c.llvm[i].shape() != c.reference[i].shape())
      return Error("output " + std::to_string(i) + " has shape " + shapeString(c.llvm[i].shape()) +
                   ", expected " + shapeString(c.reference[i].shape()));
    // Errors are relative to the output's scale (float sums of K terms err in proportion).
    double scale = 1;
    for (int64_t j = 0; j < c.reference[i].numel(); ++j)
      scale = std::max(scale, std::fabs(static_cast<double>(c.reference[i].data()[j])));
    for (int64_t j = 0; j < c.llvm[i].numel(); ++j) {
      double r = c.reference[i].data()[j], l = c.llvm[i].data()[j];
      double d = std::fabs(l - r);
      if (std::isnan(l) || std::isnan(r))
        d = INFINITY;
      c.maxDiff = std::max(c.maxDiff, d);
      c.maxRelDiff = std::max(c.maxRelDiff, d / scale);
      if (std::getenv("VITC_TEST_VERBOSE") && d / scale > 1e-5)
        std::printf("output %zu element %ld: %g, expected %g\n", i, static_cast<long>(j), l, r);
    }
  }
  return c;
}

inline Expected<Comparison> compareText(const std::string &text,
                                        const llvmbe::Options &options = verifiedOptions(),
                                        float sd = 1.0f) {
  VITC_ASSIGN(std::shared_ptr<const ir::Module> m, parseAndPlan(text));
  return compareModule(m, options, sd);
}

// Kernels must agree with the interpreter to about 1e-5 relative.
#define EXPECT_MATCHES_INTERPRETER(text, ...)                                                      \
  do {                                                                                             \
    auto vitc_cmp_ = ::vitc::test::compareText(text __VA_OPT__(, ) __VA_ARGS__);                   \
    ASSERT_TRUE(vitc_cmp_) << vitc_cmp_.error().str() << "\n" << (text);                           \
    EXPECT_LE(vitc_cmp_->maxRelDiff, 1e-5) << (text);                                              \
    if (std::getenv("VITC_TEST_VERBOSE"))                                                          \
      std::printf("max diff %g (relative %g)\n", vitc_cmp_->maxDiff, vitc_cmp_->maxRelDiff);       \
  } while (0)

} // namespace vitc::test
