// Reading ONNX protobufs: the model (checked, shapes inferred) and the values of its tensors.
//
// Private to frontend/onnx: the only place besides the importer that sees protobuf types.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include <onnx/onnx_pb.h>

#include "support/error.h"
#include "support/tensor.h"

namespace vitc::onnximport {

// Parses, checks (`onnx::checker`) and infers shapes (`onnx::shape_inference`); any exception
// they throw becomes one line naming `path` (and the node, where ONNX names one).
Expected<std::shared_ptr<onnx::ModelProto>> parseModel(std::string_view bytes,
                                                       const std::string &path);
Expected<std::shared_ptr<onnx::ModelProto>> readModel(const std::string &path);

// The values of a tensor known at import time (a Constant, a shape initializer), widened: floats
// as double, integers and booleans as int64.
struct ConstantData {
  Shape shape;
  bool isFloat = false;
  std::vector<double> floats;
  std::vector<int64_t> ints;
  int64_t numel() const { return numElements(shape); }
  double value(int64_t k) const {
    return isFloat ? floats[static_cast<size_t>(k)]
                   : static_cast<double>(ints[static_cast<size_t>(k)]);
  }
  int64_t intValue(int64_t k) const {
    return isFloat ? static_cast<int64_t>(floats[static_cast<size_t>(k)])
                   : ints[static_cast<size_t>(k)];
  }
};

// `modelPath` locates external data (beside the model); `what` names the tensor in errors.
Expected<ConstantData> constantData(const onnx::TensorProto &t, const std::string &modelPath,
                                    const std::string &what);
Expected<Tensor> floatTensor(const onnx::TensorProto &t, const std::string &modelPath,
                             const std::string &what);
Expected<Shape> tensorShape(const onnx::TensorProto &t, const std::string &modelPath,
                            const std::string &what);

// Whether the importer makes `t` a parameter (a floating-point tensor of more than one element)
// rather than folding its value into the ops; the weight source serves exactly these.
bool isWeightTensor(const onnx::TensorProto &t);

// "model.onnx: error: node 'NAME' (OP): message"; an unnamed node is named by its first output.
Error nodeError(const std::string &path, const onnx::NodeProto &node, const std::string &message);

} // namespace vitc::onnximport
