// ONNX nodes to IR ops, with shape computations folded at import time.
#include <algorithm>
#include <cmath>
#include <functional>
#include <map>
#include <set>

#include "frontend/onnx/onnx_file.h"
#include "frontend/onnx/onnx_import.h"
#include "ir/builder.h"
#include "ir/verifier.h"
#include "support/files.h"

namespace vitc::onnximport {
namespace {

using ir::Op;
using ir::OpKind;

// A value while importing: a tensor the program computes, or a constant known now.
struct Value {
  Op *op = nullptr;
  std::shared_ptr<const ConstantData> constant;
  bool present() const { return op || constant; }
  const Shape &shape() const { return op ? op->shape() : constant->shape; }
};

// A node's failure, before it is given the node's name: the message only.
Error fail(std::string message) { return Error(std::move(message)); }
template <typename... Args> Error fail(fmt::format_string<Args...> f, Args &&...args) {
  return Error(fmt::format(f, std::forward<Args>(args)...));
}

// Value names must read back from IR text: ONNX's `/encoder/ln/Add_output_0` becomes
// `encoder.ln.Add_output_0`.
std::string irName(const std::string &onnxName) {
  std::string out;
  for (char c : onnxName) {
    bool keep = std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '.' || c == '-';
    char mapped = keep ? c : (c == '/' ? '.' : '_');
    if (out.empty() && (mapped == '.' || mapped == '_'))
      continue;
    out += mapped;
  }
  // torch.onnx names every node output `<node>_output_0`: the node's name is enough.
  const std::string suffix = "_output_0";
  if (out.size() > suffix.size() &&
      out.compare(out.size() - suffix.size(), suffix.size(), suffix) == 0)
    out.resize(out.size() - suffix.size());
  return out.empty() ? "v" : out;
}

// NumPy broadcasting of two shapes; nullopt when they do not broadcast.
std::optional<Shape> broadcastShapes(const Shape &a, const Shape &b) {
  size_t rank = std::max(a.size(), b.size());
  Shape out(rank, 1);
  for (size_t i = 0; i < rank; ++i) {
    int64_t da = i < a.size() ? a[a.size() - 1 - i] : 1;
    int64_t db = i < b.size() ? b[b.size() - 1 - i] : 1;
    if (da != db && da != 1 && db != 1)
      return std::nullopt;
    out[rank - 1 - i] = da == 1 ? db : da;
  }
  return out;
}

// The flat index into a tensor of shape `from` that element `index` of the broadcast shape reads.
int64_t broadcastIndex(const Shape &from, const Shape &to, int64_t index) {
  int64_t result = 0, stride = 1;
  for (size_t i = 0; i < to.size(); ++i) {
    size_t d = to.size() - 1 - i;
    int64_t coord = index % to[d];
    index /= to[d];
    if (i < from.size()) {
      size_t fd = from.size() - 1 - i;
      if (from[fd] != 1)
        result += coord * stride;
      stride *= from[fd];
    }
  }
  return result;
}

int64_t normalizeAxis(int64_t axis, int64_t rank) { return axis < 0 ? axis + rank : axis; }

class Importer {
public:
  Importer(const onnx::ModelProto &model, std::string path, int64_t batch)
      : model_(model), path_(std::move(path)), batch_(batch),
        module_(std::make_unique<ir::Module>()), b_(*module_) {
    b_.setLoc(Loc::inFile(path_));
    for (const onnx::OperatorSetIdProto &o : model.opset_import())
      if (o.domain().empty() || o.domain() == "ai.onnx")
        opset_ = o.version();
  }

  Expected<std::unique_ptr<ir::Module>> run() {
    const onnx::GraphProto &g = model_.graph();
    module_->name = irName(g.name().empty() ? "onnx" : g.name());
    for (const onnx::TensorProto &t : g.initializer())
      initializers_.emplace(t.name(), &t);
    for (const onnx::ValueInfoProto &in : g.input()) {
      if (initializers_.count(in.name()))
        continue; // older exporters list initializers as inputs too
      VITC_TRY(importInput(in));
    }
    for (const onnx::NodeProto &node : g.node()) {
      if (!node.domain().empty() && node.domain() != "ai.onnx")
        return nodeError(path_, node,
                         fmt::format("operator domain '{}' is not supported", node.domain()));
      if (Status s = importNode(node); !s)
        return s.error().loc().known() ? s.error() : nodeError(path_, node, s.error().message());
    }
    std::vector<Op *> outputs;
    for (const onnx::ValueInfoProto &out : g.output()) {
      VITC_ASSIGN(Value v, lookup(out.name()));
      Expected<Op *> op = tensor(v, out.name());
      if (!op)
        return makeError(Loc::inFile(path_), "graph output '{}': {}", out.name(),
                         op.error().message());
      outputs.push_back(*op);
    }
    if (outputs.empty())
      return makeError(Loc::inFile(path_), "the graph has no outputs");
    b_.output(outputs);
    module_->attrs.set("batch", batch_);
    ir::eraseDeadOps(*module_);
    Diagnostics diags = ir::verify(*module_);
    if (!diags.empty())
      return makeError(Loc::inFile(path_), "imported program does not verify: {}",
                       diags.errors.front().message());
    return std::move(module_);
  }

private:
  // ---- values ----

  Status importInput(const onnx::ValueInfoProto &in) {
    const onnx::TypeProto &type = in.type();
    if (!type.has_tensor_type())
      return makeError(Loc::inFile(path_), "input '{}' is not a tensor", in.name());
    int32_t elem = type.tensor_type().elem_type();
    if (elem != onnx::TensorProto::FLOAT)
      return makeError(
          Loc::inFile(path_),
          "input '{}' holds {}: vitc takes float32 inputs, and shapes only as "
          "constants (it compiles static shapes)",
          in.name(),
          onnx::TensorProto_DataType_IsValid(elem)
              ? onnx::TensorProto_DataType_Name(static_cast<onnx::TensorProto_DataType>(elem))
              : std::to_string(elem));
    if (!type.tensor_type().has_shape())
      return makeError(Loc::inFile(path_), "input '{}' has no shape: vitc compiles static shapes",
                       in.name());
    Shape shape;
    int index = 0;
    for (const onnx::TensorShapeProto::Dimension &d : type.tensor_type().shape().dim()) {
      if (d.has_dim_value() && d.dim_value() > 0) {
        shape.push_back(d.dim_value());
      } else if (index == 0) {
        shape.push_back(batch_); // the batch: as the command line says
      } else {
        return makeError(Loc::inFile(path_),
                         "input '{}' has a dynamic dimension {} ('{}'): vitc compiles static "
                         "shapes; export the model with a fixed size",
                         in.name(), index, d.dim_param());
      }
      ++index;
    }
    Op *op = *b_.tryCreate(OpKind::Input, {}, {{"name", in.name()}}, irName(in.name()),
                           ir::TensorType::of(shape));
    values_[in.name()] = Value{op, nullptr};
    return Status::ok();
  }

  // The value named `name`: computed, a parameter (created on first use) or a constant.
  Expected<Value> lookup(const std::string &name) {
    if (auto it = values_.find(name); it != values_.end())
      return it->second;
    auto init = initializers_.find(name);
    if (init == initializers_.end())
      return fail("value '{}' is not defined before its use", name);
    std::string what = fmt::format("initializer '{}'", name);
    if (isWeightTensor(*init->second)) {
      VITC_ASSIGN(Shape shape, tensorShape(*init->second, path_, what));
      VITC_ASSIGN(Op * p, param(name, shape));
      return values_[name] = Value{p, nullptr};
    }
    VITC_ASSIGN(ConstantData c, constantData(*init->second, path_, what));
    return values_[name] = Value{nullptr, std::make_shared<ConstantData>(std::move(c))};
  }

  Expected<Op *> param(const std::string &name, const Shape &shape) {
    return b_.tryCreate(OpKind::Param, {}, {{"name", name}}, irName(name),
                        ir::TensorType::of(shape));
  }

  // Input `i` of the node; absent (an empty name, or past the end) gives an empty value.
  Expected<Value> input(const onnx::NodeProto &node, int i) {
    if (i >= node.input_size() || node.input(i).empty())
      return Value{};
    return lookup(node.input(i));
  }

  Expected<Value> required(const onnx::NodeProto &node, int i) {
    VITC_ASSIGN(Value v, input(node, i));
    if (!v.present())
      return fail("input {} is required", i);
    return v;
  }

  // A constant input: what vitc must know at compile time (shapes, axes, exponents).
  Expected<std::shared_ptr<const ConstantData>> constantInput(const onnx::NodeProto &node, int i,
                                                              std::string_view what) {
    VITC_ASSIGN(Value v, required(node, i));
    if (!v.constant)
      return fail("{} (input {}) is computed at run time; vitc compiles static shapes, so it must "
                  "be a constant",
                  what, i);
    return v.constant;
  }

  // A value as a program tensor: a constant of one repeated value becomes a `fill`.
  Expected<Op *> tensor(const Value &v, const std::string &name) {
    if (v.op)
      return v.op;
    const ConstantData &c = *v.constant;
    double first = c.numel() > 0 ? c.value(0) : 0.0;
    for (int64_t k = 1; k < c.numel(); ++k)
      if (c.value(k) != first)
        return fail("a constant of varying values ('{}', shape {}) is not supported as data", name,
                    shapeString(c.shape));
    if (c.numel() == 0)
      return fail("an empty constant ('{}') is not supported as data", name);
    return create(OpKind::Fill, {}, {{"value", first}}, irName(name) + ".const", c.shape);
  }

  Expected<Op *> create(OpKind kind, std::vector<Op *> operands, ir::Attrs attrs, std::string name,
                        Shape declared = {}) {
    Expected<Op *> op = b_.tryCreate(kind, std::move(operands), std::move(attrs), std::move(name),
                                     ir::TensorType::of(std::move(declared)));
    if (!op)
      return fail(op.error().message());
    return op;
  }

  void define(const onnx::NodeProto &node, int output, Value v) {
    if (output < node.output_size() && !node.output(output).empty())
      values_[node.output(output)] = std::move(v);
  }
  void define(const onnx::NodeProto &node, int output, Op *op) {
    define(node, output, Value{op, nullptr});
  }
  void define(const onnx::NodeProto &node, int output, ConstantData c) {
    define(node, output, Value{nullptr, std::make_shared<ConstantData>(std::move(c))});
  }

  std::string outName(const onnx::NodeProto &node, int i = 0) const {
    return irName(i < node.output_size() ? node.output(i) : node.name());
  }

  // ---- attributes ----

  const onnx::AttributeProto *attr(const onnx::NodeProto &node, std::string_view name) const {
    for (const onnx::AttributeProto &a : node.attribute())
      if (a.name() == name)
        return &a;
    return nullptr;
  }
  int64_t intAttr(const onnx::NodeProto &node, std::string_view name, int64_t fallback) const {
    const onnx::AttributeProto *a = attr(node, name);
    return a ? a->i() : fallback;
  }
  double floatAttr(const onnx::NodeProto &node, std::string_view name, double fallback) const {
    const onnx::AttributeProto *a = attr(node, name);
    return a ? a->f() : fallback;
  }
  std::optional<std::vector<int64_t>> intsAttr(const onnx::NodeProto &node,
                                               std::string_view name) const {
    const onnx::AttributeProto *a = attr(node, name);
    if (!a)
      return std::nullopt;
    return std::vector<int64_t>(a->ints().begin(), a->ints().end());
  }

  // Axes given as an attribute (older opsets) or as a constant input (newer ones).
  Expected<std::optional<std::vector<int64_t>>> axesOf(const onnx::NodeProto &node, int input) {
    if (auto a = intsAttr(node, "axes"))
      return std::optional<std::vector<int64_t>>(*a);
    VITC_ASSIGN(Value v, this->input(node, input));
    if (!v.present())
      return std::optional<std::vector<int64_t>>();
    VITC_ASSIGN(auto c, constantInput(node, input, "the axes"));
    std::vector<int64_t> axes;
    for (int64_t k = 0; k < c->numel(); ++k)
      axes.push_back(c->intValue(k));
    return std::optional<std::vector<int64_t>>(axes);
  }

  // ---- the nodes ----

public:
  using Handler = Status (Importer::*)(const onnx::NodeProto &);
  // The op types the importer takes, each with its handler.
  static const std::map<std::string, Handler> &handlers() {
    static const std::map<std::string, Handler> table = {
        {"Add", &Importer::binary},
        {"Cast", &Importer::cast},
        {"Concat", &Importer::concat},
        {"Constant", &Importer::constantNode},
        {"ConstantOfShape", &Importer::constantOfShape},
        {"Conv", &Importer::conv},
        {"Div", &Importer::binary},
        {"Dropout", &Importer::dropout},
        {"Equal", &Importer::binary},
        {"Erf", &Importer::unary},
        {"Expand", &Importer::expand},
        {"Flatten", &Importer::flatten},
        {"Gather", &Importer::gather},
        {"Gemm", &Importer::gemm},
        {"Identity", &Importer::identity},
        {"LayerNormalization", &Importer::layerNormalization},
        {"MatMul", &Importer::matmul},
        {"Mul", &Importer::binary},
        {"Neg", &Importer::unary},
        {"Pow", &Importer::pow},
        {"Range", &Importer::range},
        {"Reciprocal", &Importer::unary},
        {"ReduceMean", &Importer::reduce},
        {"ReduceSum", &Importer::reduce},
        {"Relu", &Importer::unary},
        {"Reshape", &Importer::reshape},
        {"Shape", &Importer::shapeOf},
        {"Sigmoid", &Importer::unary},
        {"Slice", &Importer::slice},
        {"Softmax", &Importer::softmax},
        {"Split", &Importer::split},
        {"Sqrt", &Importer::unary},
        {"Squeeze", &Importer::squeeze},
        {"Sub", &Importer::binary},
        {"Tanh", &Importer::unary},
        {"Transpose", &Importer::transpose},
        {"Unsqueeze", &Importer::unsqueeze},
        {"Where", &Importer::where},
    };
    return table;
  }

private:
  Status importNode(const onnx::NodeProto &node) {
    auto it = handlers().find(node.op_type());
    if (it == handlers().end())
      return fail("unsupported op type '{}'", node.op_type());
    return (this->*it->second)(node);
  }

  Status identity(const onnx::NodeProto &node) {
    VITC_ASSIGN(Value x, required(node, 0));
    define(node, 0, x);
    return Status::ok();
  }

  // At inference Dropout passes its input through; the mask it could also give is not computed.
  Status dropout(const onnx::NodeProto &node) {
    if (node.output_size() > 1 && !node.output(1).empty())
      return fail("the mask output is not supported");
    return identity(node);
  }

  Status cast(const onnx::NodeProto &node) {
    VITC_ASSIGN(Value x, required(node, 0));
    int64_t to = intAttr(node, "to", onnx::TensorProto::FLOAT);
    bool toFloat = to == onnx::TensorProto::FLOAT || to == onnx::TensorProto::DOUBLE;
    if (x.op) {
      if (to != onnx::TensorProto::FLOAT)
        return fail("casting a computed tensor to a type other than float32 is not supported");
      define(node, 0, x);
      return Status::ok();
    }
    ConstantData c = *x.constant;
    if (toFloat && !c.isFloat) {
      c.floats.assign(c.ints.begin(), c.ints.end());
      c.ints.clear();
      c.isFloat = true;
    } else if (!toFloat && c.isFloat) {
      bool toBool = to == onnx::TensorProto::BOOL;
      for (double v : c.floats)
        c.ints.push_back(toBool ? (v != 0) : static_cast<int64_t>(v));
      c.floats.clear();
      c.isFloat = false;
    }
    define(node, 0, std::move(c));
    return Status::ok();
  }

  Status constantNode(const onnx::NodeProto &node) {
    if (node.attribute_size() != 1)
      return fail("expected one value attribute");
    const onnx::AttributeProto &a = node.attribute(0);
    ConstantData c;
    if (a.name() == "value") {
      std::string what = fmt::format("constant '{}'", node.output(0));
      if (isWeightTensor(a.t())) {
        // A tensor of many values is data like an initializer: a parameter the file provides.
        VITC_ASSIGN(Shape shape, tensorShape(a.t(), path_, what));
        VITC_ASSIGN(Op * p, param(node.output(0), shape));
        define(node, 0, p);
        return Status::ok();
      }
      VITC_ASSIGN(c, constantData(a.t(), path_, what));
    } else if (a.name() == "value_float") {
      c.isFloat = true;
      c.floats = {a.f()};
    } else if (a.name() == "value_floats") {
      c.isFloat = true;
      c.floats.assign(a.floats().begin(), a.floats().end());
      c.shape = {static_cast<int64_t>(c.floats.size())};
    } else if (a.name() == "value_int") {
      c.ints = {a.i()};
    } else if (a.name() == "value_ints") {
      c.ints.assign(a.ints().begin(), a.ints().end());
      c.shape = {static_cast<int64_t>(c.ints.size())};
    } else {
      return fail("constant attribute '{}' is not supported", a.name());
    }
    define(node, 0, std::move(c));
    return Status::ok();
  }

  Status constantOfShape(const onnx::NodeProto &node) {
    VITC_ASSIGN(auto shapeC, constantInput(node, 0, "the shape"));
    ConstantData c;
    for (int64_t k = 0; k < shapeC->numel(); ++k) {
      int64_t d = shapeC->intValue(k);
      if (d < 0 || d > (1 << 30))
        return fail("bad dimension {} in the shape", d);
      c.shape.push_back(d);
    }
    if (numElements(c.shape) > (1 << 26))
      return fail("constant of shape {} is too large", shapeString(c.shape));
    double value = 0;
    bool isFloat = true;
    if (const onnx::AttributeProto *a = attr(node, "value")) {
      VITC_ASSIGN(ConstantData v, constantData(a->t(), path_, "the value"));
      if (v.numel() != 1)
        return fail("value must hold one element");
      value = v.value(0);
      isFloat = v.isFloat;
    }
    c.isFloat = isFloat;
    if (isFloat)
      c.floats.assign(static_cast<size_t>(c.numel()), value);
    else
      c.ints.assign(static_cast<size_t>(c.numel()), static_cast<int64_t>(value));
    define(node, 0, std::move(c));
    return Status::ok();
  }

  Status shapeOf(const onnx::NodeProto &node) {
    VITC_ASSIGN(Value x, required(node, 0));
    const Shape &s = x.shape();
    int64_t rank = static_cast<int64_t>(s.size());
    int64_t start = std::clamp<int64_t>(normalizeAxis(intAttr(node, "start", 0), rank), 0, rank);
    int64_t end = std::clamp<int64_t>(normalizeAxis(intAttr(node, "end", rank), rank), 0, rank);
    ConstantData c;
    for (int64_t d = start; d < end; ++d)
      c.ints.push_back(s[static_cast<size_t>(d)]);
    c.shape = {static_cast<int64_t>(c.ints.size())};
    define(node, 0, std::move(c));
    return Status::ok();
  }

  Status range(const onnx::NodeProto &node) {
    VITC_ASSIGN(auto start, constantInput(node, 0, "the start"));
    VITC_ASSIGN(auto limit, constantInput(node, 1, "the limit"));
    VITC_ASSIGN(auto delta, constantInput(node, 2, "the delta"));
    double s = start->value(0), l = limit->value(0), d = delta->value(0);
    if (d == 0)
      return fail("delta is zero");
    double count = std::max(0.0, std::ceil((l - s) / d));
    if (count > (1 << 24))
      return fail("range of {} elements is too large", count);
    ConstantData c;
    c.isFloat = start->isFloat;
    for (int64_t k = 0; k < static_cast<int64_t>(count); ++k) {
      if (c.isFloat)
        c.floats.push_back(s + static_cast<double>(k) * d);
      else
        c.ints.push_back(start->intValue(0) + k * delta->intValue(0));
    }
    c.shape = {static_cast<int64_t>(count)};
    define(node, 0, std::move(c));
    return Status::ok();
  }

  // Elementwise on constants, NumPy broadcasting.
  static Expected<ConstantData> foldBinary(const std::string &opType, const ConstantData &a,
                                           const ConstantData &b) {
    std::optional<Shape> shape = broadcastShapes(a.shape, b.shape);
    if (!shape)
      return fail("shapes {} and {} do not broadcast", shapeString(a.shape), shapeString(b.shape));
    ConstantData c;
    c.shape = *shape;
    c.isFloat = (a.isFloat || b.isFloat) && opType != "Equal";
    int64_t n = numElements(*shape);
    for (int64_t k = 0; k < n; ++k) {
      int64_t ia = broadcastIndex(a.shape, *shape, k), ib = broadcastIndex(b.shape, *shape, k);
      if (c.isFloat) {
        double x = a.value(ia), y = b.value(ib), r = 0;
        if (opType == "Add")
          r = x + y;
        else if (opType == "Sub")
          r = x - y;
        else if (opType == "Mul")
          r = x * y;
        else if (opType == "Div")
          r = x / y;
        else if (opType == "Pow")
          r = std::pow(x, y);
        c.floats.push_back(r);
      } else if (opType == "Equal") {
        c.ints.push_back(a.value(ia) == b.value(ib));
      } else {
        int64_t x = a.intValue(ia), y = b.intValue(ib), r = 0;
        if (opType == "Add")
          r = static_cast<int64_t>(static_cast<uint64_t>(x) + static_cast<uint64_t>(y));
        else if (opType == "Sub")
          r = static_cast<int64_t>(static_cast<uint64_t>(x) - static_cast<uint64_t>(y));
        else if (opType == "Mul")
          r = static_cast<int64_t>(static_cast<uint64_t>(x) * static_cast<uint64_t>(y));
        else if (opType == "Div") {
          if (y == 0 || (x == INT64_MIN && y == -1))
            return fail("integer division of {} by {}", x, y);
          r = x / y;
        } else if (opType == "Pow")
          r = static_cast<int64_t>(std::pow(static_cast<double>(x), static_cast<double>(y)));
        c.ints.push_back(r);
      }
    }
    return c;
  }

  // A one-element constant's value, if `v` is one.
  static std::optional<double> scalarOf(const Value &v) {
    if (!v.constant || v.constant->numel() != 1)
      return std::nullopt;
    return v.constant->value(0);
  }

  Status binary(const onnx::NodeProto &node) {
    VITC_ASSIGN(Value a, required(node, 0));
    VITC_ASSIGN(Value b, required(node, 1));
    const std::string &type = node.op_type();
    if (a.constant && b.constant) {
      VITC_ASSIGN(ConstantData c, foldBinary(type, *a.constant, *b.constant));
      define(node, 0, std::move(c));
      return Status::ok();
    }
    if (type == "Equal")
      return fail("comparing tensors computed at run time is not supported");
    std::string name = outName(node);
    // Multiplying or dividing by one number is a `scale`, as the spec models have it; unless the
    // number's rank would broadcast the result to a higher rank.
    auto scalarFor = [&](const Value &c, const Value &x) -> std::optional<double> {
      std::optional<double> s = scalarOf(c);
      if (s && c.constant->shape.size() <= x.shape().size())
        return s;
      return std::nullopt;
    };
    if (type == "Mul" || type == "Div") {
      std::optional<double> s = scalarFor(b, a);
      if (type == "Mul" && !s) {
        s = scalarFor(a, b);
        if (s)
          std::swap(a, b);
      }
      if (s && (type == "Mul" || *s != 0)) {
        double factor = type == "Mul" ? *s : 1.0 / *s;
        VITC_ASSIGN(Op * y, create(OpKind::Scale, {a.op}, {{"factor", factor}}, name));
        define(node, 0, y);
        return Status::ok();
      }
    }
    VITC_ASSIGN(Op * x, tensor(a, node.input(0)));
    VITC_ASSIGN(Op * y, tensor(b, node.input(1)));
    OpKind kind = type == "Add"   ? OpKind::Add
                  : type == "Sub" ? OpKind::Sub
                  : type == "Mul" ? OpKind::Mul
                                  : OpKind::Div;
    VITC_ASSIGN(Op * r, create(kind, {x, y}, {}, name));
    define(node, 0, r);
    return Status::ok();
  }

  Status unary(const onnx::NodeProto &node) {
    VITC_ASSIGN(Value x, required(node, 0));
    const std::string &type = node.op_type();
    if (x.constant) {
      ConstantData c = *x.constant;
      if (!c.isFloat) {
        c.floats.assign(c.ints.begin(), c.ints.end());
        c.ints.clear();
        c.isFloat = true;
      }
      for (double &v : c.floats) {
        if (type == "Sqrt")
          v = std::sqrt(v);
        else if (type == "Neg")
          v = -v;
        else if (type == "Reciprocal")
          v = 1.0 / v;
        else if (type == "Relu")
          v = std::max(v, 0.0);
        else if (type == "Erf")
          v = std::erf(v);
        else if (type == "Tanh")
          v = std::tanh(v);
        else if (type == "Sigmoid")
          v = 1.0 / (1.0 + std::exp(-v));
      }
      if (!x.constant->isFloat && type == "Neg") {
        c = *x.constant;
        for (int64_t &v : c.ints)
          v = -v;
      }
      define(node, 0, std::move(c));
      return Status::ok();
    }
    std::string name = outName(node);
    Op *r = nullptr;
    if (type == "Sqrt") {
      VITC_ASSIGN(r, create(OpKind::Sqrt, {x.op}, {}, name));
    } else if (type == "Erf") {
      VITC_ASSIGN(r, create(OpKind::Erf, {x.op}, {}, name));
    } else if (type == "Tanh") {
      VITC_ASSIGN(r, create(OpKind::Tanh, {x.op}, {}, name));
    } else if (type == "Sigmoid") {
      VITC_ASSIGN(r, create(OpKind::Sigmoid, {x.op}, {}, name));
    } else if (type == "Neg") {
      VITC_ASSIGN(r, create(OpKind::Scale, {x.op}, {{"factor", -1.0}}, name));
    } else if (type == "Relu") {
      VITC_ASSIGN(Op * zero, create(OpKind::Fill, {}, {{"value", 0.0}}, name + ".zero", Shape{}));
      VITC_ASSIGN(r, create(OpKind::Maximum, {x.op, zero}, {}, name));
    } else if (type == "Reciprocal") {
      VITC_ASSIGN(Op * one, create(OpKind::Fill, {}, {{"value", 1.0}}, name + ".one", Shape{}));
      VITC_ASSIGN(r, create(OpKind::Div, {one, x.op}, {}, name));
    }
    define(node, 0, r);
    return Status::ok();
  }

  // x ** c for the exponents exporters write (LayerNorm's square): products, square roots and
  // reciprocals.
  Status pow(const onnx::NodeProto &node) {
    VITC_ASSIGN(Value x, required(node, 0));
    VITC_ASSIGN(Value e, required(node, 1));
    if (x.constant && e.constant) {
      VITC_ASSIGN(ConstantData c, foldBinary("Pow", *x.constant, *e.constant));
      define(node, 0, std::move(c));
      return Status::ok();
    }
    std::optional<double> p = scalarOf(e);
    if (!x.op || !p)
      return fail("only a tensor to a constant power is supported");
    std::string name = outName(node);
    Op *r = nullptr;
    if (*p == 1.0) {
      r = x.op;
    } else if (*p == 2.0) {
      VITC_ASSIGN(r, create(OpKind::Mul, {x.op, x.op}, {}, name));
    } else if (*p == 3.0) {
      VITC_ASSIGN(Op * sq, create(OpKind::Mul, {x.op, x.op}, {}, name + ".square"));
      VITC_ASSIGN(r, create(OpKind::Mul, {sq, x.op}, {}, name));
    } else if (*p == 0.5) {
      VITC_ASSIGN(r, create(OpKind::Sqrt, {x.op}, {}, name));
    } else if (*p == -1.0 || *p == -0.5) {
      Op *d = x.op;
      if (*p == -0.5) {
        VITC_ASSIGN(d, create(OpKind::Sqrt, {x.op}, {}, name + ".sqrt"));
      }
      VITC_ASSIGN(Op * one, create(OpKind::Fill, {}, {{"value", 1.0}}, name + ".one", Shape{}));
      VITC_ASSIGN(r, create(OpKind::Div, {one, d}, {}, name));
    } else {
      return fail("exponent {} is not supported (only 0.5, 1, 2, 3, -0.5 and -1)", *p);
    }
    define(node, 0, r);
    return Status::ok();
  }

  Status where(const onnx::NodeProto &node) {
    VITC_ASSIGN(auto cond, constantInput(node, 0, "the condition"));
    VITC_ASSIGN(auto x, constantInput(node, 1, "the first choice"));
    VITC_ASSIGN(auto y, constantInput(node, 2, "the second choice"));
    std::optional<Shape> s = broadcastShapes(cond->shape, x->shape);
    if (s)
      s = broadcastShapes(*s, y->shape);
    if (!s)
      return fail("shapes do not broadcast");
    ConstantData c;
    c.shape = *s;
    c.isFloat = x->isFloat || y->isFloat;
    for (int64_t k = 0; k < numElements(*s); ++k) {
      bool pick = cond->value(broadcastIndex(cond->shape, *s, k)) != 0;
      const ConstantData &from = pick ? *x : *y;
      int64_t i = broadcastIndex(from.shape, *s, k);
      if (c.isFloat)
        c.floats.push_back(from.value(i));
      else
        c.ints.push_back(from.intValue(i));
    }
    define(node, 0, std::move(c));
    return Status::ok();
  }

  // ---- data movement ----

  // Reshapes a value (a constant keeps its data).
  Expected<Value> reshaped(const Value &x, const Shape &shape, const std::string &name) {
    if (numElements(shape) != numElements(x.shape()))
      return fail("cannot reshape {} to {}", shapeString(x.shape()), shapeString(shape));
    if (x.constant) {
      auto c = std::make_shared<ConstantData>(*x.constant);
      c->shape = shape;
      return Value{nullptr, c};
    }
    if (x.op->shape() == shape)
      return x;
    VITC_ASSIGN(Op * r, create(OpKind::Reshape, {x.op}, {}, name, shape));
    return Value{r, nullptr};
  }

  Status reshape(const onnx::NodeProto &node) {
    VITC_ASSIGN(Value x, required(node, 0));
    VITC_ASSIGN(auto target, constantInput(node, 1, "the shape"));
    bool allowZero = intAttr(node, "allowzero", 0) != 0;
    Shape shape;
    int inferred = -1;
    int64_t known = 1;
    for (int64_t k = 0; k < target->numel(); ++k) {
      int64_t d = target->intValue(k);
      if (d == 0 && !allowZero) {
        if (k >= static_cast<int64_t>(x.shape().size()))
          return fail("shape entry {} copies a dimension the input does not have", k);
        d = x.shape()[static_cast<size_t>(k)];
      }
      if (d == -1) {
        if (inferred >= 0)
          return fail("the shape has more than one -1");
        inferred = static_cast<int>(k);
        shape.push_back(1);
        continue;
      }
      if (d < 0)
        return fail("bad dimension {} in the shape", d);
      shape.push_back(d);
      known *= d;
    }
    int64_t n = numElements(x.shape());
    if (inferred >= 0) {
      if (known == 0 || n % known != 0)
        return fail("cannot reshape {} to {}", shapeString(x.shape()), shapeString(shape));
      shape[static_cast<size_t>(inferred)] = n / known;
    }
    VITC_ASSIGN(Value r, reshaped(x, shape, outName(node)));
    define(node, 0, r);
    return Status::ok();
  }

  Status flatten(const onnx::NodeProto &node) {
    VITC_ASSIGN(Value x, required(node, 0));
    const Shape &s = x.shape();
    int64_t rank = static_cast<int64_t>(s.size());
    int64_t axis = normalizeAxis(intAttr(node, "axis", 1), rank);
    if (axis < 0 || axis > rank)
      return fail("axis out of range");
    int64_t outer = 1, inner = 1;
    for (int64_t d = 0; d < rank; ++d)
      (d < axis ? outer : inner) *= s[static_cast<size_t>(d)];
    VITC_ASSIGN(Value r, reshaped(x, {outer, inner}, outName(node)));
    define(node, 0, r);
    return Status::ok();
  }

  Status squeeze(const onnx::NodeProto &node) {
    VITC_ASSIGN(Value x, required(node, 0));
    VITC_ASSIGN(auto axes, axesOf(node, 1));
    const Shape &s = x.shape();
    int64_t rank = static_cast<int64_t>(s.size());
    std::set<int64_t> drop;
    if (axes) {
      for (int64_t a : *axes) {
        int64_t d = normalizeAxis(a, rank);
        if (d < 0 || d >= rank || s[static_cast<size_t>(d)] != 1)
          return fail("cannot squeeze axis {} of {}", a, shapeString(s));
        drop.insert(d);
      }
    } else {
      for (int64_t d = 0; d < rank; ++d)
        if (s[static_cast<size_t>(d)] == 1)
          drop.insert(d);
    }
    Shape shape;
    for (int64_t d = 0; d < rank; ++d)
      if (!drop.count(d))
        shape.push_back(s[static_cast<size_t>(d)]);
    VITC_ASSIGN(Value r, reshaped(x, shape, outName(node)));
    define(node, 0, r);
    return Status::ok();
  }

  Status unsqueeze(const onnx::NodeProto &node) {
    VITC_ASSIGN(Value x, required(node, 0));
    VITC_ASSIGN(auto axes, axesOf(node, 1));
    if (!axes)
      return fail("unsqueeze needs axes");
    int64_t rank = static_cast<int64_t>(x.shape().size() + axes->size());
    std::set<int64_t> add;
    for (int64_t a : *axes) {
      int64_t d = normalizeAxis(a, rank);
      if (d < 0 || d >= rank || !add.insert(d).second)
        return fail("bad unsqueeze axis {}", a);
    }
    Shape shape;
    size_t from = 0;
    for (int64_t d = 0; d < rank; ++d)
      shape.push_back(add.count(d) ? 1 : x.shape()[from++]);
    VITC_ASSIGN(Value r, reshaped(x, shape, outName(node)));
    define(node, 0, r);
    return Status::ok();
  }

  Status transpose(const onnx::NodeProto &node) {
    VITC_ASSIGN(Value x, required(node, 0));
    int64_t rank = static_cast<int64_t>(x.shape().size());
    std::vector<int64_t> perm;
    if (auto p = intsAttr(node, "perm"))
      perm = *p;
    else
      for (int64_t d = rank - 1; d >= 0; --d)
        perm.push_back(d);
    if (static_cast<int64_t>(perm.size()) != rank)
      return fail("perm has {} entries for rank {}", perm.size(), rank);
    if (x.constant) {
      const ConstantData &c = *x.constant;
      ConstantData t;
      t.isFloat = c.isFloat;
      for (int64_t p : perm) {
        if (p < 0 || p >= rank)
          return fail("bad perm");
        t.shape.push_back(c.shape[static_cast<size_t>(p)]);
      }
      Shape strides(static_cast<size_t>(rank), 1);
      for (int64_t d = rank - 2; d >= 0; --d)
        strides[static_cast<size_t>(d)] =
            strides[static_cast<size_t>(d + 1)] * c.shape[static_cast<size_t>(d + 1)];
      for (int64_t k = 0; k < t.numel(); ++k) {
        int64_t rest = k, from = 0;
        for (int64_t d = rank - 1; d >= 0; --d) {
          int64_t coord = rest % t.shape[static_cast<size_t>(d)];
          rest /= t.shape[static_cast<size_t>(d)];
          from += coord * strides[static_cast<size_t>(perm[static_cast<size_t>(d)])];
        }
        if (t.isFloat)
          t.floats.push_back(c.floats[static_cast<size_t>(from)]);
        else
          t.ints.push_back(c.ints[static_cast<size_t>(from)]);
      }
      define(node, 0, std::move(t));
      return Status::ok();
    }
    VITC_ASSIGN(Op * r, create(OpKind::Transpose, {x.op}, {{"perm", perm}}, outName(node)));
    define(node, 0, r);
    return Status::ok();
  }

  // Elements [start, start + size) along `axis` of a constant.
  static ConstantData sliceConstant(const ConstantData &c, int64_t axis, int64_t start,
                                    int64_t size, int64_t step = 1) {
    ConstantData r;
    r.isFloat = c.isFloat;
    r.shape = c.shape;
    r.shape[static_cast<size_t>(axis)] = size;
    int64_t inner = 1;
    for (size_t d = static_cast<size_t>(axis) + 1; d < c.shape.size(); ++d)
      inner *= c.shape[d];
    int64_t outer =
        numElements(c.shape) / std::max<int64_t>(1, inner * c.shape[static_cast<size_t>(axis)]);
    int64_t dim = c.shape[static_cast<size_t>(axis)];
    for (int64_t o = 0; o < outer; ++o)
      for (int64_t j = 0; j < size; ++j)
        for (int64_t i = 0; i < inner; ++i) {
          int64_t k = (o * dim + start + j * step) * inner + i;
          if (r.isFloat)
            r.floats.push_back(c.floats[static_cast<size_t>(k)]);
          else
            r.ints.push_back(c.ints[static_cast<size_t>(k)]);
        }
    return r;
  }

  Expected<Value> sliceValue(const Value &x, int64_t axis, int64_t start, int64_t size,
                             const std::string &name) {
    if (x.constant)
      return Value{nullptr,
                   std::make_shared<ConstantData>(sliceConstant(*x.constant, axis, start, size))};
    if (start == 0 && size == x.shape()[static_cast<size_t>(axis)])
      return x;
    VITC_ASSIGN(Op * r, create(OpKind::Slice, {x.op},
                               {{"axis", axis}, {"start", start}, {"size", size}}, name));
    return Value{r, nullptr};
  }

  Status slice(const onnx::NodeProto &node) {
    VITC_ASSIGN(Value x, required(node, 0));
    std::vector<int64_t> starts, ends, axes, steps;
    if (opset_ < 10) {
      starts = intsAttr(node, "starts").value_or(std::vector<int64_t>{});
      ends = intsAttr(node, "ends").value_or(std::vector<int64_t>{});
      axes = intsAttr(node, "axes").value_or(std::vector<int64_t>{});
    } else {
      auto ints = [&](int i, std::string_view what) -> Expected<std::vector<int64_t>> {
        VITC_ASSIGN(Value v, input(node, i));
        if (!v.present())
          return std::vector<int64_t>{};
        VITC_ASSIGN(auto c, constantInput(node, i, what));
        std::vector<int64_t> out;
        for (int64_t k = 0; k < c->numel(); ++k)
          out.push_back(c->intValue(k));
        return out;
      };
      VITC_ASSIGN(starts, ints(1, "the starts"));
      VITC_ASSIGN(ends, ints(2, "the ends"));
      VITC_ASSIGN(axes, ints(3, "the axes"));
      VITC_ASSIGN(steps, ints(4, "the steps"));
    }
    int64_t rank = static_cast<int64_t>(x.shape().size());
    if (axes.empty())
      for (size_t k = 0; k < starts.size(); ++k)
        axes.push_back(static_cast<int64_t>(k));
    if (starts.size() != ends.size() || axes.size() != starts.size() ||
        (!steps.empty() && steps.size() != starts.size()))
      return fail("starts, ends, axes and steps differ in length");
    Value r = x;
    for (size_t k = 0; k < axes.size(); ++k) {
      int64_t axis = normalizeAxis(axes[k], rank);
      if (axis < 0 || axis >= rank)
        return fail("axis {} out of range for rank {}", axes[k], rank);
      int64_t dim = x.shape()[static_cast<size_t>(axis)];
      int64_t step = steps.empty() ? 1 : steps[k];
      if (step != 1) {
        if (!r.constant || step <= 0)
          return fail("slices with step {} are not supported", step);
      }
      auto clampIndex = [&](int64_t v) {
        if (v < 0)
          v = v < -dim ? 0 : v + dim;
        return std::clamp<int64_t>(v, 0, dim);
      };
      int64_t start = clampIndex(starts[k]), end = clampIndex(ends[k]);
      int64_t size = end > start ? (end - start + step - 1) / step : 0;
      if (size == 0)
        return fail("slice along axis {} is empty", axis);
      if (step != 1) {
        r = Value{nullptr, std::make_shared<ConstantData>(
                               sliceConstant(*r.constant, axis, start, size, step))};
        continue;
      }
      VITC_ASSIGN(r, sliceValue(r, axis, start, size, outName(node)));
    }
    define(node, 0, r);
    return Status::ok();
  }

  Status split(const onnx::NodeProto &node) {
    VITC_ASSIGN(Value x, required(node, 0));
    int64_t rank = static_cast<int64_t>(x.shape().size());
    int64_t axis = normalizeAxis(intAttr(node, "axis", 0), rank);
    if (axis < 0 || axis >= rank)
      return fail("axis out of range");
    int64_t dim = x.shape()[static_cast<size_t>(axis)];
    std::vector<int64_t> sizes;
    if (auto s = intsAttr(node, "split")) {
      sizes = *s;
    } else {
      VITC_ASSIGN(Value v, input(node, 1));
      if (v.present()) {
        VITC_ASSIGN(auto c, constantInput(node, 1, "the split sizes"));
        for (int64_t k = 0; k < c->numel(); ++k)
          sizes.push_back(c->intValue(k));
      } else {
        int64_t parts = intAttr(node, "num_outputs", node.output_size());
        if (parts <= 0)
          return fail("no outputs to split into");
        int64_t each = (dim + parts - 1) / parts;
        for (int64_t p = 0, left = dim; p < parts; ++p, left -= each)
          sizes.push_back(std::min(each, left));
      }
    }
    if (static_cast<int>(sizes.size()) != node.output_size())
      return fail("{} split sizes for {} outputs", sizes.size(), node.output_size());
    int64_t start = 0;
    for (size_t k = 0; k < sizes.size(); ++k) {
      if (sizes[k] <= 0 || sizes[k] > dim - start)
        return fail("split sizes do not fit dimension {}", dim);
      VITC_ASSIGN(Value part,
                  sliceValue(x, axis, start, sizes[k], outName(node, static_cast<int>(k))));
      define(node, static_cast<int>(k), part);
      start += sizes[k];
    }
    if (start != dim)
      return fail("split sizes add up to {}, not {}", start, dim);
    return Status::ok();
  }

  Status concat(const onnx::NodeProto &node) {
    std::vector<Value> xs;
    bool allConstant = true;
    for (int i = 0; i < node.input_size(); ++i) {
      VITC_ASSIGN(Value v, required(node, i));
      allConstant &= v.constant != nullptr;
      xs.push_back(v);
    }
    if (xs.empty())
      return fail("no inputs");
    int64_t rank = static_cast<int64_t>(xs[0].shape().size());
    int64_t axis = normalizeAxis(intAttr(node, "axis", 0), rank);
    if (axis < 0 || axis >= rank)
      return fail("axis out of range");
    if (allConstant) {
      // Joins the constants' rows along the axis, block by block.
      ConstantData c;
      c.isFloat =
          std::any_of(xs.begin(), xs.end(), [](const Value &v) { return v.constant->isFloat; });
      c.shape = xs[0].shape();
      c.shape[static_cast<size_t>(axis)] = 0;
      int64_t outer = 1;
      for (int64_t d = 0; d < axis; ++d)
        outer *= c.shape[static_cast<size_t>(d)];
      for (const Value &v : xs) {
        if (v.shape().size() != c.shape.size())
          return fail("inputs differ in rank");
        c.shape[static_cast<size_t>(axis)] += v.shape()[static_cast<size_t>(axis)];
      }
      for (int64_t o = 0; o < outer; ++o)
        for (const Value &v : xs) {
          int64_t block = outer == 0 ? 0 : v.constant->numel() / outer;
          for (int64_t k = 0; k < block; ++k) {
            if (c.isFloat)
              c.floats.push_back(v.constant->value(o * block + k));
            else
              c.ints.push_back(v.constant->intValue(o * block + k));
          }
        }
      define(node, 0, std::move(c));
      return Status::ok();
    }
    std::vector<Op *> ops;
    for (int i = 0; i < node.input_size(); ++i) {
      VITC_ASSIGN(Op * t, tensor(xs[static_cast<size_t>(i)], node.input(i)));
      ops.push_back(t);
    }
    VITC_ASSIGN(Op * r, create(OpKind::Concat, ops, {{"axis", axis}}, outName(node)));
    define(node, 0, r);
    return Status::ok();
  }

  Status gather(const onnx::NodeProto &node) {
    VITC_ASSIGN(Value x, required(node, 0));
    VITC_ASSIGN(auto indices, constantInput(node, 1, "the indices"));
    int64_t rank = static_cast<int64_t>(x.shape().size());
    int64_t axis = normalizeAxis(intAttr(node, "axis", 0), rank);
    if (axis < 0 || axis >= rank)
      return fail("axis out of range");
    int64_t dim = x.shape()[static_cast<size_t>(axis)];
    if (indices->shape.size() > 1)
      return fail("indices of rank {} are not supported", indices->shape.size());
    std::vector<Value> parts;
    for (int64_t k = 0; k < indices->numel(); ++k) {
      int64_t i = indices->intValue(k);
      if (i < -dim || i >= dim)
        return fail("index {} is out of range for dimension {}", i, dim);
      VITC_ASSIGN(Value part, sliceValue(x, axis, i < 0 ? i + dim : i, 1, outName(node)));
      parts.push_back(part);
    }
    Shape shape = x.shape();
    Value r;
    if (indices->shape.empty()) {
      shape.erase(shape.begin() + axis);
      VITC_ASSIGN(r, reshaped(parts[0], shape, outName(node)));
    } else if (parts.size() == 1) {
      r = parts[0];
    } else {
      if (parts.empty())
        return fail("no indices");
      bool constant = parts[0].constant != nullptr;
      if (constant) {
        ConstantData c;
        c.isFloat = x.constant->isFloat;
        c.shape = shape;
        c.shape[static_cast<size_t>(axis)] = static_cast<int64_t>(parts.size());
        int64_t outer = 1;
        for (int64_t d = 0; d < axis; ++d)
          outer *= shape[static_cast<size_t>(d)];
        for (int64_t o = 0; o < outer; ++o)
          for (const Value &v : parts) {
            int64_t block = v.constant->numel() / std::max<int64_t>(outer, 1);
            for (int64_t k = 0; k < block; ++k) {
              if (c.isFloat)
                c.floats.push_back(v.constant->value(o * block + k));
              else
                c.ints.push_back(v.constant->intValue(o * block + k));
            }
          }
        r = Value{nullptr, std::make_shared<ConstantData>(std::move(c))};
      } else {
        std::vector<Op *> ops;
        for (const Value &v : parts)
          ops.push_back(v.op);
        VITC_ASSIGN(Op * cat, create(OpKind::Concat, ops, {{"axis", axis}}, outName(node)));
        r = Value{cat, nullptr};
      }
    }
    define(node, 0, r);
    return Status::ok();
  }

  Status expand(const onnx::NodeProto &node) {
    VITC_ASSIGN(Value x, required(node, 0));
    VITC_ASSIGN(auto target, constantInput(node, 1, "the shape"));
    Shape want;
    for (int64_t k = 0; k < target->numel(); ++k)
      want.push_back(target->intValue(k));
    std::optional<Shape> shape = broadcastShapes(x.shape(), want);
    if (!shape)
      return fail("cannot expand {} to {}", shapeString(x.shape()), shapeString(want));
    if (x.constant) {
      ConstantData c;
      c.isFloat = x.constant->isFloat;
      c.shape = *shape;
      for (int64_t k = 0; k < numElements(*shape); ++k) {
        int64_t i = broadcastIndex(x.constant->shape, *shape, k);
        if (c.isFloat)
          c.floats.push_back(x.constant->value(i));
        else
          c.ints.push_back(x.constant->intValue(i));
      }
      define(node, 0, std::move(c));
      return Status::ok();
    }
    if (*shape == x.shape()) {
      define(node, 0, x);
      return Status::ok();
    }
    VITC_ASSIGN(Op * r, create(OpKind::Broadcast, {x.op}, {}, outName(node), *shape));
    define(node, 0, r);
    return Status::ok();
  }

  // ---- compute ----

  Status matmul(const onnx::NodeProto &node) {
    VITC_ASSIGN(Value av, required(node, 0));
    VITC_ASSIGN(Value bv, required(node, 1));
    VITC_ASSIGN(Op * a, tensor(av, node.input(0)));
    VITC_ASSIGN(Op * b, tensor(bv, node.input(1)));
    std::string name = outName(node);
    // NumPy's vectors: a [K] is a row [1, K], b [K] a column [K, 1]; the added dimension goes
    // again at the end.
    bool rowVector = a->rank() == 1, columnVector = b->rank() == 1;
    if (rowVector) {
      VITC_ASSIGN(a, create(OpKind::Reshape, {a}, {}, name + ".row", {1, a->shape()[0]}));
    }
    if (columnVector) {
      VITC_ASSIGN(b, create(OpKind::Reshape, {b}, {}, name + ".column", {b->shape()[0], 1}));
    }
    if (b->rank() > 2 || (a->rank() > 2 && b->rank() == a->rank())) {
      // Batched: both operands get the broadcast batch dimensions.
      Shape ab(a->shape().begin(), a->shape().end() - 2),
          bb(b->shape().begin(), b->shape().end() - 2);
      std::optional<Shape> batch = broadcastShapes(ab, bb);
      if (!batch)
        return fail("batch dimensions {} and {} do not broadcast", shapeString(ab),
                    shapeString(bb));
      auto widen = [&](Op *x, const std::string &suffix) -> Expected<Op *> {
        Shape s = *batch;
        s.push_back(x->shape()[x->rank() - 2]);
        s.push_back(x->shape()[x->rank() - 1]);
        if (s == x->shape())
          return x;
        return create(OpKind::Broadcast, {x}, {}, name + suffix, s);
      };
      VITC_ASSIGN(a, widen(a, ".a"));
      VITC_ASSIGN(b, widen(b, ".b"));
    }
    VITC_ASSIGN(Op * r, create(OpKind::MatMul, {a, b}, {}, name));
    if (rowVector || columnVector) {
      Shape s = r->shape();
      if (columnVector)
        s.pop_back();
      if (rowVector)
        s.erase(s.end() - (columnVector ? 1 : 2));
      VITC_ASSIGN(r, create(OpKind::Reshape, {r}, {}, name + ".vector", s));
    }
    define(node, 0, r);
    return Status::ok();
  }

  Status gemm(const onnx::NodeProto &node) {
    VITC_ASSIGN(Value av, required(node, 0));
    VITC_ASSIGN(Value bv, required(node, 1));
    VITC_ASSIGN(Value cv, input(node, 2));
    VITC_ASSIGN(Op * a, tensor(av, node.input(0)));
    VITC_ASSIGN(Op * b, tensor(bv, node.input(1)));
    if (a->rank() != 2 || b->rank() != 2)
      return fail("Gemm takes matrices");
    std::string name = outName(node);
    if (intAttr(node, "transA", 0)) {
      VITC_ASSIGN(
          a, create(OpKind::Transpose, {a}, {{"perm", std::vector<int64_t>{1, 0}}}, name + ".at"));
    }
    ir::Attrs mmAttrs;
    if (intAttr(node, "transB", 0))
      mmAttrs.set("transpose_b", true);
    double alpha = floatAttr(node, "alpha", 1.0), beta = floatAttr(node, "beta", 1.0);
    bool more = cv.present() && beta != 0;
    VITC_ASSIGN(Op * r, create(OpKind::MatMul, {a, b}, mmAttrs, more ? name + ".mm" : name));
    if (alpha != 1.0) {
      VITC_ASSIGN(r, create(OpKind::Scale, {r}, {{"factor", alpha}}, name + ".alpha"));
    }
    if (more) {
      VITC_ASSIGN(Op * c, tensor(cv, node.input(2)));
      if (beta != 1.0) {
        VITC_ASSIGN(c, create(OpKind::Scale, {c}, {{"factor", beta}}, name + ".beta"));
      }
      VITC_ASSIGN(r, create(OpKind::Add, {r, c}, {}, name));
    }
    define(node, 0, r);
    return Status::ok();
  }

  Status softmax(const onnx::NodeProto &node) {
    VITC_ASSIGN(Value xv, required(node, 0));
    VITC_ASSIGN(Op * x, tensor(xv, node.input(0)));
    int64_t rank = x->rank();
    std::string name = outName(node);
    int64_t axis = normalizeAxis(intAttr(node, "axis", opset_ < 13 ? 1 : -1), rank);
    if (axis < 0 || axis >= rank)
      return fail("axis out of range");
    Op *r = nullptr;
    if (axis == rank - 1) {
      VITC_ASSIGN(r, create(OpKind::Softmax, {x}, {}, name));
    } else if (opset_ < 13) {
      // Before opset 13, Softmax flattens to [outer, inner] at the axis.
      int64_t outer = 1;
      for (int64_t d = 0; d < axis; ++d)
        outer *= x->shape()[static_cast<size_t>(d)];
      VITC_ASSIGN(Op * flat,
                  create(OpKind::Reshape, {x}, {}, name + ".2d",
                         {outer, numElements(x->shape()) / std::max<int64_t>(outer, 1)}));
      VITC_ASSIGN(Op * s, create(OpKind::Softmax, {flat}, {}, name + ".softmax"));
      VITC_ASSIGN(r, create(OpKind::Reshape, {s}, {}, name, x->shape()));
    } else {
      std::vector<int64_t> perm;
      for (int64_t d = 0; d < rank; ++d)
        perm.push_back(d);
      std::swap(perm[static_cast<size_t>(axis)], perm.back());
      VITC_ASSIGN(Op * t, create(OpKind::Transpose, {x}, {{"perm", perm}}, name + ".last"));
      VITC_ASSIGN(Op * s, create(OpKind::Softmax, {t}, {}, name + ".softmax"));
      VITC_ASSIGN(r, create(OpKind::Transpose, {s}, {{"perm", perm}}, name));
    }
    define(node, 0, r);
    return Status::ok();
  }

  Status reduce(const onnx::NodeProto &node) {
    VITC_ASSIGN(Value xv, required(node, 0));
    VITC_ASSIGN(Op * x, tensor(xv, node.input(0)));
    bool mean = node.op_type() == "ReduceMean";
    VITC_ASSIGN(auto axesGiven, axesOf(node, 1));
    int64_t rank = x->rank();
    std::vector<int64_t> axes;
    if (axesGiven && !axesGiven->empty()) {
      for (int64_t a : *axesGiven) {
        int64_t d = normalizeAxis(a, rank);
        if (d < 0 || d >= rank)
          return fail("axis {} out of range for rank {}", a, rank);
        axes.push_back(d);
      }
    } else if (intAttr(node, "noop_with_empty_axes", 0)) {
      define(node, 0, x);
      return Status::ok();
    } else {
      for (int64_t d = 0; d < rank; ++d)
        axes.push_back(d);
    }
    std::sort(axes.begin(), axes.end());
    axes.erase(std::unique(axes.begin(), axes.end()), axes.end());
    std::string name = outName(node);
    bool keep = intAttr(node, "keepdims", 1) != 0;
    Shape kept = x->shape();
    Op *r = x;
    // The highest axis first, so the lower ones keep their numbers.
    for (auto it = axes.rbegin(); it != axes.rend(); ++it) {
      kept[static_cast<size_t>(*it)] = 1;
      VITC_ASSIGN(r, create(mean ? OpKind::Mean : OpKind::Sum, {r}, {{"axis", *it}},
                            keep ? name + ".reduced" : name));
    }
    if (keep) {
      VITC_ASSIGN(r, create(OpKind::Reshape, {r}, {}, name, kept));
    }
    define(node, 0, r);
    return Status::ok();
  }

  Status layerNormalization(const onnx::NodeProto &node) {
    VITC_ASSIGN(Value xv, required(node, 0));
    VITC_ASSIGN(Value sv, required(node, 1));
    VITC_ASSIGN(Value bv, input(node, 2));
    VITC_ASSIGN(Op * x, tensor(xv, node.input(0)));
    int64_t axis = normalizeAxis(intAttr(node, "axis", -1), x->rank());
    if (axis != x->rank() - 1)
      return fail("normalizing over more than the last axis is not supported");
    for (int i = 1; i < node.output_size(); ++i)
      if (!node.output(i).empty())
        return fail("the mean and inverse standard deviation outputs are not supported");
    int64_t d = x->shape().back();
    // A one-element scale or bias is as good as a vector of it.
    auto vectorOf = [&](const Value &v, const std::string &name) -> Expected<Op *> {
      if (v.constant) {
        ConstantData c = *v.constant;
        c.shape = {d};
        if (v.constant->numel() == 1) {
          double value = v.constant->value(0);
          return create(OpKind::Fill, {}, {{"value", value}}, irName(name) + ".const", Shape{d});
        }
        return tensor(Value{nullptr, std::make_shared<ConstantData>(std::move(c))}, name);
      }
      return v.op;
    };
    VITC_ASSIGN(Op * scale, vectorOf(sv, node.input(1)));
    std::vector<Op *> operands{x, scale};
    if (bv.present()) {
      VITC_ASSIGN(Op * bias, vectorOf(bv, node.input(2)));
      operands.push_back(bias);
    }
    VITC_ASSIGN(Op * r, create(OpKind::LayerNorm, operands,
                               {{"eps", floatAttr(node, "epsilon", 1e-5)}}, outName(node)));
    define(node, 0, r);
    return Status::ok();
  }

  // A convolution whose stride equals its kernel and that neither pads nor dilates is a patch
  // embedding: patchify, then one matmul against the kernel as a [D, C*P*P] matrix.
  Status conv(const onnx::NodeProto &node) {
    VITC_ASSIGN(Value xv, required(node, 0));
    VITC_ASSIGN(Value wv, required(node, 1));
    VITC_ASSIGN(Value bv, input(node, 2));
    VITC_ASSIGN(Op * x, tensor(xv, node.input(0)));
    VITC_ASSIGN(Op * w, tensor(wv, node.input(1)));
    if (x->rank() != 4 || w->rank() != 4)
      return fail("only 2-D convolutions are supported");
    int64_t kh = w->shape()[2], kw = w->shape()[3];
    std::vector<int64_t> kernel =
        intsAttr(node, "kernel_shape").value_or(std::vector<int64_t>{kh, kw});
    std::vector<int64_t> strides = intsAttr(node, "strides").value_or(std::vector<int64_t>{1, 1});
    std::vector<int64_t> pads = intsAttr(node, "pads").value_or(std::vector<int64_t>{0, 0, 0, 0});
    std::vector<int64_t> dilations =
        intsAttr(node, "dilations").value_or(std::vector<int64_t>{1, 1});
    const onnx::AttributeProto *autoPad = attr(node, "auto_pad");
    bool padded = std::any_of(pads.begin(), pads.end(), [](int64_t p) { return p != 0; }) ||
                  (autoPad && autoPad->s() != "NOTSET" && autoPad->s() != "VALID");
    bool dilated =
        std::any_of(dilations.begin(), dilations.end(), [](int64_t v) { return v != 1; });
    if (kernel != std::vector<int64_t>{kh, kw} || kh != kw || strides != kernel || padded ||
        dilated || intAttr(node, "group", 1) != 1)
      return fail("only a patch embedding is supported: a square kernel with stride equal to its "
                  "size, no padding, no dilation, one group");
    int64_t p = kh, c = x->shape()[1], d = w->shape()[0];
    if (w->shape()[1] != c)
      return fail("kernel has {} input channels, the image {}", w->shape()[1], c);
    if (x->shape()[2] % p != 0 || x->shape()[3] % p != 0)
      return fail("image {}x{} is not divisible by patch {}: the convolution would drop pixels",
                  x->shape()[2], x->shape()[3], p);
    std::string name = outName(node);
    int64_t gh = x->shape()[2] / p, gw = x->shape()[3] / p, batch = x->shape()[0];
    VITC_ASSIGN(Op * patches, create(OpKind::Patchify, {x}, {{"patch", p}}, name + ".patches"));
    VITC_ASSIGN(Op * w2, create(OpKind::Reshape, {w}, {}, name + ".w2d", {d, c * p * p}));
    VITC_ASSIGN(Op * y,
                create(OpKind::MatMul, {patches, w2}, {{"transpose_b", true}}, name + ".proj"));
    if (bv.present()) {
      VITC_ASSIGN(Op * bias, tensor(bv, node.input(2)));
      VITC_ASSIGN(y, create(OpKind::Add, {y, bias}, {}, name + ".embed"));
    }
    // [B, N, D] back to the convolution's [B, D, H/P, W/P].
    VITC_ASSIGN(Op * t, create(OpKind::Transpose, {y}, {{"perm", std::vector<int64_t>{0, 2, 1}}},
                               name + ".bdn"));
    VITC_ASSIGN(Op * r, create(OpKind::Reshape, {t}, {}, name, {batch, d, gh, gw}));
    define(node, 0, r);
    return Status::ok();
  }

  const onnx::ModelProto &model_;
  std::string path_;
  int64_t batch_;
  int64_t opset_ = 1;
  std::unique_ptr<ir::Module> module_;
  ir::Builder b_;
  std::map<std::string, const onnx::TensorProto *> initializers_;
  std::map<std::string, Value> values_;
};

} // namespace

std::vector<std::string> supportedOpTypes() {
  std::vector<std::string> types;
  for (const auto &[type, handler] : Importer::handlers())
    types.push_back(type);
  return types;
}

Expected<std::unique_ptr<ir::Module>> importOnnxBytes(std::string_view bytes,
                                                      const std::string &path, int64_t batch) {
  VITC_ASSIGN(std::shared_ptr<onnx::ModelProto> model, parseModel(bytes, path));
  return Importer(*model, path, batch).run();
}

Expected<std::unique_ptr<ir::Module>> importOnnxFile(const std::string &path, int64_t batch) {
  VITC_ASSIGN(std::shared_ptr<onnx::ModelProto> model, readModel(path));
  return Importer(*model, path, batch).run();
}

} // namespace vitc::onnximport
