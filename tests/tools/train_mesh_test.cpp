// `vitc train --mesh`: a sharded training step writes what the single-device step writes (one SGD
// step, three AdamW steps) on every mesh of the test set, threads and MPI, and PyTorch's numbers;
// micro-batches accumulate to the whole batch's step; checkpoints move between meshes; a mesh that
// does not divide the model is refused.
#include <algorithm>
#include <filesystem>
#include <fstream>
#include <map>
#include <regex>

#include <gtest/gtest.h>

#include "frontend/formats/npz.h"
#include "tests/common/subprocess.h"
#include "tests/common/training.h"

namespace vitc {
namespace {

using test::expectUpdates;
using test::fixture;
using test::fixtureModel;
using test::makeTempDir;
using test::readAll;
using test::runVitc;

// The arguments of a run of `optimizer` on a fixture's data from its weights: one SGD step at lr
// 0.5, or three AdamW steps at lr 1e-2 with decoupled decay (the fixtures' recipes).
std::vector<std::string> trainArgs(const std::string &name, const std::string &optimizer,
                                   const std::string &out) {
  bool sgd = optimizer == "sgd";
  return {"train",
          fixtureModel(name),
          "--data",
          fixture(name, "train.npz"),
          "--weights",
          fixture(name, "model.safetensors"),
          "--steps",
          sgd ? "1" : "3",
          "--batch",
          "2",
          "--optimizer",
          optimizer,
          "--lr",
          sgd ? "0.5" : "1e-2",
          "--weight-decay",
          sgd ? "0" : "0.1",
          "--seed",
          "3",
          "-o",
          out};
}

std::vector<std::string> with(std::vector<std::string> args, const std::vector<std::string> &more) {
  args.insert(args.end(), more.begin(), more.end());
  return args;
}

// The single-device result of `optimizer` on a fixture, computed once per test program.
const std::string &reference(const std::string &name, const std::string &optimizer) {
  static std::map<std::string, std::string> made;
  std::string &path = made[name + optimizer];
  if (path.empty()) {
    std::string dir = makeTempDir("train_mesh_ref_" + name + optimizer);
    auto r = runVitc(trainArgs(name, optimizer, dir + "/out.safetensors"));
    EXPECT_EQ(r.exit, 0) << r.err;
    path = dir + "/out.safetensors";
  }
  return path;
}

// The issue's bar: within 1e-5 of the update of every entry for SGD, whose step is linear in the
// gradient. AdamW divides each gradient entry by its own size, which turns the rounding of a
// gradient summed in another order (over devices instead of in one loop) into a relative change
// of the step as large as the entry is small against its tensor's largest: 1e-5 of the update
// holds for entries at least 0.1 of the largest, 1e-4 for the rest above 1e-3 of it, and rounding
// noise (test::adamwNoise) may move by a few lr.
void expectSameAs(const std::string &name, const std::string &optimizer, const std::string &wanted,
                  const std::string &got) {
  auto initial = readAll(fixture(name, "model.safetensors"));
  auto want = readAll(wanted);
  auto trained = readAll(got);
  // The floor is the rounding of a stored weight (1e-7 is a few units in the last place of the
  // fixtures' weights): the key biases' updates are that rounding alone.
  if (optimizer == "sgd") {
    expectUpdates(initial, trained, want, 1e-5, 1e-7, 0,
                  [](const std::string &, int64_t) { return false; });
    return;
  }
  expectUpdates(initial, trained, want, 1e-5, 1e-7, 5e-2, test::adamwNoise(name, 0.1));
  expectUpdates(initial, trained, want, 1e-4, 1e-7, 5e-2, test::adamwNoise(name, 1e-3));
}

void expectSameAsOneDevice(const std::string &name, const std::string &optimizer,
                           const std::string &got) {
  expectSameAs(name, optimizer, reference(name, optimizer), got);
}

struct MeshCase {
  const char *fixture;
  const char *mesh;
  const char *optimizer;
};

class TrainMesh : public ::testing::TestWithParam<MeshCase> {};

TEST_P(TrainMesh, EqualsOneDeviceAndPyTorch) {
  const MeshCase &c = GetParam();
  std::string dir = makeTempDir(std::string("train_mesh_") + c.fixture + c.optimizer);
  std::string out = dir + "/out.safetensors";
  auto r = runVitc(with(trainArgs(c.fixture, c.optimizer, out), {"--mesh", c.mesh}));
  ASSERT_EQ(r.exit, 0) << r.err;
  // The data-parallel gradients are reduced once per step, and the passes say how.
  if (std::string(c.mesh).find("data=2") != std::string::npos) {
    EXPECT_NE(r.err.find("data-parallel gradients all-reduced"), std::string::npos) << r.err;
  }
  expectSameAsOneDevice(c.fixture, c.optimizer, out);
  // And the fixtures' PyTorch steps, as the single-device tests check them.
  auto initial = readAll(fixture(c.fixture, "model.safetensors"));
  if (std::string(c.optimizer) == "sgd")
    expectUpdates(initial, readAll(out), readAll(fixture(c.fixture, "sgd_step.safetensors")), 1e-4,
                  1e-7, 0, [](const std::string &, int64_t) { return false; });
  else
    expectUpdates(initial, readAll(out), readAll(fixture(c.fixture, "adamw_3steps.safetensors")),
                  1e-3, 1e-6, 5e-2, test::adamwNoise(c.fixture));
}

std::vector<MeshCase> meshCases() {
  std::vector<MeshCase> cases;
  for (const char *f : {"parallel_map", "tv_tok"})
    for (const char *mesh :
         {"data=1,model=2", "data=2,model=1", "data=2,model=2", "data=1,model=4"})
      for (const char *o : {"sgd", "adamw"})
        cases.push_back({f, mesh, o});
  return cases;
}

INSTANTIATE_TEST_SUITE_P(Threads, TrainMesh, ::testing::ValuesIn(meshCases()),
                         [](const auto &info) {
                           std::string mesh = info.param.mesh;
                           std::replace(mesh.begin(), mesh.end(), '=', '_');
                           std::replace(mesh.begin(), mesh.end(), ',', '_');
                           return std::string(info.param.fixture) + "_" + mesh + "_" +
                                  info.param.optimizer;
                         });

// One process per device under mpirun, on a 2x2 mesh: rank 0 writes what one device writes.
class TrainMeshMpi : public ::testing::TestWithParam<const char *> {};

TEST_P(TrainMeshMpi, TwoByTwoEqualsOneDevice) {
  const char *optimizer = GetParam();
  std::string dir = makeTempDir(std::string("train_mesh_mpi_") + optimizer);
  std::string out = dir + "/out.safetensors";
  std::vector<std::string> args{"mpirun",   "--allow-run-as-root", "--oversubscribe", "-np", "4",
                                VITC_BINARY};
  std::vector<std::string> train = trainArgs("parallel_map", optimizer, out);
  args.insert(args.end(), train.begin(), train.end());
  args.insert(args.end(), {"--mesh", "data=2,model=2", "--runtime=mpi", "--threads", "1"});
  auto r = test::runCommand(args, {}, 280);
  ASSERT_EQ(r.exit, 0) << r.err;
  expectSameAsOneDevice("parallel_map", optimizer, out);
}

INSTANTIATE_TEST_SUITE_P(Optimizers, TrainMeshMpi, ::testing::Values("sgd", "adamw"),
                         [](const auto &info) { return std::string(info.param); });

// Checkpoints hold whole tensors under their names, whatever the mesh: a run on a 2x2 mesh resumes
// on one device, and the reverse, and both end where the uninterrupted one-device run ends.
TEST(TrainMesh, CheckpointsMoveBetweenMeshes) {
  std::string dir = makeTempDir("train_mesh_resume");
  auto args = [&](const std::string &out, const std::string &steps) {
    std::vector<std::string> a = trainArgs("parallel_map", "adamw", out);
    auto it = std::find(a.begin(), a.end(), "--steps");
    *(it + 1) = steps;
    return a;
  };
  std::string whole = dir + "/whole.safetensors";
  ASSERT_EQ(runVitc(args(whole, "3")).exit, 0);
  for (auto [first, second] :
       {std::pair<const char *, const char *>{"data=2,model=2", ""}, {"", "data=2,model=2"}}) {
    std::string tag = std::string(first).empty() ? "one_first" : "mesh_first";
    std::string ckpt = dir + "/" + tag + ".ckpt.safetensors";
    std::vector<std::string> a = with(args(dir + "/" + tag + "_part.safetensors", "3"),
                                      {"--checkpoint-every", "2", "--checkpoint", ckpt});
    if (*first)
      a = with(a, {"--mesh", first});
    auto r = runVitc(a);
    ASSERT_EQ(r.exit, 0) << r.err;
    std::string out = dir + "/" + tag + "_resumed.safetensors";
    std::vector<std::string> b = with(args(out, "3"), {"--resume", ckpt});
    if (*second)
      b = with(b, {"--mesh", second});
    r = runVitc(b);
    ASSERT_EQ(r.exit, 0) << r.err;
    auto initial = readAll(fixture("parallel_map", "model.safetensors"));
    expectUpdates(initial, readAll(out), readAll(whole), 1e-4, 1e-7, 5e-2,
                  test::adamwNoise("parallel_map"));
  }
}

// Parameters also split over the data axis (ViT-22B's): their gradients are reduce-scattered and
// each device updates its shard of them and of their AdamW state; the result is unchanged.
TEST(TrainMesh, ParamsOverDataReduceScatterTheirGradients) {
  std::string dir = makeTempDir("train_mesh_pod");
  std::string out = dir + "/out.safetensors";
  auto r = runVitc(with(
      trainArgs("parallel_map", "adamw", out),
      {"--mesh", "data=2,model=2", "--pass-option", "layout.params-over-data=true", "--pass-option",
       "layout.params-over-data-min-bytes=4096", "--print-after=propagate-sharding"}));
  ASSERT_EQ(r.exit, 0) << r.err;
  EXPECT_EQ(r.err.find(" 0 reduce-scattered"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("reduce-scattered over 'data'"), std::string::npos) << r.err;
  // The AdamW moments are stored as their weight is, split over both axes: not whole on every
  // device and gathered after each update.
  std::smatch moment;
  ASSERT_TRUE(std::regex_search(
      r.err, moment,
      std::regex(
          R"(= param \{name = "vit.encoder.layer.0.intermediate.dense.weight/adamw.m"\} : (\S+))")))
      << r.err;
  EXPECT_NE(moment[1].str().find("@model"), std::string::npos) << moment[1];
  EXPECT_NE(moment[1].str().find("@data"), std::string::npos) << moment[1];
  expectSameAsOneDevice("parallel_map", "adamw", out);
}

// The ViT-22B-style model exported to ONNX (its MAP head's probe expanded over the batch, so that
// one weight gradient contracts a batch-split gradient with a whole value) trains on the mesh as
// on one device: one SGD step within 1e-5 of the update.
TEST(TrainMesh, AnImportedModelTrainsAsOnOneDevice) {
  std::string dir = makeTempDir("train_mesh_onnx");
  auto run = [&](const std::string &out, const std::string &lr, const std::string &mesh) {
    auto r = runVitc({"train", fixture("parallel_map", "model.onnx"), "--data",
                      fixture("parallel_map", "train.npz"), "--steps", "1", "--batch", "2",
                      "--optimizer", "sgd", "--lr", lr, "--seed", "3", "--mesh", mesh, "-o", out});
    EXPECT_EQ(r.exit, 0) << r.err;
    return readAll(out);
  };
  // A step at lr 0 writes the model's own weights under their ONNX names.
  auto initial = run(dir + "/initial.safetensors", "0", "data=1,model=1");
  auto one = run(dir + "/one.safetensors", "0.5", "data=1,model=1");
  for (const char *mesh : {"data=2,model=1", "data=2,model=2"}) {
    SCOPED_TRACE(mesh);
    expectUpdates(initial, run(dir + "/mesh.safetensors", "0.5", mesh), one, 1e-5, 1e-7, 0,
                  [](const std::string &, int64_t) { return false; });
  }
}

// The fixture's two training images twice over (the copies negated, their labels reversed): a
// batch of 4, which two micro-batches and a data axis of 2 can split together.
std::string fourImages(const std::string &name, const std::string &dir) {
  auto npz = formats::NpzFile::open(fixture(name, "train.npz"));
  EXPECT_TRUE(npz) << (npz ? "" : npz.error().str());
  Tensor images = *npz->load("images"), labels = *npz->load("labels");
  Shape shape = images.shape();
  shape[0] *= 2;
  Tensor allImages = Tensor::zeros(shape), allLabels = Tensor::zeros({2 * labels.numel()});
  float *dst = allImages.mutableData();
  std::copy_n(images.data(), images.numel(), dst);
  std::transform(images.data(), images.data() + images.numel(), dst + images.numel(),
                 [](float x) { return -x; });
  std::copy_n(labels.data(), labels.numel(), allLabels.mutableData());
  std::reverse_copy(labels.data(), labels.data() + labels.numel(),
                    allLabels.mutableData() + labels.numel());
  std::string path = dir + "/train4.npz";
  EXPECT_TRUE(formats::writeNpz(path, {{"images", allImages}, {"labels", allLabels}}));
  return path;
}

// The number of data-parallel gradient all-reduces the sharding passes report.
int64_t gradientAllReduces(const std::string &err) {
  size_t at = err.find(" data-parallel gradients all-reduced");
  EXPECT_NE(at, std::string::npos) << err;
  if (at == std::string::npos)
    return -1;
  size_t start = err.rfind(' ', at - 1) + 1;
  return std::stoll(err.substr(start, at - start));
}

// Micro-batches accumulate gradients: the batch in parts, one update per step, is the whole
// batch's step, on one device and over the data and model axes; each gradient is still reduced
// once per step, not once per micro-batch.
TEST(TrainMesh, MicrobatchesAccumulateTheWholeBatchsGradient) {
  std::string dir = makeTempDir("train_mesh_micro");
  // One SGD step of the fixture's batch of 2 as two micro-batches of 1: PyTorch's step.
  {
    std::string out = dir + "/sgd.safetensors";
    auto r = runVitc(
        with(trainArgs("parallel_map", "sgd", out), {"--pass-option", "layout.microbatches=2"}));
    ASSERT_EQ(r.exit, 0) << r.err;
    expectSameAsOneDevice("parallel_map", "sgd", out);
    expectUpdates(readAll(fixture("parallel_map", "model.safetensors")), readAll(out),
                  readAll(fixture("parallel_map", "sgd_step.safetensors")), 1e-4, 1e-7, 0,
                  [](const std::string &, int64_t) { return false; });
  }
  // Two SGD steps of a batch of 4. (SGD, whose step is linear in the gradient, shows the
  // accumulation at the issue's 1e-5 of the update; AdamW's elementwise normalization would
  // magnify the rounding of small gradient entries that summing in another order changes, and the
  // fixtures' map of those entries is for their own batch of 2.)
  std::string data = fourImages("parallel_map", dir);
  auto args = [&](const std::string &out, const std::vector<std::string> &more) {
    std::vector<std::string> a = trainArgs("parallel_map", "sgd", out);
    *(std::find(a.begin(), a.end(), "--data") + 1) = data;
    *(std::find(a.begin(), a.end(), "--batch") + 1) = "4";
    *(std::find(a.begin(), a.end(), "--steps") + 1) = "2";
    return with(a, more);
  };
  std::string whole = dir + "/whole.safetensors";
  ASSERT_EQ(runVitc(args(whole, {})).exit, 0);
  std::string dataParallel = dir + "/data2.safetensors";
  auto r = runVitc(args(dataParallel, {"--mesh", "data=2,model=1"}));
  ASSERT_EQ(r.exit, 0) << r.err;
  int64_t reduces = gradientAllReduces(r.err);
  struct Case {
    const char *mesh, *micro;
  };
  for (Case c : {Case{"data=1,model=1", "2"}, Case{"data=1,model=1", "4"},
                 Case{"data=2,model=1", "2"}, Case{"data=2,model=2", "2"}}) {
    SCOPED_TRACE(std::string(c.mesh) + ", " + c.micro + " micro-batches");
    std::string out = dir + "/" + c.mesh + "_" + c.micro + ".safetensors";
    r = runVitc(args(
        out, {"--mesh", c.mesh, "--pass-option", std::string("layout.microbatches=") + c.micro}));
    ASSERT_EQ(r.exit, 0) << r.err;
    expectSameAs("parallel_map", "sgd", whole, out);
    if (std::string(c.mesh) == "data=2,model=1") {
      EXPECT_EQ(gradientAllReduces(r.err), reduces);
    }
  }
}

// A mesh that does not divide the model, and micro-batches that, with the data axis, do not
// divide the batch, are refused in one line, before anything is written.
TEST(TrainMesh, AMeshThatDoesNotDivideTheModelIsRefused) {
  std::string dir = makeTempDir("train_mesh_bad");
  struct Bad {
    std::vector<std::string> args;
    const char *says;
  };
  for (const Bad &b : {Bad{{"--mesh", "data=4,model=1"}, "does not divide the batch (2)"},
                       Bad{{"--mesh", "data=1,model=3"}, "does not divide width (64)"},
                       Bad{{"--mesh", "data=2,model=1", "--pass-option", "layout.microbatches=2"},
                           "the batch (2) must be a multiple of 4"}}) {
    std::string out = dir + "/out.safetensors";
    auto r = runVitc(with(trainArgs("parallel_map", "sgd", out), b.args));
    EXPECT_EQ(r.exit, 1) << b.says;
    EXPECT_NE(r.err.find(b.says), std::string::npos) << r.err;
    EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
    EXPECT_FALSE(std::filesystem::exists(out));
  }
}

} // namespace
} // namespace vitc
