// Parsing ONNX models and decoding tensor data (inline, typed fields or external files).
#include "frontend/onnx/onnx_file.h"

#include <climits>
#include <cstring>
#include <filesystem>
#include <limits>

#include <onnx/checker.h>
#include <onnx/shape_inference/implementation.h>

#include "support/files.h"

namespace vitc::onnximport {
namespace fs = std::filesystem;

namespace {

// ONNX's messages span lines ("...\n\n==> Context: Bad node spec for node. Name: ..."): errors are
// one line.
std::string oneLine(std::string message) {
  std::string out;
  for (char c : message) {
    if (c == '\n' || c == '\r') {
      if (!out.empty() && out.back() != ' ')
        out += ' ';
      continue;
    }
    out += c;
  }
  while (!out.empty() && (out.back() == ' ' || out.back() == '.'))
    out.pop_back();
  size_t context = out.find(" ==> Context: ");
  if (context != std::string::npos)
    out.replace(context, 14, "; ");
  if (!out.empty())
    out[0] = static_cast<char>(std::tolower(static_cast<unsigned char>(out[0])));
  return out;
}

int64_t elementBytes(int32_t type) {
  switch (type) {
  case onnx::TensorProto::FLOAT:
  case onnx::TensorProto::INT32:
  case onnx::TensorProto::UINT32:
    return 4;
  case onnx::TensorProto::DOUBLE:
  case onnx::TensorProto::INT64:
  case onnx::TensorProto::UINT64:
    return 8;
  case onnx::TensorProto::FLOAT16:
  case onnx::TensorProto::BFLOAT16:
  case onnx::TensorProto::INT16:
  case onnx::TensorProto::UINT16:
    return 2;
  case onnx::TensorProto::INT8:
  case onnx::TensorProto::UINT8:
  case onnx::TensorProto::BOOL:
    return 1;
  default:
    return 0;
  }
}

std::string typeName(int32_t type) {
  if (onnx::TensorProto_DataType_IsValid(type))
    return onnx::TensorProto_DataType_Name(static_cast<onnx::TensorProto_DataType>(type));
  return fmt::format("type {}", type);
}

// IEEE half and bfloat16 to float.
float halfToFloat(uint16_t h) {
  uint32_t sign = (h & 0x8000u) << 16, exp = (h >> 10) & 0x1f, mant = h & 0x3ffu;
  uint32_t bits;
  if (exp == 0x1f)
    bits = sign | 0x7f800000u | (mant << 13);
  else if (exp != 0)
    bits = sign | ((exp + 112) << 23) | (mant << 13);
  else if (mant == 0)
    bits = sign;
  else {
    // Subnormal: normalize the mantissa.
    int shift = 0;
    while ((mant & 0x400u) == 0) {
      mant <<= 1;
      ++shift;
    }
    bits = sign | (static_cast<uint32_t>(113 - shift) << 23) | ((mant & 0x3ffu) << 13);
  }
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

float bf16ToFloat(uint16_t h) {
  uint32_t bits = static_cast<uint32_t>(h) << 16;
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

// The bytes of a tensor stored raw, inline or in an external file; empty optional when it uses
// the typed fields instead.
Expected<std::optional<std::string>>
rawBytes(const onnx::TensorProto &t, const std::string &modelPath, const std::string &what) {
  if (t.data_location() != onnx::TensorProto::EXTERNAL) {
    if (!t.has_raw_data())
      return std::optional<std::string>();
    return std::optional<std::string>(t.raw_data());
  }
  std::string location;
  int64_t offset = 0, length = -1;
  for (const onnx::StringStringEntryProto &e : t.external_data()) {
    try {
      if (e.key() == "location")
        location = e.value();
      else if (e.key() == "offset")
        offset = std::stoll(e.value());
      else if (e.key() == "length")
        length = std::stoll(e.value());
    } catch (const std::exception &) {
      return makeError(Loc::inFile(modelPath), "{}: bad external-data {} '{}'", what, e.key(),
                       e.value());
    }
  }
  if (location.empty())
    return makeError(Loc::inFile(modelPath), "{}: external data without a location", what);
  fs::path file = fs::path(modelPath).parent_path() / location;
  std::error_code ec;
  if (!fs::is_regular_file(file, ec))
    return makeError(Loc::inFile(modelPath), "{}: external-data file '{}' is missing", what,
                     file.string());
  VITC_ASSIGN(std::shared_ptr<MappedFile> mapped, MappedFile::open(file.string()));
  int64_t size = static_cast<int64_t>(mapped->size());
  if (length < 0)
    length = size - offset;
  if (offset < 0 || offset > size || length > size - offset)
    return makeError(Loc::inFile(modelPath),
                     "{}: external data at offset {} length {} is outside '{}' ({} bytes)", what,
                     offset, length, file.string(), size);
  return std::optional<std::string>(std::string(
      reinterpret_cast<const char *>(mapped->data()) + offset, static_cast<size_t>(length)));
}

// Every element as `T`, whatever the stored type (floats to floating T, integers exactly).
template <typename T>
Expected<std::vector<T>> elements(const onnx::TensorProto &t, int64_t n,
                                  const std::string &modelPath, const std::string &what) {
  int32_t type = t.data_type();
  int64_t width = elementBytes(type);
  if (width == 0)
    return makeError(Loc::inFile(modelPath), "{}: element type {} is not supported", what,
                     typeName(type));
  std::vector<T> out;
  out.reserve(static_cast<size_t>(n));
  VITC_ASSIGN(std::optional<std::string> raw, rawBytes(t, modelPath, what));
  if (raw) {
    if (static_cast<int64_t>(raw->size()) != n * width)
      return makeError(Loc::inFile(modelPath), "{}: holds {} bytes, but {} {} elements take {}",
                       what, raw->size(), n, typeName(type), n * width);
    const char *p = raw->data();
    for (int64_t k = 0; k < n; ++k, p += width) {
      switch (type) {
#define VITC_ONNX_RAW(ENUM, CTYPE)                                                                 \
  case onnx::TensorProto::ENUM: {                                                                  \
    CTYPE v;                                                                                       \
    std::memcpy(&v, p, sizeof v);                                                                  \
    out.push_back(static_cast<T>(v));                                                              \
    break;                                                                                         \
  }
        VITC_ONNX_RAW(FLOAT, float)
        VITC_ONNX_RAW(DOUBLE, double)
        VITC_ONNX_RAW(INT64, int64_t)
        VITC_ONNX_RAW(UINT64, uint64_t)
        VITC_ONNX_RAW(INT32, int32_t)
        VITC_ONNX_RAW(UINT32, uint32_t)
        VITC_ONNX_RAW(INT16, int16_t)
        VITC_ONNX_RAW(UINT16, uint16_t)
        VITC_ONNX_RAW(INT8, int8_t)
        VITC_ONNX_RAW(UINT8, uint8_t)
        VITC_ONNX_RAW(BOOL, uint8_t)
#undef VITC_ONNX_RAW
      case onnx::TensorProto::FLOAT16:
      case onnx::TensorProto::BFLOAT16: {
        uint16_t v;
        std::memcpy(&v, p, 2);
        float f = type == onnx::TensorProto::FLOAT16 ? halfToFloat(v) : bf16ToFloat(v);
        out.push_back(static_cast<T>(f));
        break;
      }
      default:
        break;
      }
    }
    return out;
  }
  auto take = [&](const auto &field, auto convert) -> Status {
    if (field.size() != n)
      return makeError(Loc::inFile(modelPath), "{}: holds {} values, but its shape has {}", what,
                       field.size(), n);
    for (const auto &v : field)
      out.push_back(convert(v));
    return Status::ok();
  };
  auto same = [](auto v) { return static_cast<T>(v); };
  switch (type) {
  case onnx::TensorProto::FLOAT:
    VITC_TRY(take(t.float_data(), same));
    break;
  case onnx::TensorProto::DOUBLE:
    VITC_TRY(take(t.double_data(), same));
    break;
  case onnx::TensorProto::INT64:
    VITC_TRY(take(t.int64_data(), same));
    break;
  case onnx::TensorProto::UINT32:
  case onnx::TensorProto::UINT64:
    VITC_TRY(take(t.uint64_data(), same));
    break;
  case onnx::TensorProto::FLOAT16:
    VITC_TRY(take(t.int32_data(),
                  [](int32_t v) { return static_cast<T>(halfToFloat(static_cast<uint16_t>(v))); }));
    break;
  case onnx::TensorProto::BFLOAT16:
    VITC_TRY(take(t.int32_data(),
                  [](int32_t v) { return static_cast<T>(bf16ToFloat(static_cast<uint16_t>(v))); }));
    break;
  default: // INT32, INT16, INT8, UINT16, UINT8, BOOL
    VITC_TRY(take(t.int32_data(), same));
    break;
  }
  return out;
}

bool isFloatType(int32_t type) {
  return type == onnx::TensorProto::FLOAT || type == onnx::TensorProto::DOUBLE ||
         type == onnx::TensorProto::FLOAT16 || type == onnx::TensorProto::BFLOAT16;
}

} // namespace

Error nodeError(const std::string &path, const onnx::NodeProto &node, const std::string &message) {
  std::string name = node.name();
  if (name.empty() && node.output_size() > 0)
    name = node.output(0);
  return makeError(Loc::inFile(path), "node '{}' ({}): {}", name, node.op_type(), message);
}

namespace {

// `fromFile`: the bytes are the file at `path`, and ONNX's checker finds external data beside it.
Expected<std::shared_ptr<onnx::ModelProto>> parse(std::string_view bytes, const std::string &path,
                                                  bool fromFile) {
  auto model = std::make_shared<onnx::ModelProto>();
  if (bytes.size() > static_cast<size_t>(INT_MAX))
    return makeError(Loc::inFile(path), "the model is larger than the 2 GiB a protobuf may hold: "
                                        "export it with external data");
  if (!model->ParseFromArray(bytes.data(), static_cast<int>(bytes.size())))
    return makeError(Loc::inFile(path), "not an ONNX model: the protobuf does not parse");
  if (!model->has_graph())
    return makeError(Loc::inFile(path), "not an ONNX model: it has no graph");
  try {
    if (fromFile)
      onnx::checker::check_model(path);
    else
      onnx::checker::check_model(*model);
  } catch (const std::exception &e) {
    return makeError(Loc::inFile(path), "invalid ONNX model: {}", oneLine(e.what()));
  }
  try {
    onnx::ShapeInferenceOptions options(/*check_type=*/true, /*strict_mode=*/1);
    onnx::shape_inference::InferShapes(*model, onnx::OpSchemaRegistry::Instance(), options);
  } catch (const std::exception &e) {
    return makeError(Loc::inFile(path), "ONNX shape inference failed: {}", oneLine(e.what()));
  }
  return model;
}

} // namespace

Expected<std::shared_ptr<onnx::ModelProto>> parseModel(std::string_view bytes,
                                                       const std::string &path) {
  return parse(bytes, path, false);
}

Expected<std::shared_ptr<onnx::ModelProto>> readModel(const std::string &path) {
  VITC_ASSIGN(std::shared_ptr<MappedFile> file, MappedFile::open(path));
  return parse(std::string_view(reinterpret_cast<const char *>(file->data()), file->size()), path,
               true);
}

Expected<Shape> tensorShape(const onnx::TensorProto &t, const std::string &modelPath,
                            const std::string &what) {
  Shape shape;
  int64_t n = 1;
  for (int64_t d : t.dims()) {
    if (d < 0 || (d > 0 && n > std::numeric_limits<int64_t>::max() / 8 / d))
      return makeError(Loc::inFile(modelPath), "{}: bad shape dimension {}", what, d);
    n *= d;
    shape.push_back(d);
  }
  return shape;
}

Expected<ConstantData> constantData(const onnx::TensorProto &t, const std::string &modelPath,
                                    const std::string &what) {
  ConstantData c;
  VITC_ASSIGN(c.shape, tensorShape(t, modelPath, what));
  c.isFloat = isFloatType(t.data_type());
  if (c.isFloat) {
    VITC_ASSIGN(c.floats, elements<double>(t, c.numel(), modelPath, what));
  } else {
    VITC_ASSIGN(c.ints, elements<int64_t>(t, c.numel(), modelPath, what));
  }
  return c;
}

Expected<Tensor> floatTensor(const onnx::TensorProto &t, const std::string &modelPath,
                             const std::string &what) {
  VITC_ASSIGN(Shape shape, tensorShape(t, modelPath, what));
  if (!isFloatType(t.data_type()))
    return makeError(Loc::inFile(modelPath), "{}: holds {}; a weight is floating point", what,
                     typeName(t.data_type()));
  VITC_ASSIGN(Tensor out, Tensor::tryZeros(shape, what));
  VITC_ASSIGN(std::vector<float> values, elements<float>(t, out.numel(), modelPath, what));
  std::memcpy(out.mutableData(), values.data(), values.size() * sizeof(float));
  return out;
}

bool isWeightTensor(const onnx::TensorProto &t) {
  // More than one element: some dimension above 1 and none empty (no product that may overflow).
  bool many = false;
  for (int64_t d : t.dims()) {
    if (d <= 0)
      return false;
    many |= d > 1;
  }
  return isFloatType(t.data_type()) && many;
}

} // namespace vitc::onnximport
