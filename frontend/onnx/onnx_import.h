// Importing ONNX models: the graph becomes a vitc module, its initializers the weights.
//
// A `.onnx` file (as torch.onnx.export writes it) is parsed with ONNX's own protobuf classes,
// checked with `onnx::checker` and run through ONNX shape inference; then every node is imported
// into IR ops with static shapes. Shape computations (Shape, Gather, Concat, ... on shapes) fold
// at import time. A dynamic first input dimension takes the batch given; any other dynamic size,
// or a shape that only the run would know, is an error. Float initializers (and Constant nodes)
// with more than one element become `param`s under their ONNX names, so that the file brings its
// own weights (`openOnnxWeights`) and `--weights` may replace them by name; one-element constants
// (the 2 of a Pow, an epsilon, a scale) are folded into the ops. Every problem is one line
// naming the file, and the node (its name and op type) where there is one.
//
// No protobuf type crosses this header.
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "frontend/formats/bind.h"
#include "ir/module.h"
#include "support/tensor.h"

namespace vitc::onnximport {

// The model in the file at `path`, built for `batch` images where its batch is dynamic.
Expected<std::unique_ptr<ir::Module>> importOnnxFile(const std::string &path, int64_t batch);

// The same from bytes already read; `path` names them in errors and locates external data.
Expected<std::unique_ptr<ir::Module>> importOnnxBytes(std::string_view bytes,
                                                      const std::string &path, int64_t batch);

// The initializers (and Constant-node tensors) of an ONNX file as weights, by their ONNX names;
// external-data files are read beside the model.
Expected<std::unique_ptr<formats::WeightSource>> openOnnxWeights(const std::string &path);

// The ONNX op types the importer takes (of the default domain), sorted.
std::vector<std::string> supportedOpTypes();

// One serialized TensorProto (the `input_0.pb` of ONNX's node tests) as float32.
Expected<Tensor> readTensorProtoFile(const std::string &path);

} // namespace vitc::onnximport
