// Weight sources: tensors the model does not use, missing ones, dtypes a weight may not have, a
// big_vision member declaring a huge array, NaN and Inf, and a file truncated while mapped.
#include <cmath>
#include <fcntl.h>
#include <filesystem>
#include <fstream>
#include <functional>
#include <set>
#include <unistd.h>

#include <gtest/gtest.h>

#include "frontend/formats/npy.h"
#include "frontend/formats/npz.h"
#include "frontend/formats/safetensors.h"
#include "frontend/formats/zip_writer.h"
#include "frontend/load_model.h"
#include "frontend/weights.h"
#include "ir/signature.h"
#include "tests/frontend/formats/format_test_util.h"

namespace vitc::frontend {
namespace {

using namespace formats::testing_util;

std::string fixture(const std::string &name, const std::string &file) {
  return std::string(VITC_TEST_DATA) + "/fixtures/" + name + "/" + file;
}

// Every tensor of a safetensors file, by name, in the file's order.
std::vector<std::pair<std::string, Tensor>> tensorsOf(const std::string &path) {
  auto file = formats::SafetensorsFile::open(path);
  EXPECT_TRUE(file) << file.error().str();
  std::vector<std::pair<std::string, Tensor>> out;
  if (!file)
    return out;
  for (const formats::SafetensorsEntry &e : file->entries())
    out.emplace_back(e.name, *file->load(e.name));
  return out;
}

struct WeightsTest : ::testing::Test {
  std::string dir = testDir();
  std::string weights = dir + "/w.safetensors";

  // Loads the parameters of `spec` (batch 1) from `path`.
  Expected<std::vector<Tensor>> load(const std::string &spec, const std::string &path,
                                     WeightLoadOptions options = {}) {
    VITC_ASSIGN(LoadedModel model, loadModel(spec, {1}));
    VITC_ASSIGN(auto source, openWeights(path, model.module.get()));
    return bindWeights(ir::signatureOf(*model.module), *source, options);
  }
  // parallel_tok's tensors with `change` applied, written to `weights`.
  void
  writeChanged(const std::function<void(std::vector<std::pair<std::string, Tensor>> &)> &change) {
    auto tensors = tensorsOf(fixture("parallel_tok", "model.safetensors"));
    ASSERT_FALSE(tensors.empty());
    change(tensors);
    ASSERT_TRUE(formats::writeSafetensors(weights, tensors));
  }
  std::string spec = fixture("parallel_tok", "model.vit");
};

TEST_F(WeightsTest, EveryFixtureTensorIsUsed) {
  // The fixtures match their models exactly: nothing is refused, nothing allowed by a list.
  namespace fs = std::filesystem;
  int checked = 0;
  for (const auto &entry : fs::directory_iterator(std::string(VITC_TEST_DATA) + "/fixtures")) {
    if (!entry.is_directory())
      continue;
    fs::path d = entry.path();
    std::string model = fs::exists(d / "model.vit") ? (d / "model.vit").string() : d.string();
    std::string file = fs::exists(d / "model.npz") ? (d / "model.npz").string()
                                                   : (d / "model.safetensors").string();
    auto r = load(model, file);
    EXPECT_TRUE(r) << d << ": " << r.error().str();
    ++checked;
  }
  EXPECT_GE(checked, 9);
}

TEST_F(WeightsTest, TensorTheModelDoesNotUseIsRefusedUnlessAllowed) {
  writeChanged([](auto &t) { t.emplace_back("extra.weight", tensorOf({2}, {1, 2})); });
  EXPECT_TRUE(failsWith(load(spec, weights), weights,
                        "the file holds 1 tensor the model does not use: 'extra.weight' "
                        "(--allow-unused-weights runs anyway)"));
  auto allowed = load(spec, weights, {.allowUnused = true});
  EXPECT_TRUE(allowed) << allowed.error().str();
}

TEST_F(WeightsTest, MissingAndUnusedTensorsAreReportedTogether) {
  std::string renamed;
  writeChanged([&](auto &t) {
    renamed = t[0].first;
    t[0].first = "renamed." + renamed;
  });
  auto r = load(spec, weights);
  ASSERT_FALSE(r);
  std::string message = r.error().str();
  EXPECT_NE(message.find(weights + ": error: missing tensor '" + renamed + "' (shape"),
            std::string::npos)
      << message;
  EXPECT_NE(
      message.find("; the file holds 1 tensor the model does not use: 'renamed." + renamed + "'"),
      std::string::npos)
      << message;
  EXPECT_EQ(message.find('\n'), std::string::npos);
}

// bindWeights against a signature of its own: values in the signature's order, and every kind of
// mismatch named in one line, shapes first.
struct BindWeightsTest : WeightsTest {
  static TensorSpec param(std::string name, Shape shape) {
    Sharding replicated = Sharding::replicated(shape.size());
    return TensorSpec{std::move(name), DType::F32, std::move(shape), replicated};
  }
  Signature sig{Mesh::single(), {param("b", {3}), param("a", {2})}, {}, {}};
  Expected<std::vector<Tensor>> bind(WeightLoadOptions options = {}) {
    VITC_ASSIGN(auto source, openWeights(weights));
    return bindWeights(sig, *source, options);
  }
};

TEST_F(BindWeightsTest, ReturnsTheValuesInSignatureOrder) {
  ASSERT_TRUE(formats::writeSafetensors(
      weights, {{"a", tensorOf({2}, {1, 2})}, {"b", tensorOf({3}, {3, 4, 5})}}));
  auto r = bind();
  ASSERT_TRUE(r) << r.error().str();
  ASSERT_EQ(r->size(), 2u);
  EXPECT_EQ((*r)[0].shape(), (Shape{3}));
  EXPECT_EQ((*r)[0].data()[2], 5.0f);
  EXPECT_EQ((*r)[1].shape(), (Shape{2}));
  EXPECT_EQ((*r)[1].data()[0], 1.0f);
}

TEST_F(BindWeightsTest, MisshapedMissingAndUnusedTensorsAreReportedTogether) {
  sig.params.push_back(param("c", {4}));
  ASSERT_TRUE(formats::writeSafetensors(weights, {{"a", tensorOf({5}, {1, 2, 3, 4, 5})},
                                                  {"c", tensorOf({4}, {1, 2, 3, 4})},
                                                  {"extra", tensorOf({1}, {1})}}));
  auto r = bind();
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().str(), weights + ": error: tensor 'a' has shape [5], the model needs [2]; "
                                       "missing tensor 'b' (shape [3]); the file holds 1 tensor "
                                       "the model does not use: 'extra' (--allow-unused-weights "
                                       "runs anyway)");
  // Allowing unused tensors leaves the other two.
  auto allowed = bind({.allowUnused = true});
  ASSERT_FALSE(allowed);
  EXPECT_EQ(allowed.error().str(), weights + ": error: tensor 'a' has shape [5], the model needs "
                                             "[2]; missing tensor 'b' (shape [3])");
}

TEST_F(BindWeightsTest, ManyMisshapedTensorsAreCounted) {
  std::vector<std::pair<std::string, Tensor>> tensors;
  sig.params.clear();
  for (const char *name : {"p", "q", "r", "s", "t"}) {
    sig.params.push_back(param(name, {2}));
    tensors.emplace_back(name, tensorOf({1}, {1}));
  }
  ASSERT_TRUE(formats::writeSafetensors(weights, tensors));
  auto r = bind();
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().str(), weights + ": error: tensor 'p' has shape [1], the model needs [2]; "
                                       "tensor 'q' has shape [1], the model needs [2]; tensor 'r' "
                                       "has shape [1], the model needs [2] and 2 more");
}

// Random weights need the frontend module only to know its LayerNorm scales, which they draw near
// 1; opened with the module, they give what randomTensor gives for each of its params.
TEST_F(WeightsTest, RandomWeightsDrawTheModulesLayerNormScalesNearOne) {
  auto model = loadModel(spec, {1});
  ASSERT_TRUE(model) << model.error().str();
  const ir::Module &m = *model->module;
  auto source = openWeights("random:4", &m);
  ASSERT_TRUE(source) << source.error().str();
  auto values = bindWeights(ir::signatureOf(m), **source);
  ASSERT_TRUE(values) << values.error().str();
  std::set<std::string> scales = layerNormScales(m);
  EXPECT_GE(scales.size(), 3u); // one per block and the final LayerNorm at least
  Signature sig = ir::signatureOf(m);
  for (size_t i = 0; i < sig.params.size(); ++i) {
    const std::string &name = sig.params[i].name;
    const Tensor &t = (*values)[i];
    Tensor expected = randomTensor(sig.params[i], scales.contains(name), 4);
    ASSERT_EQ(t.shape(), expected.shape()) << name;
    EXPECT_TRUE(std::equal(t.data(), t.data() + t.numel(), expected.data())) << name;
    if (!scales.contains(name))
      continue;
    double sum = 0;
    for (int64_t k = 0; k < t.numel(); ++k)
      sum += t.data()[k];
    EXPECT_NEAR(sum / static_cast<double>(t.numel()), 1.0, 0.1) << name;
  }
  // Without the module, a scale is drawn as any other vector: near 0.
  auto blind = openWeights("random:4");
  ASSERT_TRUE(blind);
  const TensorSpec *scale = sig.param(*scales.begin());
  ASSERT_NE(scale, nullptr);
  auto drawn = (*blind)->load(*scale);
  ASSERT_TRUE(drawn);
  EXPECT_LT(std::abs(drawn->data()[0]), 0.5f);
}

TEST_F(WeightsTest, QkvBiasesUnderASpecWithoutThemAreRefused) {
  std::string text = readBytes(spec);
  size_t at = text.find("qkv = true");
  ASSERT_NE(at, std::string::npos);
  text.replace(at, 10, "qkv = false");
  std::string noQkv = dir + "/no_qkv.vit";
  writeBytes(noQkv, text);
  auto r = load(noQkv, fixture("parallel_tok", "model.safetensors"));
  ASSERT_FALSE(r);
  // Two layers of query, key and value biases: the first three named, the count of the rest.
  EXPECT_TRUE(failsWith(r, fixture("parallel_tok", "model.safetensors"),
                        "the file holds 6 tensors the model does not use: "));
  EXPECT_NE(r.error().str().find(".bias' and 3 more"), std::string::npos) << r.error().str();
}

TEST_F(WeightsTest, HuggingFacePoolerIsAKnownExtra) {
  EXPECT_TRUE(isKnownExtraTensor("pooler.dense.weight"));
  EXPECT_TRUE(isKnownExtraTensor("vit.pooler.dense.bias"));
  EXPECT_FALSE(isKnownExtraTensor("vit.encoder.pooler"));
  writeChanged([](auto &t) {
    t.emplace_back("vit.pooler.dense.weight", tensorOf({1}, {1}));
    t.emplace_back("vit.pooler.dense.bias", tensorOf({1}, {1}));
  });
  auto r = load(spec, weights);
  EXPECT_TRUE(r) << r.error().str();
}

TEST_F(WeightsTest, IntegerTensorIsRefusedNamingItsDtype) {
  std::string name;
  writeChanged([&](auto &t) { name = t[0].first; });
  // Relabel the first tensor's F32 data as I32 (the same size): the header is JSON with sorted
  // keys, so the tensor's "dtype" is the first one after its name.
  std::string bytes = readBytes(weights);
  size_t at = bytes.find("\"F32\"", bytes.find("\"" + name + "\""));
  ASSERT_NE(at, std::string::npos);
  bytes.replace(at, 5, "\"I32\"");
  writeBytes(weights, bytes);
  EXPECT_TRUE(failsWith(load(spec, weights), weights,
                        "tensor '" + name + "' has dtype I32; weights must be floating point"));
}

TEST_F(WeightsTest, BigVisionMemberDeclaringAHugeArrayIsRefusedFromItsHeader) {
  // bv_tok's archive with the final LayerNorm scale (64 values) replaced by a deflated member that
  // declares 2^26 of them: 256 MiB from about 1.5 MiB. It must be refused from its header,
  // naming what the model wants, not inflated and then compared.
  auto npz = formats::NpzFile::open(fixture("bv_tok", "model.npz"));
  ASSERT_TRUE(npz) << npz.error().str();
  std::string path = dir + "/huge.npz";
  const int64_t huge = int64_t(1) << 26;
  std::string zeros(size_t(1) << 24, '\0');
  std::vector<std::pair<std::string, Tensor>> kept;
  for (const std::string &name : npz->names())
    if (name != "Transformer/encoder_norm/scale")
      kept.emplace_back(name, *npz->load(name));
  {
    auto zip = formats::ZipWriter::create(path, {.deflate = true});
    ASSERT_TRUE(zip) << zip.error().str();
    std::string header = formats::npyHeader({huge});
    std::vector<std::string_view> parts{header};
    for (size_t done = 0; done < size_t(huge) * 4; done += zeros.size())
      parts.push_back(zeros);
    ASSERT_TRUE(zip->add("Transformer/encoder_norm/scale.npy", parts));
    std::vector<std::string> headers;
    headers.reserve(kept.size());
    for (const auto &[name, t] : kept) {
      headers.push_back(formats::npyHeader(t.shape()));
      std::string_view data(reinterpret_cast<const char *>(t.data()),
                            static_cast<size_t>(t.numel()) * sizeof(float));
      ASSERT_TRUE(zip->add(name + ".npy", {headers.back(), data}));
    }
    ASSERT_TRUE(zip->commit());
  }
  EXPECT_LT(readBytes(path).size(), size_t(huge) * 4 / 64); // small file, huge array
  EXPECT_TRUE(failsWith(load(fixture("bv_tok", "model.vit"), path), path,
                        "member 'Transformer/encoder_norm/scale.npy' declares shape [67108864], "
                        "more elements than the model's 'vit.layernorm.weight' [64] holds"));
}

TEST(NonFiniteWarning, NamesTheFirstBadIndexAndTheCount) {
  float nan = std::nanf(""), inf = INFINITY;
  EXPECT_EQ(nonFiniteWarning("w.safetensors", "a", tensorOf({2, 3}, {0, 1, 2, 3, 4, 5})),
            std::nullopt);
  EXPECT_EQ(nonFiniteWarning("w.safetensors", "a", tensorOf({2, 3}, {0, 1, 2, 3, nan, inf})),
            "w.safetensors: warning: tensor 'a' holds NaN at index [1, 1] (2 non-finite values in "
            "all)");
  EXPECT_EQ(nonFiniteWarning("x.npy", "pixels", tensorOf({1, 1, 2, 2}, {0, -inf, 0, 0})),
            "x.npy: warning: tensor 'pixels' holds -Inf at index [0, 0, 0, 1] (1 non-finite value "
            "in all)");
}

// A file truncated after it was mapped: the read past its new end is a SIGBUS, which must end
// the process with one line naming the file, not "Bus error".
struct TruncatedWhileMapped : WeightsTest {
  // A safetensors file whose F32 tensor lies well past the first page.
  void writeLargeFile() {
    ASSERT_TRUE(formats::writeSafetensors(weights, {{"big", Tensor::zeros({1 << 16})}}));
  }
  void truncate() { ASSERT_EQ(::truncate(weights.c_str(), 0), 0); }
};

const char *kChanged =
    "w\\.safetensors: error: the file changed \\(was truncated\\) while vitc was "
    "reading it";

TEST_F(TruncatedWhileMapped, ReadingABorrowedTensorSaysWhichFileChanged) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  writeLargeFile();
  EXPECT_EXIT(
      {
        auto file = formats::SafetensorsFile::open(weights);
        auto t = file->load("big"); // F32: borrowed from the mapping, nothing read yet
        truncate();
        volatile float sum = 0;
        for (int64_t i = 0; i < t->numel(); i += 1024)
          sum = sum + t->data()[i];
        std::exit(0);
      },
      ::testing::ExitedWithCode(1), kChanged);
}

TEST_F(TruncatedWhileMapped, ConvertingATensorSaysWhichFileChanged) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  writeLargeFile();
  // Relabel the tensor as F16 (twice the elements in the same bytes): loading it converts from
  // the mapping.
  std::string bytes = readBytes(weights);
  size_t dtype = bytes.find("\"F32\"");
  size_t shape = bytes.find("[65536]");
  ASSERT_NE(dtype, std::string::npos);
  ASSERT_NE(shape, std::string::npos);
  bytes.replace(shape, 7, "[131072]");
  bytes.replace(dtype, 5, "\"F16\"");
  // The header grew by one byte: the 8-byte length in front says so.
  bytes[0] = static_cast<char>(bytes[0] + 1);
  writeBytes(weights, bytes);
  ASSERT_TRUE(formats::SafetensorsFile::open(weights));
  EXPECT_EXIT(
      {
        auto file = formats::SafetensorsFile::open(weights);
        truncate();
        auto t = file->load("big");
        std::exit(t ? 0 : 2);
      },
      ::testing::ExitedWithCode(1), kChanged);
}

} // namespace
} // namespace vitc::frontend
