// ONNX's backend node tests (Debian's libonnx-testdata) for the ops the importer takes, through
// the interpreter and the JIT.
//
// A node test is a directory with model.onnx and test_data_set_0/{input,output}_N.pb. It is in
// scope when every node of its model is an op type the importer takes; each one in scope must
// give ONNX's outputs on both backends, or be listed below with the reason vitc does not run it
// (frontend/onnx/README.md keeps the same list). A test on the list that starts to pass fails
// too, so that the list stays true.
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>

#include <gtest/gtest.h>
#include <onnx/onnx_pb.h>

#include "backends/interpreter/interpreter.h"
#include "backends/llvm/llvm_backend.h"
#include "frontend/onnx/onnx_import.h"
#include "passes/pass_manager.h"
#include "runtime/runner.h"

namespace vitc::onnximport {
namespace {

namespace fs = std::filesystem;

const char *const kNodeTests = "/usr/share/libonnx-testdata/data/node";

// Node tests in scope that vitc does not run, and why.
const std::map<std::string, std::string> kSkipped = {
#include "tests/frontend/onnx/conformance_skips.inc"
};

bool inScope(const fs::path &dir, const std::set<std::string> &supported) {
  std::ifstream in(dir / "model.onnx", std::ios::binary);
  onnx::ModelProto model;
  if (!model.ParseFromIstream(&in))
    return false;
  for (const onnx::NodeProto &node : model.graph().node())
    if (!supported.count(node.op_type()) || !(node.domain().empty() || node.domain() == "ai.onnx"))
      return false;
  return model.graph().node_size() > 0;
}

// The problem with one node test, or "" when both backends give ONNX's outputs.
std::string runNodeTest(const fs::path &dir) {
  auto module = importOnnxFile((dir / "model.onnx").string(), 1);
  if (!module)
    return module.error().str();
  std::vector<Tensor> inputs, expected;
  for (int i = 0;; ++i) {
    fs::path p = dir / "test_data_set_0" / fmt::format("input_{}.pb", i);
    if (!fs::exists(p))
      break;
    auto t = readTensorProtoFile(p.string());
    if (!t)
      return t.error().str();
    inputs.push_back(*t);
  }
  for (int i = 0;; ++i) {
    fs::path p = dir / "test_data_set_0" / fmt::format("output_{}.pb", i);
    if (!fs::exists(p))
      break;
    auto t = readTensorProtoFile(p.string());
    if (!t)
      return t.error().str();
    expected.push_back(*t);
  }
  // The default pipeline, as `vitc run` compiles: raise-onnx and the fusions included.
  std::ostringstream remarks;
  passes::PassManager pm({}, remarks);
  passes::PassContext ctx;
  if (Status s = pm.run(**module, ctx); !s)
    return s.error().str();
  std::shared_ptr<const ir::Module> m = std::move(*module);
  if (m->inputs().size() != inputs.size())
    return fmt::format("the model takes {} inputs, the test gives {}", m->inputs().size(),
                       inputs.size());
  for (const auto &[backend, compile] :
       {std::pair<std::string, backends::Compiler>{"interpreter", interp::compiler()},
        {"llvm", llvmbe::compiler()}}) {
    auto exe = compile(m);
    if (!exe)
      return backend + ": " + exe.error().str();
    // Constant nodes of many values are parameters that the model file provides.
    auto source = openOnnxWeights((dir / "model.onnx").string());
    if (!source)
      return source.error().str();
    auto params = formats::bindWeights((*exe)->signature(), **source);
    if (!params)
      return backend + ": " + params.error().str();
    auto runner = runtime::MeshRunner::create(*exe, *params);
    if (!runner)
      return backend + ": " + runner.error().str();
    auto outs = (*runner)->run(inputs);
    if (!outs)
      return backend + ": " + outs.error().str();
    if (outs->size() != expected.size())
      return fmt::format("{}: {} outputs, expected {}", backend, outs->size(), expected.size());
    for (size_t o = 0; o < expected.size(); ++o) {
      const Tensor &got = (*outs)[o], &want = expected[o];
      if (got.numel() != want.numel())
        return fmt::format("{}: output {} has shape {}, expected {}", backend, o,
                           shapeString(got.shape()), shapeString(want.shape()));
      for (int64_t k = 0; k < want.numel(); ++k) {
        double g = got.data()[k], w = want.data()[k];
        if (!(std::abs(g - w) <= 1e-4 + 1e-4 * std::abs(w)))
          return fmt::format("{}: output {} element {} is {}, expected {}", backend, o, k, g, w);
      }
    }
  }
  return "";
}

TEST(OnnxConformance, NodeTestsOfTheImportedOps) {
  if (!fs::is_directory(kNodeTests))
    GTEST_SKIP() << kNodeTests << " is missing: install Debian's libonnx-testdata";
  std::vector<std::string> ops = supportedOpTypes();
  std::set<std::string> supported(ops.begin(), ops.end());
  std::vector<fs::path> dirs;
  for (const auto &e : fs::directory_iterator(kNodeTests))
    if (e.is_directory() && inScope(e.path(), supported))
      dirs.push_back(e.path());
  std::sort(dirs.begin(), dirs.end());
  int passed = 0, skipped = 0;
  for (const fs::path &dir : dirs) {
    std::string name = dir.filename().string();
    std::string problem = runNodeTest(dir);
    auto skip = kSkipped.find(name);
    if (skip != kSkipped.end()) {
      EXPECT_FALSE(problem.empty()) << name << " passes now: take it off the skipped list";
      EXPECT_NE(problem.find(skip->second), std::string::npos)
          << name << " fails for another reason than the listed one: " << problem;
      ++skipped;
      continue;
    }
    EXPECT_TRUE(problem.empty()) << name << ": " << problem;
    passed += problem.empty();
  }
  std::cout << "ONNX node tests: " << passed << " passed, " << skipped << " skipped (listed), of "
            << dirs.size() << " in scope\n";
  EXPECT_GT(passed, 50);
}

} // namespace
} // namespace vitc::onnximport
