// The PyTorch fixtures of tests/fixtures: loading one and running it through a vitc pipeline.
#pragma once

#include <string>
#include <vector>

#include "backends/backend.h"
#include "passes/pass_manager.h"
#include "support/tensor.h"

namespace vitc::test {

// Every fixture directory under tests/fixtures.
std::vector<std::string> fixtureNames();
// Every ONNX export of a fixture, as `DIR/FILE.onnx` (a name runFixture takes: the model and its
// weights are the file, the input and logits its directory's).
std::vector<std::string> onnxFixtureNames();
// A fixture name as a test name: letters, digits and underscores.
std::string testName(const std::string &fixture);

struct FixtureRun {
  Tensor logits;   // what vitc computed
  Tensor expected; // what the independent implementation computed
  double maxAbsDiff = 0;
};

// Loads the fixture's model (spec or Hugging Face directory) for its input batch, runs `pipeline`
// on a `mesh` ("" for one device) with matmul inputs of `dtype`, compiles it with `compile`, loads
// its weights and runs it.
Expected<FixtureRun> runFixture(const std::string &name, const backends::Compiler &compile,
                                const passes::PipelineOptions &pipeline = {},
                                const std::string &mesh = "", ir::DType dtype = ir::DType::F32);

double maxAbsDiff(const Tensor &a, const Tensor &b);

// `t` repeated `times` times along the batch (dimension 0): a bigger batch whose expected outputs
// are the fixture's, repeated alike.
Tensor repeatBatch(const Tensor &t, int64_t times);

} // namespace vitc::test
