// The runtime linked into every vitc executable: load weights and inputs, run, write outputs.
//
//   PROG --weights W.safetensors --input X.npy [--input ...] --output Y.npy [--output ...]
//        [--repeat N]
//
// It reads the program table (program_table.h) of the object it is linked with, loads each
// parameter from a safetensors file by its name (F32, BF16 or F16; a name starting with `vit.`
// is also found without that prefix, as in Hugging Face ViTModel checkpoints), runs the load
// calls (weight packing), reads float32 .npy inputs, runs the program and writes float32 .npy
// outputs. It uses nothing but the C and C++ standard libraries, so an executable needs no vitc
// install. Errors are one line on stderr and exit status 1.
#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fcntl.h>
#include <memory>
#include <string>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include <vector>

#include "backends/llvm/exe/program_table.h"

extern "C" const int64_t vitc_program[];
extern "C" const char vitc_program_names[];
extern "C" const vitc::exe::KernelFn vitc_program_kernels[];

namespace {

using vitc::exe::KernelFn;

const char *programName = "vitc-model";

[[noreturn]] void fail(const std::string &message) {
  std::fprintf(stderr, "%s: error: %s\n", programName, message.c_str());
  std::exit(1);
}

std::string shapeText(const std::vector<int64_t> &shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i)
    s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

// 64-byte aligned, zeroed floats.
struct Buffer {
  float *data = nullptr;
  void allocate(int64_t bytes) {
    size_t size = static_cast<size_t>((std::max<int64_t>(bytes, 1) + 63) / 64 * 64);
    data = static_cast<float *>(std::aligned_alloc(64, size));
    if (!data)
      fail("out of memory allocating " + std::to_string(size) + " bytes");
    std::memset(data, 0, size);
  }
  void release() {
    std::free(data);
    data = nullptr;
  }
};

// A whole file mapped read-only.
struct MappedFile {
  const uint8_t *data = nullptr;
  size_t size = 0;
  explicit MappedFile(const std::string &path) {
    int fd = open(path.c_str(), O_RDONLY);
    if (fd < 0)
      fail("cannot open " + path + ": " + std::strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0)
      fail("cannot read " + path + ": " + std::strerror(errno));
    size = static_cast<size_t>(st.st_size);
    if (size > 0) {
      void *p = mmap(nullptr, size, PROT_READ, MAP_PRIVATE, fd, 0);
      if (p == MAP_FAILED)
        fail("cannot map " + path + ": " + std::strerror(errno));
      data = static_cast<const uint8_t *>(p);
    }
    close(fd);
  }
  ~MappedFile() {
    if (data)
      munmap(const_cast<uint8_t *>(data), size);
  }
  MappedFile(const MappedFile &) = delete;
  MappedFile &operator=(const MappedFile &) = delete;
};

// Just enough JSON for a safetensors header: objects, arrays, strings, numbers, literals.
struct Json {
  enum Kind { Null, Bool, Number, String, Array, Object } kind = Null;
  double number = 0;
  std::string text;
  std::vector<Json> items;
  // An object's fields as two parallel lists: a vector may hold the incomplete Json, a pair may
  // not (clang refuses std::vector<std::pair<std::string, Json>> here).
  std::vector<std::string> fieldNames;
  std::vector<Json> fieldValues;
  const Json *field(const std::string &name) const {
    for (size_t i = 0; i < fieldNames.size(); ++i)
      if (fieldNames[i] == name)
        return &fieldValues[i];
    return nullptr;
  }
};

class JsonParser {
public:
  JsonParser(const char *p, const char *end, std::string where) : p_(p), end_(end), where_(where) {}
  Json parse() {
    Json v = value(0);
    space();
    if (p_ != end_)
      bad("trailing characters");
    return v;
  }

private:
  [[noreturn]] void bad(const std::string &what) { fail(where_ + ": bad header: " + what); }
  void space() {
    while (p_ < end_ && (*p_ == ' ' || *p_ == '\n' || *p_ == '\r' || *p_ == '\t'))
      ++p_;
  }
  bool eat(char c) {
    space();
    if (p_ < end_ && *p_ == c) {
      ++p_;
      return true;
    }
    return false;
  }
  std::string string() {
    if (!eat('"'))
      bad("expected a string");
    std::string s;
    while (p_ < end_ && *p_ != '"') {
      if (*p_ == '\\') {
        if (++p_ == end_)
          bad("unterminated string");
        char c = *p_;
        s += c == 'n'   ? '\n'
             : c == 't' ? '\t'
             : c == 'r' ? '\r'
             : c == 'b' ? '\b'
             : c == 'f' ? '\f'
                        : c;
        if (c == 'u') { // kept as written: names vitc looks up are ASCII
          s.pop_back();
          s += "\\u";
        }
        ++p_;
        continue;
      }
      s += *p_++;
    }
    if (p_ == end_)
      bad("unterminated string");
    ++p_;
    return s;
  }
  Json value(int depth) {
    if (depth > 16)
      bad("nested too deeply");
    space();
    if (p_ == end_)
      bad("unexpected end");
    Json v;
    if (*p_ == '{') {
      ++p_;
      v.kind = Json::Object;
      if (eat('}'))
        return v;
      do {
        std::string key = string();
        if (!eat(':'))
          bad("expected ':'");
        v.fieldNames.push_back(key);
        v.fieldValues.push_back(value(depth + 1));
      } while (eat(','));
      if (!eat('}'))
        bad("expected '}'");
    } else if (*p_ == '[') {
      ++p_;
      v.kind = Json::Array;
      if (eat(']'))
        return v;
      do
        v.items.push_back(value(depth + 1));
      while (eat(','));
      if (!eat(']'))
        bad("expected ']'");
    } else if (*p_ == '"') {
      v.kind = Json::String;
      v.text = string();
    } else if (end_ - p_ >= 4 && std::strncmp(p_, "true", 4) == 0) {
      v.kind = Json::Bool;
      p_ += 4;
    } else if (end_ - p_ >= 5 && std::strncmp(p_, "false", 5) == 0) {
      v.kind = Json::Bool;
      p_ += 5;
    } else if (end_ - p_ >= 4 && std::strncmp(p_, "null", 4) == 0) {
      p_ += 4;
    } else {
      std::string digits;
      while (p_ < end_ && (std::strchr("+-.eE", *p_) || (*p_ >= '0' && *p_ <= '9')))
        digits += *p_++;
      if (digits.empty())
        bad("unexpected character");
      v.kind = Json::Number;
      v.number = std::strtod(digits.c_str(), nullptr);
    }
    return v;
  }
  const char *p_, *end_;
  std::string where_;
};

float halfToFloat(uint16_t h) {
  uint32_t sign = (h & 0x8000u) << 16, exp = (h >> 10) & 0x1f, mant = h & 0x3ffu;
  uint32_t bits;
  if (exp == 0) {
    if (mant == 0) {
      bits = sign;
    } else { // subnormal: normalize
      int e = -1;
      do {
        ++e;
        mant <<= 1;
      } while ((mant & 0x400u) == 0);
      bits = sign | static_cast<uint32_t>(127 - 15 - e) << 23 | (mant & 0x3ffu) << 13;
    }
  } else if (exp == 31) {
    bits = sign | 0x7f800000u | mant << 13;
  } else {
    bits = sign | (exp + 127 - 15) << 23 | mant << 13;
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

class Safetensors {
public:
  explicit Safetensors(const std::string &path) : path_(path), file_(path) {
    if (file_.size < 8)
      fail(path + ": not a safetensors file");
    uint64_t n = 0;
    std::memcpy(&n, file_.data, 8);
    if (n > file_.size - 8)
      fail(path + ": header length " + std::to_string(n) + " runs past the end of the file");
    const char *text = reinterpret_cast<const char *>(file_.data + 8);
    header_ = JsonParser(text, text + n, path).parse();
    if (header_.kind != Json::Object)
      fail(path + ": bad header: not an object");
    dataStart_ = 8 + n;
  }

  // Loads `name` (or its `vit.`-less form) as float32 of the given shape into `out`.
  void load(const std::string &name, const std::vector<int64_t> &shape, float *out) const {
    const Json *entry = header_.field(name);
    std::string found = name;
    if (!entry && name.rfind("vit.", 0) == 0) {
      found = name.substr(4);
      entry = header_.field(found);
    }
    if (!entry || entry->kind != Json::Object)
      fail(path_ + ": missing tensor '" + name + "' (shape " + shapeText(shape) + ")");
    const Json *dtype = entry->field("dtype"), *dims = entry->field("shape"),
               *offsets = entry->field("data_offsets");
    if (!dtype || !dims || !offsets || dims->kind != Json::Array || offsets->kind != Json::Array ||
        offsets->items.size() != 2)
      fail(path_ + ": tensor '" + found + "' has a malformed entry");
    std::vector<int64_t> have;
    for (const Json &d : dims->items)
      have.push_back(static_cast<int64_t>(d.number));
    if (have != shape)
      fail(path_ + ": tensor '" + found + "' has shape " + shapeText(have) + ", the model needs " +
           shapeText(shape));
    int64_t count = 1;
    for (int64_t d : shape)
      count *= d;
    int elementBytes = dtype->text == "F32"                            ? 4
                       : dtype->text == "BF16" || dtype->text == "F16" ? 2
                                                                       : 0;
    if (elementBytes == 0)
      fail(path_ + ": tensor '" + found + "' has dtype " + dtype->text +
           "; executables read F32, BF16 and F16");
    auto begin = static_cast<uint64_t>(offsets->items[0].number);
    auto end = static_cast<uint64_t>(offsets->items[1].number);
    if (end < begin || end - begin != static_cast<uint64_t>(count * elementBytes) ||
        dataStart_ + end > file_.size)
      fail(path_ + ": tensor '" + found + "' has a bad byte range");
    const uint8_t *src = file_.data + dataStart_ + begin;
    if (elementBytes == 4) {
      std::memcpy(out, src, static_cast<size_t>(count) * 4);
      return;
    }
    bool bf16 = dtype->text == "BF16";
    for (int64_t i = 0; i < count; ++i) {
      uint16_t h;
      std::memcpy(&h, src + 2 * i, 2);
      out[i] = bf16 ? bf16ToFloat(h) : halfToFloat(h);
    }
  }

private:
  std::string path_;
  MappedFile file_;
  Json header_;
  uint64_t dataStart_ = 0;
};

// Reads a float32 C-ordered .npy file of exactly `shape` into `out`.
void readNpy(const std::string &path, const std::vector<int64_t> &shape, float *out) {
  MappedFile file(path);
  const uint8_t *d = file.data;
  if (file.size < 10 || std::memcmp(d, "\x93NUMPY", 6) != 0)
    fail(path + ": not a .npy file");
  size_t headerLength = 0, start = 0;
  if (d[6] == 1) {
    headerLength = d[8] | static_cast<size_t>(d[9]) << 8;
    start = 10;
  } else {
    if (file.size < 12)
      fail(path + ": not a .npy file");
    headerLength = d[8] | static_cast<size_t>(d[9]) << 8 | static_cast<size_t>(d[10]) << 16 |
                   static_cast<size_t>(d[11]) << 24;
    start = 12;
  }
  if (start + headerLength > file.size)
    fail(path + ": truncated header");
  std::string header(reinterpret_cast<const char *>(d + start), headerLength);
  auto after = [&](const std::string &key) {
    size_t at = header.find("'" + key + "'");
    if (at == std::string::npos)
      fail(path + ": header has no '" + key + "'");
    at = header.find(':', at);
    if (at == std::string::npos)
      fail(path + ": bad header");
    at = header.find_first_not_of(' ', at + 1);
    return at == std::string::npos ? header.size() : at;
  };
  size_t descr = after("descr");
  if (header.compare(descr, 5, "'<f4'") != 0)
    fail(path + ": executables read float32 ('<f4') arrays, this one is " +
         header.substr(descr, header.find(',', descr) - descr));
  if (header.compare(after("fortran_order"), 5, "False") != 0)
    fail(path + ": Fortran-ordered arrays are not supported");
  size_t open = after("shape"), close = header.find(')', open);
  if (header[open] != '(' || close == std::string::npos)
    fail(path + ": bad shape in header");
  std::vector<int64_t> have;
  for (size_t at = open + 1; at < close;) {
    size_t next = header.find_first_of(",)", at);
    std::string item = header.substr(at, next - at);
    if (item.find_first_not_of(' ') != std::string::npos)
      have.push_back(std::strtoll(item.c_str(), nullptr, 10));
    at = next + 1;
  }
  if (have != shape)
    fail(path + ": the array has shape " + shapeText(have) + ", the model takes " +
         shapeText(shape));
  int64_t count = 1;
  for (int64_t s : shape)
    count *= s;
  size_t data = start + headerLength;
  if (file.size - data != static_cast<size_t>(count) * 4)
    fail(path + ": data size does not match the shape");
  std::memcpy(out, d + data, static_cast<size_t>(count) * 4);
}

void writeNpy(const std::string &path, const std::vector<int64_t> &shape, const float *data) {
  std::string dict = "{'descr': '<f4', 'fortran_order': False, 'shape': (";
  int64_t count = 1;
  for (int64_t s : shape) {
    dict += std::to_string(s) + ", ";
    count *= s;
  }
  if (shape.size() > 1)
    dict.resize(dict.size() - 1); // "(2, 3)" and "(5,)"
  else if (shape.size() == 1)
    dict.pop_back();
  dict += "), }";
  size_t total = (10 + dict.size() + 1 + 63) / 64 * 64;
  dict.append(total - 10 - dict.size() - 1, ' ');
  dict += '\n';
  std::string head = "\x93NUMPY\x01";
  head += '\0';
  head += static_cast<char>(dict.size() & 0xff);
  head += static_cast<char>(dict.size() >> 8);
  // A regular file is written beside its target and renamed over it, so it appears whole or not
  // at all; a device or FIFO (`/dev/null`) is written in place, since a rename would replace it.
  struct stat st {};
  bool inPlace = ::stat(path.c_str(), &st) == 0 && !S_ISREG(st.st_mode);
  std::string temp = inPlace ? path : path + ".tmp" + std::to_string(getpid());
  FILE *f = std::fopen(temp.c_str(), "wb");
  if (!f)
    fail("cannot write " + path + ": " + std::strerror(errno));
  bool ok = std::fwrite(head.data(), 1, head.size(), f) == head.size() &&
            std::fwrite(dict.data(), 1, dict.size(), f) == dict.size() &&
            std::fwrite(data, 4, static_cast<size_t>(count), f) == static_cast<size_t>(count);
  ok = std::fclose(f) == 0 && ok;
  if (!ok || (!inPlace && std::rename(temp.c_str(), path.c_str()) != 0)) {
    if (!inPlace)
      std::remove(temp.c_str());
    fail("cannot write " + path + ": " + std::strerror(errno));
  }
}

// A cursor over the program table.
struct TableReader {
  const int64_t *p = vitc_program;
  int64_t next() { return *p++; }
  std::vector<int64_t> shape() {
    int64_t rank = next();
    std::vector<int64_t> s;
    for (int64_t i = 0; i < rank; ++i)
      s.push_back(next());
    return s;
  }
};

struct Ref {
  int64_t storage, index, offset;
};

struct Call {
  KernelFn fn;
  int64_t work;
  std::vector<Ref> args;
};

void usage() {
  std::fprintf(stderr,
               "usage: %s --weights W.safetensors --input X.npy --output Y.npy [--repeat N]\n"
               "  runs the vitc-compiled model on one device; --input and --output repeat for\n"
               "  models with several, in order\n",
               programName);
}

} // namespace

int main(int argc, char **argv) {
  programName = argv[0];
  std::string weights;
  std::vector<std::string> inputPaths, outputPaths;
  int repeat = 1;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc)
        fail("missing value after " + a);
      return argv[++i];
    };
    if (a == "--weights")
      weights = value();
    else if (a == "--input")
      inputPaths.push_back(value());
    else if (a == "--output")
      outputPaths.push_back(value());
    else if (a == "--repeat")
      repeat = std::max(1, std::atoi(value().c_str()));
    else if (a == "--help" || a == "-h") {
      usage();
      return 0;
    } else {
      usage();
      fail("unknown argument '" + a + "'");
    }
  }

  TableReader t;
  if (t.next() != vitc::exe::kProgramMagic || t.next() != vitc::exe::kProgramVersion)
    fail("the program table is damaged or from another vitc version");
  int64_t workspaceBytes = t.next(), scratchBytes = t.next();
  int64_t numParams = t.next(), numInputs = t.next(), numOutputs = t.next();
  int64_t numConsts = t.next(), numLoad = t.next(), numRun = t.next();
  if (weights.empty() && numParams > 0)
    fail("missing --weights");
  if (static_cast<int64_t>(inputPaths.size()) != numInputs)
    fail("the model takes " + std::to_string(numInputs) + " input(s), " +
         std::to_string(inputPaths.size()) + " given with --input");
  if (static_cast<int64_t>(outputPaths.size()) != numOutputs)
    fail("the model has " + std::to_string(numOutputs) + " output(s), " +
         std::to_string(outputPaths.size()) + " given with --output");
  // An output that is an input under another name (a link, "./x") would overwrite it: files are
  // compared by identity, not by spelling.
  for (const std::string &out : outputPaths) {
    struct stat o {};
    if (::stat(out.c_str(), &o) != 0 || !S_ISREG(o.st_mode))
      continue;
    std::vector<std::pair<const char *, std::string>> reads{{"--weights", weights}};
    for (const std::string &in : inputPaths)
      reads.emplace_back("--input", in);
    for (const std::string &in : outputPaths)
      if (&in != &out)
        reads.emplace_back("--output", in);
    for (const auto &[flag, in] : reads) {
      struct stat i {};
      if (::stat(in.c_str(), &i) == 0 && i.st_dev == o.st_dev && i.st_ino == o.st_ino)
        fail("--output '" + out + "' is the same file as " + flag + " '" + in +
             "': refusing to overwrite it");
    }
  }

  std::vector<Buffer> params(static_cast<size_t>(numParams));
  std::vector<bool> paramKeep;
  {
    std::unique_ptr<Safetensors> file;
    if (numParams > 0)
      file = std::make_unique<Safetensors>(weights);
    for (auto &param : params) {
      int64_t nameOffset = t.next(), nameLength = t.next();
      paramKeep.push_back(t.next() != 0);
      std::vector<int64_t> shape = t.shape();
      int64_t count = 1;
      for (int64_t s : shape)
        count *= s;
      param.allocate(count * 4);
      file->load(std::string(vitc_program_names + nameOffset, static_cast<size_t>(nameLength)),
                 shape, param.data);
    }
  }
  std::vector<Buffer> inputs(static_cast<size_t>(numInputs));
  for (size_t i = 0; i < inputs.size(); ++i) {
    t.next(); // name offset and length: inputs are given in order
    t.next();
    std::vector<int64_t> shape = t.shape();
    int64_t count = 1;
    for (int64_t s : shape)
      count *= s;
    inputs[i].allocate(count * 4);
    readNpy(inputPaths[i], shape, inputs[i].data);
  }
  std::vector<Buffer> consts(static_cast<size_t>(numConsts));
  std::vector<int64_t> constBytes;
  std::vector<bool> constKeep;
  for (int64_t i = 0; i < numConsts; ++i) {
    constBytes.push_back(t.next());
    constKeep.push_back(t.next() != 0);
  }
  auto readCalls = [&](int64_t n) {
    std::vector<Call> calls;
    for (int64_t i = 0; i < n; ++i) {
      Call c;
      c.fn = vitc_program_kernels[t.next()];
      c.work = t.next();
      int64_t args = t.next();
      for (int64_t a = 0; a < args; ++a) {
        Ref r;
        r.storage = t.next();
        r.index = t.next();
        r.offset = t.next();
        c.args.push_back(r);
      }
      calls.push_back(std::move(c));
    }
    return calls;
  };
  std::vector<Call> load = readCalls(numLoad), run = readCalls(numRun);
  Buffer workspace, scratch;
  workspace.allocate(workspaceBytes);
  scratch.allocate(scratchBytes);
  auto address = [&](const Ref &r) -> float * {
    float *base = nullptr;
    switch (r.storage) {
    case vitc::exe::kWorkspace:
      base = workspace.data;
      break;
    case vitc::exe::kParam:
      base = params[static_cast<size_t>(r.index)].data;
      break;
    case vitc::exe::kInput:
      base = inputs[static_cast<size_t>(r.index)].data;
      break;
    case vitc::exe::kConst:
      base = consts[static_cast<size_t>(r.index)].data;
      break;
    }
    return reinterpret_cast<float *>(reinterpret_cast<char *>(base) + r.offset);
  };
  auto execute = [&](const std::vector<Call> &calls) {
    std::vector<float *> args;
    for (const Call &c : calls) {
      args.clear();
      for (const Ref &r : c.args)
        args.push_back(address(r));
      c.fn(args.data(), 0, c.work, scratch.data);
    }
  };
  // Load: a constant is allocated by the first call that writes it and, unless the run reads it,
  // freed after the last call that reads it (packed weights replace the weights).
  std::vector<size_t> constLast(consts.size(), 0);
  for (size_t i = 0; i < load.size(); ++i)
    for (const Ref &r : load[i].args)
      if (r.storage == vitc::exe::kConst)
        constLast[static_cast<size_t>(r.index)] = i;
  for (size_t i = 0; i < load.size(); ++i) {
    const Ref &out = load[i].args[0];
    if (out.storage == vitc::exe::kConst && !consts[static_cast<size_t>(out.index)].data)
      consts[static_cast<size_t>(out.index)].allocate(constBytes[static_cast<size_t>(out.index)]);
    execute({load[i]});
    for (const Ref &r : load[i].args) {
      auto at = static_cast<size_t>(r.index);
      if (r.storage == vitc::exe::kConst && constLast[at] == i && !constKeep[at])
        consts[at].release();
    }
  }
  for (size_t i = 0; i < consts.size(); ++i)
    if (constKeep[i] && !consts[i].data)
      consts[i].allocate(constBytes[i]);
  for (size_t i = 0; i < params.size(); ++i)
    if (!paramKeep[i])
      params[i].release();

  auto t0 = std::chrono::steady_clock::now();
  for (int r = 0; r < repeat; ++r)
    execute(run);
  double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  if (repeat > 1)
    std::fprintf(stderr, "%s: %.3f ms per run (%d runs)\n", programName, 1e3 * seconds / repeat,
                 repeat);
  for (size_t i = 0; i < outputPaths.size(); ++i) {
    Ref r{t.next(), t.next(), t.next()};
    std::vector<int64_t> shape = t.shape();
    writeNpy(outputPaths[i], shape, address(r));
  }
  return 0;
}
