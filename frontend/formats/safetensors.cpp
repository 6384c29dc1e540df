// safetensors: header validation, loading with conversion, and the F32 writer.
#include "frontend/formats/safetensors.h"

#include <algorithm>
#include <cstring>
#include <limits>
#include <set>
#include <unordered_set>

#include <nlohmann/json.hpp>

#include "frontend/formats/convert.h"

namespace vitc::formats {
namespace {

using Json = nlohmann::json;

// The reference implementation refuses larger headers too; it bounds what parsing may cost.
constexpr uint64_t kMaxHeaderBytes = 100'000'000;

struct DtypeInfo {
  std::string_view name;
  uint64_t bits;
  bool convertible; // loadable as float32
  ElementType type;
};

// Every dtype the format defines, so that a file holding ones vitc cannot load still opens.
constexpr DtypeInfo kDtypes[] = {
    {"BF16", 16, true, {ElementKind::BFloat, 2, false}},
    {"BOOL", 8, false, {}},
    {"C64", 64, false, {}},
    {"F16", 16, true, {ElementKind::Float, 2, false}},
    {"F32", 32, true, {ElementKind::Float, 4, false}},
    {"F4", 4, false, {}},
    {"F64", 64, true, {ElementKind::Float, 8, false}},
    {"F6_E2M3", 6, false, {}},
    {"F6_E3M2", 6, false, {}},
    {"F8_E4M3", 8, false, {}},
    {"F8_E5M2", 8, false, {}},
    {"F8_E8M0", 8, false, {}},
    {"I16", 16, true, {ElementKind::SignedInt, 2, false}},
    {"I32", 32, true, {ElementKind::SignedInt, 4, false}},
    {"I64", 64, true, {ElementKind::SignedInt, 8, false}},
    {"I8", 8, true, {ElementKind::SignedInt, 1, false}},
    {"U16", 16, true, {ElementKind::UnsignedInt, 2, false}},
    {"U32", 32, true, {ElementKind::UnsignedInt, 4, false}},
    {"U64", 64, true, {ElementKind::UnsignedInt, 8, false}},
    {"U8", 8, true, {ElementKind::UnsignedInt, 1, false}},
};

const DtypeInfo *findDtype(std::string_view name) {
  for (const DtypeInfo &d : kDtypes)
    if (d.name == name)
      return &d;
  return nullptr;
}

uint64_t readLittleEndian64(const uint8_t *p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; --i)
    v = (v << 8) | p[i];
  return v;
}

// nlohmann's messages start with "[json.exception.parse_error.101] "; the rest reads well.
std::string jsonMessage(const std::exception &e) {
  std::string_view what = e.what();
  if (what.starts_with("[json.exception.")) {
    size_t close = what.find("] ");
    if (close != std::string_view::npos)
      what.remove_prefix(close + 2);
  }
  return std::string(what);
}

// A value for a message: scalars and flat arrays as written, other values by kind (dumping those
// would recurse as deep as they nest).
std::string jsonText(const Json &v) {
  bool flat = v.is_primitive() ||
              (v.is_array() &&
               std::none_of(v.begin(), v.end(), [](const Json &e) { return e.is_structured(); }));
  return flat ? v.dump() : fmt::format("a JSON {}", v.type_name());
}

// Reads the entries of one tensor from its header object; `dataSize` is the data section's size.
class HeaderReader {
public:
  HeaderReader(const std::string &path, uint64_t dataSize)
      : loc_(Loc::inFile(path)), dataSize_(dataSize) {}

  Expected<SafetensorsEntry> readEntry(const std::string &name, const Json &value) const {
    if (!value.is_object())
      return fail(name, "entry is a JSON {}, not an object", value.type_name());
    SafetensorsEntry entry;
    entry.name = name;

    auto dtype = value.find("dtype");
    if (dtype == value.end())
      return fail(name, "entry has no 'dtype'");
    if (!dtype->is_string())
      return fail(name, "'dtype' is a JSON {}, not a string", dtype->type_name());
    entry.dtype = dtype->get<std::string>();
    const DtypeInfo *info = findDtype(entry.dtype);
    if (!info)
      return fail(name, "unknown dtype '{}'", entry.dtype);

    VITC_ASSIGN(entry.shape, readShape(name, value));
    VITC_ASSIGN(auto range, readOffsets(name, value));
    entry.begin = range.first;
    entry.end = range.second;

    // Shape dimensions are below 2^63 each, so the products below are checked step by step.
    uint64_t bits = info->bits;
    for (int64_t d : entry.shape)
      if (__builtin_mul_overflow(bits, static_cast<uint64_t>(d), &bits))
        return fail(name, "shape {} is too large: its byte size does not fit in 64 bits",
                    shapeString(entry.shape));
    if (bits % 8 != 0)
      return fail(name, "{} {} does not fill a whole number of bytes", entry.dtype,
                  shapeString(entry.shape));
    if (entry.byteSize() != bits / 8)
      return fail(name, "data offsets [{}, {}) hold {} bytes, but {} {} needs {}", entry.begin,
                  entry.end, entry.byteSize(), entry.dtype, shapeString(entry.shape), bits / 8);
    return entry;
  }

private:
  template <typename... Args>
  Error fail(const std::string &name, fmt::format_string<Args...> f, Args &&...args) const {
    return makeError(loc_, "tensor '{}': {}", name, fmt::format(f, std::forward<Args>(args)...));
  }

  Expected<Shape> readShape(const std::string &name, const Json &value) const {
    auto shape = value.find("shape");
    if (shape == value.end())
      return fail(name, "entry has no 'shape'");
    if (!shape->is_array())
      return fail(name, "'shape' is a JSON {}, not an array", shape->type_name());
    Shape dims;
    int64_t numel = 1;
    for (size_t i = 0; i < shape->size(); ++i) {
      const Json &d = (*shape)[i];
      if (!d.is_number_integer())
        return fail(name, "shape dimension {} is {}; dimensions must be non-negative integers", i,
                    jsonText(d));
      if (d.is_number_unsigned() ? d.get<uint64_t>() > uint64_t(INT64_MAX) : d.get<int64_t>() < 0)
        return fail(name, "shape dimension {} is {}; dimensions must be non-negative integers", i,
                    jsonText(d));
      dims.push_back(d.get<int64_t>());
      if (__builtin_mul_overflow(numel, dims.back(), &numel))
        return fail(name, "shape {} has more elements than fit in 64 bits", shape->dump());
    }
    return dims;
  }

  Expected<std::pair<uint64_t, uint64_t>> readOffsets(const std::string &name,
                                                      const Json &value) const {
    auto offsets = value.find("data_offsets");
    if (offsets == value.end())
      return fail(name, "entry has no 'data_offsets'");
    if (!offsets->is_array() || offsets->size() != 2 || !(*offsets)[0].is_number_unsigned() ||
        !(*offsets)[1].is_number_unsigned())
      return fail(name, "'data_offsets' is {}; it must be [begin, end] with non-negative integers",
                  jsonText(*offsets));
    uint64_t begin = (*offsets)[0].get<uint64_t>();
    uint64_t end = (*offsets)[1].get<uint64_t>();
    if (begin > end)
      return fail(name, "data offsets [{}, {}) end before they begin", begin, end);
    if (end > dataSize_)
      return fail(name, "data offsets [{}, {}) run past the end of the data section ({} bytes)",
                  begin, end, dataSize_);
    return std::pair{begin, end};
  }

  Loc loc_;
  uint64_t dataSize_;
};

// Counts the top-level keys of a JSON object and, when asked to, finds the first one that appears
// twice. A SAX pass of its own: nlohmann's callback parser, which could see the keys while
// building the document, rescans the whole parent object after each nested object, which made a
// header of 80k entries take 35 s.
class TopLevelKeys : public nlohmann::json_sax<Json> {
public:
  explicit TopLevelKeys(bool findRepeat) : findRepeat_(findRepeat) {}

  size_t count = 0;
  std::string repeated;

  bool null() override { return true; }
  bool boolean(bool) override { return true; }
  bool number_integer(number_integer_t) override { return true; }
  bool number_unsigned(number_unsigned_t) override { return true; }
  bool number_float(number_float_t, const string_t &) override { return true; }
  bool string(string_t &) override { return true; }
  bool binary(binary_t &) override { return true; }
  bool start_object(std::size_t) override { return ++depth_, true; }
  bool end_object() override { return --depth_, true; }
  bool start_array(std::size_t) override { return ++depth_, true; }
  bool end_array() override { return --depth_, true; }
  bool key(string_t &k) override {
    if (depth_ != 1)
      return true;
    ++count;
    if (findRepeat_ && repeated.empty() && !seen_.insert(k).second)
      repeated = k;
    return true;
  }
  bool parse_error(std::size_t, const std::string &, const nlohmann::detail::exception &) override {
    return false;
  }

private:
  bool findRepeat_;
  int depth_ = 0;
  std::unordered_set<std::string> seen_;
};

// Parses the header text, refusing repeated top-level keys (JSON parsers keep only one of them,
// which would hide a tensor).
Expected<Json> parseHeader(const std::string &path, const char *begin, const char *end) {
  Json header;
  try {
    header = Json::parse(begin, end);
  } catch (const std::exception &e) {
    return makeError(Loc::inFile(path), "header is not valid JSON: {}", jsonMessage(e));
  }
  if (!header.is_object())
    return makeError(Loc::inFile(path), "header is a JSON {}, not an object", header.type_name());
  // The document keeps one value per key: more keys in the text than in it means a repeat, which
  // a second pass then names.
  try {
    TopLevelKeys keys(false);
    Json::sax_parse(begin, end, &keys);
    if (keys.count != header.size()) {
      TopLevelKeys named(true);
      Json::sax_parse(begin, end, &named);
      return makeError(Loc::inFile(path), "'{}' appears twice in the header", named.repeated);
    }
  } catch (const std::exception &e) { // it parsed once already
    return makeError(Loc::inFile(path), "header is not valid JSON: {}", jsonMessage(e));
  }
  return header;
}

Expected<std::map<std::string, std::string>> readMetadata(const std::string &path,
                                                          const Json &value) {
  if (!value.is_object())
    return makeError(Loc::inFile(path), "'__metadata__' is a JSON {}, not an object of strings",
                     value.type_name());
  std::map<std::string, std::string> metadata;
  for (const auto &[key, v] : value.items()) {
    if (!v.is_string())
      return makeError(Loc::inFile(path), "'__metadata__' entry '{}' is a JSON {}, not a string",
                       key, v.type_name());
    metadata.emplace(key, v.get<std::string>());
  }
  return metadata;
}

// Byte ranges may leave gaps but must not share bytes; empty ranges share none.
Status checkNoOverlap(const std::string &path, const std::vector<SafetensorsEntry> &entries) {
  std::vector<const SafetensorsEntry *> byOffset;
  for (const SafetensorsEntry &e : entries)
    if (e.byteSize() > 0)
      byOffset.push_back(&e);
  std::sort(byOffset.begin(), byOffset.end(),
            [](const SafetensorsEntry *a, const SafetensorsEntry *b) {
              return std::tie(a->begin, a->end, a->name) < std::tie(b->begin, b->end, b->name);
            });
  for (size_t i = 1; i < byOffset.size(); ++i) {
    const SafetensorsEntry &a = *byOffset[i - 1];
    const SafetensorsEntry &b = *byOffset[i];
    if (b.begin < a.end)
      return makeError(Loc::inFile(path), "tensors '{}' [{}, {}) and '{}' [{}, {}) overlap", a.name,
                       a.begin, a.end, b.name, b.begin, b.end);
  }
  return Status::ok();
}

} // namespace

Expected<SafetensorsFile> SafetensorsFile::open(const std::string &path) {
  VITC_ASSIGN(auto file, MappedFile::open(path));
  Loc loc = Loc::inFile(path);
  uint64_t size = file->size();
  if (size < 8)
    return makeError(loc, "file is {} bytes, too short for the 8-byte header length", size);
  uint64_t headerBytes = readLittleEndian64(file->data());
  if (headerBytes > kMaxHeaderBytes)
    return makeError(loc, "header length {} is larger than the {}-byte limit", headerBytes,
                     kMaxHeaderBytes);
  if (headerBytes > size - 8)
    return makeError(loc, "header length {} runs past the end of the file ({} bytes follow it)",
                     headerBytes, size - 8);

  const char *text = reinterpret_cast<const char *>(file->data()) + 8;
  VITC_ASSIGN(Json header, parseHeader(path, text, text + headerBytes));

  SafetensorsFile st;
  st.path_ = path;
  st.dataStart_ = 8 + headerBytes;
  HeaderReader reader(path, size - st.dataStart_);
  for (const auto &[name, value] : header.items()) {
    if (name == "__metadata__") {
      VITC_ASSIGN(st.metadata_, readMetadata(path, value));
      continue;
    }
    VITC_ASSIGN(auto entry, reader.readEntry(name, value));
    st.entries_.push_back(std::move(entry));
  }
  // nlohmann's objects iterate in key order already; sorting states the promise here.
  std::sort(st.entries_.begin(), st.entries_.end(),
            [](const auto &a, const auto &b) { return a.name < b.name; });
  VITC_TRY(checkNoOverlap(path, st.entries_));
  st.file_ = std::move(file);
  return st;
}

const SafetensorsEntry *SafetensorsFile::find(std::string_view name) const {
  auto it =
      std::lower_bound(entries_.begin(), entries_.end(), name,
                       [](const SafetensorsEntry &e, std::string_view n) { return e.name < n; });
  if (it == entries_.end() || it->name != name)
    return nullptr;
  return &*it;
}

Expected<Tensor> SafetensorsFile::load(std::string_view name) const {
  const SafetensorsEntry *entry = find(name);
  if (!entry)
    return makeError(Loc::inFile(path_), "no tensor named '{}'", name);
  const DtypeInfo *info = findDtype(entry->dtype);
  if (!info->convertible)
    return makeError(Loc::inFile(path_),
                     "tensor '{}': dtype {} is not supported; vitc loads F32, F16, BF16, F64 and "
                     "integer tensors",
                     name, entry->dtype);
  const uint8_t *bytes = file_->data() + dataStart_ + entry->begin;
  if (entry->dtype == "F32" && reinterpret_cast<uintptr_t>(bytes) % alignof(float) == 0)
    return Tensor::borrow(entry->shape, reinterpret_cast<const float *>(bytes), file_);
  // open() checked that the byte range holds exactly numel elements, so the allocation is at most
  // a small multiple of the file's size.
  VITC_ASSIGN(Tensor t, Tensor::tryZeros(entry->shape, fmt::format("tensor '{}'", name)));
  convertToFloat(info->type, bytes, static_cast<size_t>(t.numel()), t.mutableData());
  return t;
}

Status writeSafetensors(const std::string &path,
                        const std::vector<std::pair<std::string, Tensor>> &tensors,
                        const std::map<std::string, std::string> &metadata) {
  Loc loc = Loc::inFile(path);
  // Ordered so that the header lists the tensors in the order of the data.
  nlohmann::ordered_json header = nlohmann::ordered_json::object();
  if (!metadata.empty())
    header["__metadata__"] = metadata;
  std::set<std::string_view> names;
  uint64_t offset = 0;
  for (const auto &[name, t] : tensors) {
    if (name.empty() || name == "__metadata__")
      return makeError(loc, "cannot write a tensor named '{}'", name);
    if (!names.insert(name).second)
      return makeError(loc, "tensor '{}' is given twice", name);
    if (t.empty())
      return makeError(loc, "tensor '{}' has no data", name);
    uint64_t bytes = static_cast<uint64_t>(t.numel()) * sizeof(float);
    header[name] = {
        {"dtype", "F32"}, {"shape", t.shape()}, {"data_offsets", {offset, offset + bytes}}};
    offset += bytes;
  }
  std::string text;
  try {
    text = header.dump();
  } catch (const std::exception &e) {
    return makeError(loc, "cannot write the header: {}", jsonMessage(e));
  }
  text.append((8 - text.size() % 8) % 8, ' ');

  uint8_t length[8];
  for (int i = 0; i < 8; ++i)
    length[i] = static_cast<uint8_t>(static_cast<uint64_t>(text.size()) >> (8 * i));
  VITC_ASSIGN(auto out, AtomicFile::create(path));
  VITC_TRY(out->write(length, sizeof length));
  VITC_TRY(out->write(text));
  for (const auto &[name, t] : tensors)
    VITC_TRY(out->write(t.data(), static_cast<size_t>(t.numel()) * sizeof(float)));
  return out->commit();
}

} // namespace vitc::formats
