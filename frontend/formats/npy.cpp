// .npy: a Python-literal header parser, dtype decoding, and the `<f4` writer.
#include "frontend/formats/npy.h"

#include <algorithm>
#include <cctype>
#include <cstring>
#include <memory>
#include <optional>
#include <string_view>
#include <utility>
#include <vector>

#include "frontend/formats/convert.h"
#include "support/files.h"

namespace vitc::formats {
namespace {

constexpr std::string_view kMagic = "\x93NUMPY";

struct PyField;

// A Python literal as .npy headers use them. `text` is the literal as written, for messages.
struct PyValue {
  enum class Kind { Str, Int, Bool, None, Tuple, List, Dict };
  Kind kind = Kind::None;
  std::string_view text;
  std::string str;
  int64_t integer = 0;
  bool boolean = false;
  std::vector<PyValue> items;  // Tuple, List
  std::vector<PyField> fields; // Dict, whose keys are strings
};

// A dict entry. (Not a std::pair: clang cannot instantiate a pair of a type still being defined.)
struct PyField {
  std::string key;
  PyValue value;
};

// Parses the literals numpy writes: dicts with string keys, tuples, lists, strings, integers
// (with Python 2's `L` suffix), True, False and None. Nesting is bounded so that a hostile header
// cannot exhaust the stack.
class LiteralParser {
public:
  explicit LiteralParser(std::string_view text) : text_(text) {}

  // The one literal that makes up the whole text (surrounding white space aside).
  std::optional<PyValue> parseWhole() {
    std::optional<PyValue> v = parseValue(0);
    if (!v)
      return std::nullopt;
    skipSpace();
    if (pos_ != text_.size())
      return fail("unexpected text after the dict");
    return v;
  }

  // What went wrong and where: "expected ':' after a key at byte 9".
  std::string error() const { return fmt::format("{} at byte {}", error_, errorPos_); }

private:
  static constexpr int kMaxDepth = 32;

  std::nullopt_t fail(std::string message) {
    if (error_.empty()) {
      error_ = std::move(message);
      errorPos_ = pos_;
    }
    return std::nullopt;
  }

  void skipSpace() {
    while (pos_ < text_.size() && (text_[pos_] == ' ' || text_[pos_] == '\t' ||
                                   text_[pos_] == '\n' || text_[pos_] == '\r'))
      ++pos_;
  }
  bool peek(char c) {
    skipSpace();
    return pos_ < text_.size() && text_[pos_] == c;
  }
  bool accept(char c) {
    if (!peek(c))
      return false;
    ++pos_;
    return true;
  }
  bool acceptWord(std::string_view word) {
    if (text_.substr(pos_, word.size()) != word)
      return false;
    size_t after = pos_ + word.size();
    if (after < text_.size() &&
        (std::isalnum(static_cast<unsigned char>(text_[after])) || text_[after] == '_'))
      return false;
    pos_ = after;
    return true;
  }

  std::optional<PyValue> parseValue(int depth) {
    if (depth > kMaxDepth)
      return fail("literal nested too deeply");
    skipSpace();
    if (pos_ == text_.size())
      return fail("unexpected end of the header");
    size_t start = pos_;
    std::optional<PyValue> v = parseBare(depth);
    if (v && v->text.empty())
      v->text = text_.substr(start, pos_ - start);
    return v;
  }

  std::optional<PyValue> parseBare(int depth) {
    char c = text_[pos_];
    PyValue v;
    if (c == '\'' || c == '"')
      return parseString();
    if (c == '-' || c == '+' || std::isdigit(static_cast<unsigned char>(c)))
      return parseInt();
    if (c == '(' || c == '[')
      return parseSequence(depth);
    if (c == '{')
      return parseDict(depth);
    v.kind = PyValue::Kind::Bool;
    if (acceptWord("True")) {
      v.boolean = true;
      return v;
    }
    if (acceptWord("False"))
      return v;
    v.kind = PyValue::Kind::None;
    if (acceptWord("None"))
      return v;
    if (std::isprint(static_cast<unsigned char>(c)))
      return fail(fmt::format("unexpected character '{}'", c));
    return fail(fmt::format("unexpected byte 0x{:02x}", static_cast<unsigned char>(c)));
  }

  std::optional<PyValue> parseString() {
    char quote = text_[pos_++];
    PyValue v;
    v.kind = PyValue::Kind::Str;
    while (pos_ < text_.size() && text_[pos_] != quote) {
      // Escapes keep the escaped character; numpy's dtype strings never need more.
      if (text_[pos_] == '\\' && pos_ + 1 < text_.size())
        ++pos_;
      v.str += text_[pos_++];
    }
    if (pos_ == text_.size())
      return fail("unterminated string");
    ++pos_;
    return v;
  }

  std::optional<PyValue> parseInt() {
    bool negative = text_[pos_] == '-';
    if (text_[pos_] == '-' || text_[pos_] == '+')
      ++pos_;
    if (pos_ == text_.size() || !std::isdigit(static_cast<unsigned char>(text_[pos_])))
      return fail("expected digits");
    int64_t value = 0;
    while (pos_ < text_.size() && std::isdigit(static_cast<unsigned char>(text_[pos_]))) {
      int digit = text_[pos_++] - '0';
      if (__builtin_mul_overflow(value, 10, &value) ||
          __builtin_add_overflow(value, negative ? -digit : digit, &value))
        return fail("integer does not fit in 64 bits");
    }
    if (pos_ < text_.size() && (text_[pos_] == 'L' || text_[pos_] == 'l'))
      ++pos_;
    PyValue v;
    v.kind = PyValue::Kind::Int;
    v.integer = value;
    return v;
  }

  // `(a, b)`, `(a,)`, `()`, `[a, b]`; `(a)` is just `a` in parentheses, as in Python.
  std::optional<PyValue> parseSequence(int depth) {
    char close = text_[pos_] == '(' ? ')' : ']';
    PyValue v;
    v.kind = close == ')' ? PyValue::Kind::Tuple : PyValue::Kind::List;
    ++pos_;
    bool sawComma = false;
    while (!accept(close)) {
      std::optional<PyValue> item = parseValue(depth + 1);
      if (!item)
        return std::nullopt;
      v.items.push_back(std::move(*item));
      if (accept(','))
        sawComma = true;
      else if (!peek(close))
        return fail(fmt::format("expected ',' or '{}'", close));
    }
    if (close == ')' && v.items.size() == 1 && !sawComma)
      return std::move(v.items[0]);
    return v;
  }

  std::optional<PyValue> parseDict(int depth) {
    PyValue v;
    v.kind = PyValue::Kind::Dict;
    ++pos_;
    while (!accept('}')) {
      std::optional<PyValue> key = parseValue(depth + 1);
      if (!key)
        return std::nullopt;
      if (key->kind != PyValue::Kind::Str)
        return fail(fmt::format("dict key {} is not a string", key->text));
      if (!accept(':'))
        return fail("expected ':' after a dict key");
      std::optional<PyValue> value = parseValue(depth + 1);
      if (!value)
        return std::nullopt;
      v.fields.push_back({std::move(key->str), std::move(*value)});
      if (!accept(',') && !peek('}'))
        return fail("expected ',' or '}'");
    }
    return v;
  }

  std::string_view text_;
  size_t pos_ = 0;
  std::string error_;
  size_t errorPos_ = 0;
};

const PyValue *field(const PyValue &dict, std::string_view key) {
  for (const auto &[k, v] : dict.fields)
    if (k == key)
      return &v;
  return nullptr;
}

struct NpyDtype {
  ElementType type;
  size_t itemsize = 4;
};

// What a dtype kind character stands for, for the messages that refuse it.
std::string_view describeKind(char kind) {
  switch (kind) {
  case 'b':
  case '?':
    return "booleans";
  case 'c':
    return "complex numbers";
  case 'O':
    return "Python objects";
  case 'U':
    return "unicode strings";
  case 'S':
  case 'a':
    return "byte strings";
  case 'V':
    return "raw or structured records";
  case 'M':
    return "datetimes";
  case 'm':
    return "timedeltas";
  case 'f':
    return "floats of this width";
  case 'i':
  case 'u':
    return "integers of this width";
  }
  return "an unknown kind";
}

Expected<NpyDtype> parseDescr(const PyValue &descr, const Loc &loc) {
  if (descr.kind == PyValue::Kind::List)
    return makeError(loc,
                     "unsupported dtype {}: structured arrays are not supported; vitc reads float "
                     "and integer arrays",
                     descr.text);
  if (descr.kind != PyValue::Kind::Str)
    return makeError(loc, "header 'descr' is {}, not a dtype string", descr.text);
  std::string_view d = descr.str;
  NpyDtype out;
  if (!d.empty() && (d[0] == '<' || d[0] == '>' || d[0] == '|' || d[0] == '=')) {
    out.type.bigEndian = d[0] == '>';
    d.remove_prefix(1);
  }
  char kind = d.empty() ? '\0' : d[0];
  std::string_view digits = d.empty() ? d : d.substr(1);
  int size = 0;
  bool sized = !digits.empty() && digits.size() <= 2;
  for (char c : digits)
    sized = sized && std::isdigit(static_cast<unsigned char>(c));
  if (sized)
    size = std::stoi(std::string(digits));
  bool supported = false;
  if (sized && kind == 'f' && (size == 2 || size == 4 || size == 8)) {
    out.type.kind = ElementKind::Float;
    supported = true;
  } else if (sized && (kind == 'i' || kind == 'u') &&
             (size == 1 || size == 2 || size == 4 || size == 8)) {
    out.type.kind = kind == 'i' ? ElementKind::SignedInt : ElementKind::UnsignedInt;
    supported = true;
  }
  if (!supported)
    return makeError(loc, "unsupported dtype '{}' ({}); vitc reads float and integer arrays",
                     descr.str, describeKind(kind));
  out.type.bytes = size;
  out.itemsize = static_cast<size_t>(size);
  if (size == 1)
    out.type.bigEndian = false;
  return out;
}

struct NpyHeader {
  NpyDtype dtype;
  std::string descr;
  bool fortranOrder = false;
  Shape shape;
  size_t dataStart = 0;
};

Expected<NpyHeader> parseHeader(const uint8_t *data, size_t size, const Loc &loc) {
  if (size < kMagic.size() + 2 || std::memcmp(data, kMagic.data(), kMagic.size()) != 0)
    return makeError(loc, "not a .npy file: it does not start with the magic \\x93NUMPY");
  int major = data[6], minor = data[7];
  size_t lengthBytes;
  if (major == 1 && minor == 0)
    lengthBytes = 2;
  else if ((major == 2 || major == 3) && minor == 0)
    lengthBytes = 4;
  else
    return makeError(loc, "unsupported .npy format version {}.{}; vitc reads 1.0, 2.0 and 3.0",
                     major, minor);
  size_t start = 8 + lengthBytes;
  if (size < start)
    return makeError(loc, "file ends inside the .npy header length ({} bytes)", size);
  size_t headerBytes = 0;
  for (size_t i = 0; i < lengthBytes; ++i)
    headerBytes |= static_cast<size_t>(data[8 + i]) << (8 * i);
  if (headerBytes > size - start)
    return makeError(loc, "header length {} runs past the end of the file ({} bytes follow it)",
                     headerBytes, size - start);

  std::string_view text(reinterpret_cast<const char *>(data) + start, headerBytes);
  LiteralParser parser(text);
  std::optional<PyValue> dict = parser.parseWhole();
  if (!dict)
    return makeError(loc, "malformed .npy header: {}", parser.error());
  if (dict->kind != PyValue::Kind::Dict)
    return makeError(loc, "malformed .npy header: {} is not a dict", dict->text);

  NpyHeader h;
  h.dataStart = start + headerBytes;
  const PyValue *descr = field(*dict, "descr");
  const PyValue *fortran = field(*dict, "fortran_order");
  const PyValue *shape = field(*dict, "shape");
  for (auto [value, key] :
       {std::pair{descr, "descr"}, std::pair{fortran, "fortran_order"}, std::pair{shape, "shape"}})
    if (!value)
      return makeError(loc, "malformed .npy header: it has no '{}'", key);

  VITC_ASSIGN(h.dtype, parseDescr(*descr, loc));
  h.descr = descr->str;
  if (fortran->kind != PyValue::Kind::Bool)
    return makeError(loc, "malformed .npy header: 'fortran_order' is {}, not True or False",
                     fortran->text);
  h.fortranOrder = fortran->boolean;

  bool validShape = shape->kind == PyValue::Kind::Tuple;
  for (const PyValue &d : shape->items)
    validShape = validShape && d.kind == PyValue::Kind::Int && d.integer >= 0;
  if (!validShape)
    return makeError(loc,
                     "malformed .npy header: 'shape' is {}; it must be a tuple of non-negative "
                     "integers",
                     shape->text);
  int64_t numel = 1;
  for (const PyValue &d : shape->items) {
    h.shape.push_back(d.integer);
    if (__builtin_mul_overflow(numel, d.integer, &numel))
      return makeError(loc, "shape {} has more elements than fit in 64 bits", shape->text);
  }
  return h;
}

// Rearranges column-major `in` into row-major `out`. Walks `in` in order, keeping the index and
// the row-major offset up to date as a mixed-radix counter whose first digit runs fastest.
void fortranToC(const float *in, const Shape &shape, float *out) {
  int64_t n = numElements(shape);
  // Column-major and row-major agree; with no elements, the strides below could overflow.
  if (shape.size() < 2 || n == 0) {
    std::copy(in, in + n, out);
    return;
  }
  // stride[d] is the row-major stride of dimension d; index[d] the current index.
  Shape stride(shape.size(), 1), index(shape.size(), 0);
  for (size_t d = shape.size() - 1; d > 0; --d)
    stride[d - 1] = stride[d] * shape[d];
  int64_t o = 0;
  for (int64_t k = 0; k < n; ++k) {
    out[o] = in[k];
    for (size_t d = 0; d < shape.size(); ++d) {
      o += stride[d];
      if (++index[d] < shape[d])
        break;
      o -= stride[d] * shape[d];
      index[d] = 0;
    }
  }
}

// The tensor in a .npy image. With an `owner` (the mapping that holds `data`), aligned
// little-endian float32 data in C order is borrowed instead of copied.
Expected<Tensor> decodeNpy(const uint8_t *data, size_t size, const std::string &where,
                           std::shared_ptr<const void> owner) {
  Loc loc = Loc::inFile(where);
  VITC_ASSIGN(NpyHeader h, parseHeader(data, size, loc));
  uint64_t numel = static_cast<uint64_t>(numElements(h.shape));
  uint64_t needed;
  if (__builtin_mul_overflow(numel, uint64_t(h.dtype.itemsize), &needed))
    return makeError(loc, "shape {} of '{}' is too large: its byte size does not fit in 64 bits",
                     shapeString(h.shape), h.descr);
  uint64_t present = size - h.dataStart;
  if (present < needed)
    return makeError(loc,
                     "data is truncated: shape {} of '{}' needs {} bytes, the file holds {} ({} "
                     "bytes missing)",
                     shapeString(h.shape), h.descr, needed, present, needed - present);
  if (present > needed)
    return makeError(loc, "{} unexpected bytes after the data of shape {} of '{}'",
                     present - needed, shapeString(h.shape), h.descr);

  // From here on the allocation is bounded by the bytes actually present.
  const uint8_t *bytes = data + h.dataStart;
  bool cOrder = !h.fortranOrder || h.shape.size() <= 1;
  bool plainFloat =
      h.dtype.type.kind == ElementKind::Float && h.dtype.itemsize == 4 && !h.dtype.type.bigEndian;
  if (owner && cOrder && plainFloat && reinterpret_cast<uintptr_t>(bytes) % alignof(float) == 0)
    return Tensor::borrow(h.shape, reinterpret_cast<const float *>(bytes), std::move(owner));
  Tensor t = Tensor::zeros(h.shape);
  if (cOrder) {
    convertToFloat(h.dtype.type, bytes, numel, t.mutableData());
    return t;
  }
  Tensor columnMajor = Tensor::zeros(h.shape);
  convertToFloat(h.dtype.type, bytes, numel, columnMajor.mutableData());
  fortranToC(columnMajor.data(), h.shape, t.mutableData());
  return t;
}

} // namespace

size_t npyHeaderBytes(const uint8_t *prefix, size_t size) {
  if (size < kMagic.size() + 2 || std::memcmp(prefix, kMagic.data(), kMagic.size()) != 0)
    return 0;
  if (prefix[6] < 1 || prefix[6] > 3)
    return 0; // an unknown version: the parser names it
  size_t lengthBytes = prefix[6] == 1 ? 2 : 4;
  if (size < 8 + lengthBytes)
    return 0;
  size_t headerBytes = 0;
  for (size_t i = 0; i < lengthBytes; ++i)
    headerBytes |= static_cast<size_t>(prefix[8 + i]) << (8 * i);
  return 8 + lengthBytes + headerBytes;
}

Expected<NpyDeclaration> parseNpyHeader(const uint8_t *data, size_t size,
                                        const std::string &where) {
  Loc loc = Loc::inFile(where);
  VITC_ASSIGN(NpyHeader h, parseHeader(data, size, loc));
  NpyDeclaration d;
  d.shape = h.shape;
  d.descr = h.descr;
  d.type = h.dtype.type;
  d.fortranOrder = h.fortranOrder;
  d.headerBytes = h.dataStart;
  if (__builtin_mul_overflow(static_cast<uint64_t>(numElements(h.shape)),
                             uint64_t(h.dtype.itemsize), &d.dataBytes))
    return makeError(loc, "shape {} of '{}' is too large: its byte size does not fit in 64 bits",
                     shapeString(h.shape), h.descr);
  return d;
}

Expected<Tensor> readNpy(const std::string &path) {
  VITC_ASSIGN(auto file, MappedFile::open(path));
  const uint8_t *data = file->data();
  size_t size = file->size();
  return decodeNpy(data, size, path, std::move(file));
}

Expected<Tensor> parseNpy(const uint8_t *data, size_t size, const std::string &where) {
  return decodeNpy(data, size, where, nullptr);
}

std::string npyHeader(const Shape &shape) {
  std::string dims;
  for (int64_t d : shape)
    dims += fmt::format("{}, ", d);
  if (shape.size() > 1)
    dims.resize(dims.size() - 2);
  else if (shape.size() == 1)
    dims.pop_back(); // "(3,)"
  std::string dict =
      fmt::format("{{'descr': '<f4', 'fortran_order': False, 'shape': ({}), }}", dims);
  // As numpy does: pad with spaces and end with a newline so that the data starts at a multiple
  // of 64 bytes; version 2.0 only when the header outgrows the 2-byte length of version 1.0.
  auto pad = [&dict](size_t prefix) {
    return dict + std::string(64 - (prefix + dict.size() + 1) % 64, ' ') + '\n';
  };
  std::string header = pad(kMagic.size() + 2 + 2);
  bool wide = header.size() > 0xffff;
  if (wide)
    header = pad(kMagic.size() + 2 + 4);
  std::string out(kMagic);
  out += static_cast<char>(wide ? 2 : 1);
  out += '\0';
  for (size_t i = 0; i < (wide ? 4u : 2u); ++i)
    out += static_cast<char>((header.size() >> (8 * i)) & 0xff);
  return out + header;
}

Status writeNpy(const std::string &path, const Tensor &t) {
  if (t.empty())
    return makeError(Loc::inFile(path), "cannot write a tensor that has no data");
  VITC_ASSIGN(auto out, AtomicFile::create(path));
  VITC_TRY(out->write(npyHeader(t.shape())));
  VITC_TRY(out->write(t.data(), static_cast<size_t>(t.numel()) * sizeof(float)));
  return out->commit();
}

} // namespace vitc::formats
