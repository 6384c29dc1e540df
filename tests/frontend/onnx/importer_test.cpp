// The ONNX importer: fixtures import with their batch, weights come from the file, shapes fold,
// and every malformed or unsupported model is one line naming the file and the node.
#include <filesystem>
#include <fstream>

#include <gtest/gtest.h>
#include <onnx/onnx_pb.h>

#include "frontend/load_model.h"
#include "frontend/onnx/onnx_import.h"
#include "frontend/weights.h"
#include "ir/signature.h"
#include "ir/text.h"
#include "tests/common/subprocess.h"

namespace vitc::onnximport {
namespace {

namespace fs = std::filesystem;

std::string fixture(const std::string &path) {
  return std::string(VITC_TEST_DATA) + "/fixtures/" + path;
}

// A model of one graph input `x` [2, 3] (float), built node by node.
struct ModelBuilder {
  onnx::ModelProto model;
  onnx::GraphProto *g;

  explicit ModelBuilder(int opset = 17, std::vector<int64_t> inputShape = {2, 3}) {
    model.set_ir_version(8);
    model.add_opset_import()->set_version(opset);
    g = model.mutable_graph();
    g->set_name("test");
    onnx::ValueInfoProto *in = g->add_input();
    in->set_name("x");
    auto *tensor = in->mutable_type()->mutable_tensor_type();
    tensor->set_elem_type(onnx::TensorProto::FLOAT);
    for (int64_t d : inputShape) {
      auto *dim = tensor->mutable_shape()->add_dim();
      if (d < 0)
        dim->set_dim_param("batch");
      else
        dim->set_dim_value(d);
    }
  }
  onnx::NodeProto *node(const std::string &type, std::vector<std::string> inputs,
                        std::vector<std::string> outputs, const std::string &name = "") {
    onnx::NodeProto *n = g->add_node();
    n->set_op_type(type);
    n->set_name(name.empty() ? type + "_0" : name);
    for (const std::string &i : inputs)
      n->add_input(i);
    for (const std::string &o : outputs)
      n->add_output(o);
    return n;
  }
  onnx::TensorProto *initializer(const std::string &name, std::vector<int64_t> dims,
                                 std::vector<float> values) {
    onnx::TensorProto *t = g->add_initializer();
    t->set_name(name);
    t->set_data_type(onnx::TensorProto::FLOAT);
    for (int64_t d : dims)
      t->add_dims(d);
    for (float v : values)
      t->add_float_data(v);
    return t;
  }
  void output(const std::string &name, std::vector<int64_t> shape = {2, 3}) {
    onnx::ValueInfoProto *out = g->add_output();
    out->set_name(name);
    auto *tensor = out->mutable_type()->mutable_tensor_type();
    tensor->set_elem_type(onnx::TensorProto::FLOAT);
    tensor->mutable_shape();
    for (int64_t d : shape) {
      auto *dim = tensor->mutable_shape()->add_dim();
      if (d < 0)
        dim->set_dim_param("batch");
      else
        dim->set_dim_value(d);
    }
  }
  std::string bytes() const { return model.SerializeAsString(); }
  std::string write(const std::string &dir, const std::string &file = "m.onnx") const {
    std::string path = dir + "/" + file;
    std::ofstream(path, std::ios::binary) << bytes();
    return path;
  }
};

TensorSpec spec(const std::string &name, Shape shape) {
  TensorSpec s;
  s.name = name;
  s.shape = std::move(shape);
  return s;
}

Expected<std::unique_ptr<ir::Module>> import(const ModelBuilder &m, int64_t batch = 1) {
  return importOnnxBytes(m.bytes(), "m.onnx", batch);
}

TEST(OnnxImport, ADynamicBatchTakesTheOneAskedFor) {
  auto m = importOnnxFile(fixture("tv_tok/model_opset17.onnx"), 3);
  ASSERT_TRUE(m) << m.error().str();
  EXPECT_EQ((*m)->inputs()[0]->shape(), (Shape{3, 3, 32, 32}));
  EXPECT_EQ((*m)->output()->operand(0)->shape(), (Shape{3, 10}));
}

TEST(OnnxImport, AFixedBatchIsKept) {
  auto m = importOnnxFile(fixture("parallel_map/model.onnx"), 5);
  ASSERT_TRUE(m) << m.error().str();
  EXPECT_EQ((*m)->inputs()[0]->shape(), (Shape{2, 3, 32, 32}));
}

TEST(OnnxImport, InitializersAreParamsUnderTheirOnnxNamesAndTheFileIsTheWeights) {
  auto loaded = frontend::loadModel(fixture("tv_tok/model_opset13.onnx"), {2});
  ASSERT_TRUE(loaded) << loaded.error().str();
  EXPECT_EQ(loaded->format, frontend::ModelFormat::Onnx);
  EXPECT_EQ(loaded->defaultWeights, fixture("tv_tok/model_opset13.onnx"));
  Signature sig = ir::signatureOf(*loaded->module);
  bool found = false;
  for (const TensorSpec &p : sig.params)
    found |= p.name == "conv_proj.weight" && p.shape == Shape{64, 3, 8, 8};
  EXPECT_TRUE(found);
  auto source = frontend::openWeights(loaded->defaultWeights);
  ASSERT_TRUE(source) << source.error().str();
  auto params = frontend::bindWeights(sig, **source);
  ASSERT_TRUE(params) << params.error().str();
  EXPECT_EQ(params->size(), sig.params.size());
}

TEST(OnnxImport, ShapeComputationsFoldAndTheProgramHasNoneLeft) {
  // torchvision's export computes its reshapes from Shape, Gather, Concat, Where, ...
  auto m = importOnnxFile(fixture("tv_tok/model_opset17.onnx"), 2);
  ASSERT_TRUE(m) << m.error().str();
  // What is left of them: the class token's concat, and no op on integers or shapes.
  int concats = 0;
  for (const auto &op : (*m)->ops())
    concats += op->is(ir::OpKind::Concat);
  EXPECT_EQ(concats, 1);
  std::string text = ir::print(**m);
  EXPECT_NE(text.find("patchify"), std::string::npos) << "the patch convolution became patchify";
}

TEST(OnnxImport, ScalarConstantsFoldIntoScaleAndFill) {
  ModelBuilder b;
  onnx::NodeProto *c = b.node("Constant", {}, {"two"});
  onnx::AttributeProto *a = c->add_attribute();
  a->set_name("value_float");
  a->set_type(onnx::AttributeProto::FLOAT);
  a->set_f(2.0f);
  b.node("Div", {"x", "two"}, {"half"});
  b.node("Add", {"half", "two"}, {"y"});
  b.output("y");
  auto m = import(b);
  ASSERT_TRUE(m) << m.error().str();
  std::string text = ir::print(**m);
  EXPECT_NE(text.find("scale %x {factor = 0.5}"), std::string::npos) << text;
  EXPECT_NE(text.find("fill {value = 2.0}"), std::string::npos) << text;
}

// The errors: one line, naming the file, and the node with its op type where there is one.
void expectError(const Expected<std::unique_ptr<ir::Module>> &m, const std::string &text) {
  ASSERT_FALSE(m);
  std::string line = m.error().str();
  EXPECT_NE(line.find(text), std::string::npos) << line;
  EXPECT_EQ(line.find('\n'), std::string::npos) << line;
}

TEST(OnnxImportErrors, AnUnsupportedOpNamesTheNode) {
  ModelBuilder b;
  b.node("Cos", {"x"}, {"y"}, "/block/Cos");
  b.output("y");
  expectError(import(b), "m.onnx: error: node '/block/Cos' (Cos): unsupported op type 'Cos'");
}

TEST(OnnxImportErrors, AShapeOnlyTheRunKnowsIsRefused) {
  // The target shape of the Reshape is a graph input: only the run would know it.
  ModelBuilder b(17, {6});
  onnx::ValueInfoProto *in = b.g->add_input();
  in->set_name("s");
  in->mutable_type()->mutable_tensor_type()->set_elem_type(onnx::TensorProto::INT64);
  in->mutable_type()->mutable_tensor_type()->mutable_shape()->add_dim()->set_dim_value(2);
  b.node("Reshape", {"x", "s"}, {"y"}, "r");
  b.output("y", {2, 3});
  expectError(import(b), "m.onnx: error: input 's' holds INT64: vitc takes float32 inputs, and "
                         "shapes only as constants (it compiles static shapes)");
}

TEST(OnnxImportErrors, ADynamicDimensionOtherThanTheBatchIsRefused) {
  ModelBuilder b(17, {2, -1});
  b.node("Relu", {"x"}, {"y"});
  b.output("y", {2, -1});
  expectError(import(b), "input 'x' has a dynamic dimension 1 ('batch'): vitc compiles static "
                         "shapes");
}

TEST(OnnxImportErrors, AConvolutionThatIsNotAPatchEmbeddingIsRefused) {
  ModelBuilder b(17, {1, 3, 8, 8});
  b.initializer("w", {4, 3, 3, 3}, std::vector<float>(108, 0.5f));
  onnx::NodeProto *n = b.node("Conv", {"x", "w"}, {"y"}, "/conv");
  onnx::AttributeProto *a = n->add_attribute();
  a->set_name("strides");
  a->set_type(onnx::AttributeProto::INTS);
  a->add_ints(1);
  a->add_ints(1);
  b.output("y", {1, 4, 6, 6});
  expectError(import(b), "node '/conv' (Conv): only a patch embedding is supported");
}

TEST(OnnxImportErrors, MalformedBytesAreNotAModel) {
  expectError(importOnnxBytes(std::string("\x08\x07garbage\xff\xff", 11), "bad.onnx", 1),
              "bad.onnx: error: not an ONNX model");
}

TEST(OnnxImportErrors, ACheckerFailureIsOneLine) {
  ModelBuilder b;
  b.node("Relu", {"x"}, {"y"});
  b.node("Relu", {"y"}, {"y"}, "again"); // SSA broken: y is defined twice
  b.output("y");
  expectError(import(b), "m.onnx: error: invalid ONNX model:");
}

TEST(OnnxImportErrors, TheUnusedOutputsOfLayerNormalizationAreRefusedWhenUsed) {
  ModelBuilder b;
  b.initializer("s", {3}, {1, 2, 3});
  b.node("LayerNormalization", {"x", "s"}, {"y", "mean"}, "ln");
  b.output("y");
  expectError(import(b), "node 'ln' (LayerNormalization): the mean and inverse standard "
                         "deviation outputs are not supported");
}

TEST(OnnxImportErrors, MissingExternalDataNamesTheFile) {
  std::string dir = test::makeTempDir("onnx-external");
  ModelBuilder b;
  onnx::TensorProto *w = b.g->add_initializer();
  w->set_name("w");
  w->set_data_type(onnx::TensorProto::FLOAT);
  w->add_dims(3);
  w->set_data_location(onnx::TensorProto::EXTERNAL);
  onnx::StringStringEntryProto *e = w->add_external_data();
  e->set_key("location");
  e->set_value("weights.bin");
  b.node("Mul", {"x", "w"}, {"y"});
  b.output("y");
  std::string path = b.write(dir);
  // ONNX's checker looks for the file: the import names it.
  expectError(importOnnxFile(path, 1), "m.onnx: error: invalid ONNX model: data of TensorProto "
                                       "( tensor name: w) should be stored in " +
                                           dir + "/weights.bin, but it doesn't exist");
  // A file too short for the tensor is refused when the weights are read.
  std::ofstream(dir + "/weights.bin", std::ios::binary) << "abcd";
  auto imported = importOnnxFile(path, 1);
  ASSERT_TRUE(imported) << imported.error().str();
  auto source = openOnnxWeights(path);
  ASSERT_TRUE(source) << source.error().str();
  auto t = (*source)->load(spec("w", {3}));
  ASSERT_FALSE(t);
  EXPECT_NE(t.error().str().find("tensor 'w': holds 4 bytes, but 3 FLOAT elements take 12"),
            std::string::npos)
      << t.error().str();
  // With the whole file there, the weights read from it.
  float values[3] = {1, 2, 3};
  std::ofstream(dir + "/weights.bin", std::ios::binary)
      .write(reinterpret_cast<const char *>(values), sizeof values);
  t = (*source)->load(spec("w", {3}));
  ASSERT_TRUE(t) << t.error().str();
  EXPECT_EQ(t->data()[2], 3.0f);
}

TEST(OnnxImportErrors, ATruncatedFixtureIsRefused) {
  std::ifstream in(fixture("tv_tok/model_opset17.onnx"), std::ios::binary);
  std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  bytes.resize(bytes.size() / 2);
  expectError(importOnnxBytes(bytes, "cut.onnx", 1), "cut.onnx: error: ");
}

} // namespace
} // namespace vitc::onnximport
