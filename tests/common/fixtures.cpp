// Fixture loading and running for tests.
#include "tests/common/fixtures.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <filesystem>
#include <sstream>

#include "frontend/formats/npy.h"
#include "frontend/load_model.h"
#include "frontend/weights.h"
#include "runtime/runner.h"

namespace vitc::test {
namespace fs = std::filesystem;

std::vector<std::string> fixtureNames() {
  std::vector<std::string> names;
  for (const auto &e : fs::directory_iterator(std::string(VITC_TEST_DATA) + "/fixtures"))
    if (e.is_directory() && fs::exists(e.path() / "logits.npy"))
      names.push_back(e.path().filename().string());
  std::sort(names.begin(), names.end());
  return names;
}

std::vector<std::string> onnxFixtureNames() {
  std::vector<std::string> names;
  for (const std::string &dir : fixtureNames())
    for (const auto &e : fs::directory_iterator(std::string(VITC_TEST_DATA) + "/fixtures/" + dir))
      if (e.path().extension() == ".onnx")
        names.push_back(dir + "/" + e.path().filename().string());
  std::sort(names.begin(), names.end());
  return names;
}

std::string testName(const std::string &fixture) {
  std::string name = fixture;
  for (char &c : name)
    if (!std::isalnum(static_cast<unsigned char>(c)))
      c = '_';
  return name;
}

Tensor repeatBatch(const Tensor &t, int64_t times) {
  Shape shape = t.shape();
  shape[0] *= times;
  Tensor out = Tensor::zeros(shape);
  for (int64_t i = 0; i < times; ++i)
    std::copy(t.data(), t.data() + t.numel(), out.mutableData() + i * t.numel());
  return out;
}

double maxAbsDiff(const Tensor &a, const Tensor &b) {
  if (a.shape() != b.shape())
    return INFINITY;
  double d = 0;
  for (int64_t i = 0; i < a.numel(); ++i)
    d = std::max(d, static_cast<double>(std::abs(a.data()[i] - b.data()[i])));
  return d;
}

Expected<FixtureRun> runFixture(const std::string &name, const backends::Compiler &compile,
                                const passes::PipelineOptions &pipeline, const std::string &mesh,
                                ir::DType dtype) {
  fs::path dir = fs::path(VITC_TEST_DATA) / "fixtures" / name;
  // `DIR/FILE.onnx`: an export of the fixture in DIR, which brings its own weights.
  std::string onnx;
  if (fs::path(name).extension() == ".onnx") {
    onnx = dir.string();
    dir = dir.parent_path();
  }
  VITC_ASSIGN(Tensor input, formats::readNpy((dir / "input.npy").string()));
  FixtureRun r;
  VITC_ASSIGN(r.expected, formats::readNpy((dir / "logits.npy").string()));
  bool spec = fs::exists(dir / "model.vit");
  std::string model = !onnx.empty() ? onnx : spec ? (dir / "model.vit").string() : dir.string();
  std::string weights = fs::exists(dir / "model.npz") ? (dir / "model.npz").string()
                                                      : (dir / "model.safetensors").string();
  VITC_ASSIGN(frontend::LoadedModel loaded, frontend::loadModel(model, {input.dim(0)}));
  if (!mesh.empty()) {
    VITC_ASSIGN(loaded.module->mesh, ir::parseMesh(mesh, Loc::inFile("mesh")));
  }
  std::ostringstream sink;
  passes::PassManager pm(pipeline, sink);
  passes::PassContext ctx;
  ctx.options.dtype = dtype;
  VITC_TRY(pm.run(*loaded.module, ctx));
  std::shared_ptr<const ir::Module> module = std::move(loaded.module);
  if (!onnx.empty())
    weights = onnx;
  VITC_ASSIGN(auto source, frontend::openWeights(weights));
  VITC_ASSIGN(auto executable, compile(module));
  VITC_ASSIGN(std::vector<Tensor> params, frontend::bindWeights(executable->signature(), *source));
  VITC_ASSIGN(auto runner, runtime::MeshRunner::create(executable, params));
  VITC_ASSIGN(std::vector<Tensor> outs, runner->run({input}));
  r.logits = outs.at(0);
  r.maxAbsDiff = maxAbsDiff(r.logits, r.expected);
  return r;
}

} // namespace vitc::test
