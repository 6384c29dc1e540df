// An ONNX file's own tensors as a weight source.
#include <climits>
#include <map>

#include "frontend/onnx/onnx_file.h"
#include "frontend/onnx/onnx_import.h"
#include "support/files.h"

namespace vitc::onnximport {
namespace {

class OnnxWeights : public formats::WeightSource {
public:
  OnnxWeights(std::string path, std::shared_ptr<onnx::ModelProto> model)
      : path_(std::move(path)), model_(std::move(model)) {
    const onnx::GraphProto &g = model_->graph();
    for (const onnx::TensorProto &t : g.initializer())
      if (isWeightTensor(t))
        tensors_.emplace(t.name(), &t);
    // Constant nodes whose tensors the importer made parameters, under their output's name.
    for (const onnx::NodeProto &node : g.node()) {
      if (node.op_type() != "Constant" || node.output_size() != 1)
        continue;
      for (const onnx::AttributeProto &a : node.attribute())
        if (a.name() == "value" && a.has_t() && isWeightTensor(a.t()))
          tensors_.emplace(node.output(0), &a.t());
    }
  }

  Expected<Tensor> load(const TensorSpec &param) override {
    auto it = tensors_.find(param.name);
    if (it == tensors_.end()) {
      noteMissing(fmt::format("'{}' (shape {})", param.name, shapeString(param.shape)));
      return makeError(Loc::inFile(path_), "no tensor '{}'", param.name);
    }
    markUsed(param.name);
    return floatTensor(*it->second, path_, fmt::format("tensor '{}'", param.name));
  }

  std::string describe() const override { return path_; }
  std::string path() const override { return path_; }
  // An ONNX file's initializers belong to its graph: one that the compiled program does not read
  // (folded into a constant, or dead after the exporter's own deduplication) is no sign that the
  // file was meant for another model, so none counts as unused.
  std::vector<std::string> tensorNames() const override { return {}; }

private:
  std::string path_;
  std::shared_ptr<onnx::ModelProto> model_;
  std::map<std::string, const onnx::TensorProto *> tensors_;
};

} // namespace

Expected<std::unique_ptr<formats::WeightSource>> openOnnxWeights(const std::string &path) {
  VITC_ASSIGN(std::shared_ptr<onnx::ModelProto> model, readModel(path));
  return std::unique_ptr<formats::WeightSource>(
      std::make_unique<OnnxWeights>(path, std::move(model)));
}

Expected<Tensor> readTensorProtoFile(const std::string &path) {
  VITC_ASSIGN(std::string bytes, readFile(path));
  onnx::TensorProto t;
  if (bytes.size() > static_cast<size_t>(INT_MAX) ||
      !t.ParseFromArray(bytes.data(), static_cast<int>(bytes.size())))
    return makeError(Loc::inFile(path), "not a serialized ONNX TensorProto");
  return floatTensor(t, path, "tensor");
}

} // namespace vitc::onnximport
