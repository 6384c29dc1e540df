// The fuzz harnesses: arbitrary bytes into each parser, and the checks on what comes out.
//
// A parser may accept or refuse its input; either way it must not crash, and what it returns must
// keep the promises its header makes. Refusals are checked for the error style of STYLE.md (one
// line, lower case, no final period). Accepted inputs go one step further where that is cheap: a
// spec or config is written back and built into a model that must verify, an IR module is printed
// and parsed again, every tensor of a weights file is loaded, read through and bound by name to a
// signature as the standalone executable binds it.
#include "fuzz/harness.h"

#include <cctype>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <string_view>
#include <sys/mman.h>
#include <unistd.h>

#include "autotune/target.h"
#include "frontend/formats/bind.h"
#include "frontend/formats/npy.h"
#include "frontend/formats/npz.h"
#include "frontend/formats/safetensors.h"
#include "frontend/hf_config.h"
#include "frontend/onnx/onnx_import.h"
#include "frontend/spec.h"
#include "frontend/vit_builder.h"
#include "ir/signature.h"
#include "ir/text.h"
#include "ir/verifier.h"
#include "passes/layout.h"
#include "passes/pass_options.h"

namespace vitc::fuzz {
namespace {

[[noreturn]] void fail(const char *target, const std::string &what) {
  std::fprintf(stderr, "vitc fuzz %s: %s\n", target, what.c_str());
  std::fflush(stderr);
  std::abort();
}

// STYLE.md: one line, lower case (an acronym such as "CRC" may lead), no final period.
void checkError(const char *target, const Error &e) {
  std::string line = e.str();
  const std::string &m = e.message();
  if (line.find('\n') != std::string::npos)
    fail(target, "error is not one line: " + line);
  if (m.empty())
    fail(target, "error has no message: " + line);
  bool acronym = m.size() > 1 && std::isupper(static_cast<unsigned char>(m[1]));
  if (std::isupper(static_cast<unsigned char>(m[0])) && !acronym)
    fail(target, "error does not start in lower case: " + line);
  if (m.back() == '.')
    fail(target, "error ends with a period: " + line);
}

std::string_view textOf(const uint8_t *data, size_t size) {
  return {reinterpret_cast<const char *>(data), size};
}

// The input as a file, for the parsers that open a path: a memfd, so no disk is touched.
class MemFile {
public:
  MemFile(const uint8_t *data, size_t size) {
    fd_ = ::memfd_create("vitc-fuzz", MFD_CLOEXEC);
    if (fd_ < 0)
      fail("harness", "memfd_create failed");
    while (size > 0) {
      ssize_t n = ::write(fd_, data, size);
      if (n <= 0)
        fail("harness", "cannot write the input to its memfd");
      data += n;
      size -= static_cast<size_t>(n);
    }
    path_ = "/proc/self/fd/" + std::to_string(fd_);
  }
  ~MemFile() { ::close(fd_); }
  MemFile(const MemFile &) = delete;
  MemFile &operator=(const MemFile &) = delete;
  const std::string &path() const { return path_; }

private:
  int fd_ = -1;
  std::string path_;
};

// Reads every element, so that a tensor pointing outside its storage is caught.
void touch(const Tensor &t) {
  float sum = 0;
  for (int64_t i = 0; i < t.numel(); ++i)
    sum += t.data()[i];
  volatile float sink = sum;
  (void)sink;
}

// parse(print(m)) must equal m, and printing must be deterministic.
void checkRoundTrip(const char *target, const ir::Module &m) {
  std::string printed = ir::print(m);
  auto again = ir::parseModule(printed, "printed.ir");
  if (!again)
    fail(target, "printed module does not parse: " + again.error().str() + "\n" + printed);
  if (!ir::equal(m, **again))
    fail(target, "printed module parses to a different module:\n" + printed);
  if (ir::print(**again) != printed)
    fail(target, "printing is not deterministic:\n" + printed);
}

// A config the frontend accepted must give a model that verifies and round-trips. Building
// allocates no weights, so only the depth (the number of ops) bounds what this costs; sizes are
// kept as they are so that products that overflow are caught.
void checkModel(const char *target, const frontend::ModelConfig &c) {
  constexpr int64_t kMaxDepth = 4;
  if (c.depth > kMaxDepth)
    return;
  std::unique_ptr<ir::Module> m = frontend::buildVit(c, 1);
  Diagnostics d = ir::verify(*m);
  if (!d.empty())
    fail(target, "the model of an accepted config does not verify:\n" + d.str());
  checkRoundTrip(target, *m);
}

// writeSpec(c) must read back, and write the same text again.
void checkWrittenSpec(const char *target, const frontend::ModelConfig &c) {
  std::string written = frontend::writeSpec(c);
  auto again = frontend::parseSpec(written, "written.vit");
  if (!again)
    fail(target, "the written spec does not parse: " + again.error().str() + "\n" + written);
  if (frontend::writeSpec(*again) != written)
    fail(target, "the written spec reads back differently:\n" + written);
}

// A parsed model description: a one-line error, or a config that writes back and builds.
void checkConfig(const char *target, const Expected<frontend::ModelConfig> &c) {
  if (!c)
    return checkError(target, c.error());
  checkWrittenSpec(target, *c);
  checkModel(target, *c);
}

// bindWeights as the standalone executable and `vitc run` call it. Against a signature asking for
// each tensor of the file as its header declares it, it binds every one with that shape, or
// refuses in one line (a dtype a weight may not have). Against one that asks for the first tensor
// in another shape, for a tensor the file lacks, and not for its last tensor, it refuses in one
// line.
void checkBinding(const std::string &path, const std::vector<formats::SafetensorsEntry> &entries) {
  auto specOf = [](const std::string &name, const Shape &shape) {
    return TensorSpec{name, DType::F32, shape, Sharding::replicated(shape.size())};
  };
  Signature exact{Mesh::single(), {}, {}, {}};
  for (const formats::SafetensorsEntry &e : entries)
    exact.params.push_back(specOf(e.name, e.shape));
  auto source = formats::openSafetensorsWeights(path);
  if (!source)
    fail("safetensors", "a file that opened does not open as weights: " + source.error().str());
  auto bound = formats::bindWeights(exact, **source);
  if (!bound) {
    checkError("safetensors", bound.error());
  } else {
    for (size_t i = 0; i < entries.size(); ++i) {
      if ((*bound)[i].shape() != entries[i].shape)
        fail("safetensors",
             "tensor '" + entries[i].name + "' binds as " + shapeString((*bound)[i].shape()));
      touch((*bound)[i]);
    }
  }

  if (entries.empty())
    return;
  Signature wrong{Mesh::single(), {}, {}, {}};
  Shape other = entries[0].shape;
  other.push_back(1);
  wrong.params.push_back(specOf(entries[0].name, other));
  wrong.params.push_back(specOf("fuzz.missing", {2}));
  for (size_t i = 1; i + 1 < entries.size(); ++i)
    wrong.params.push_back(specOf(entries[i].name, entries[i].shape));
  auto again = formats::openSafetensorsWeights(path);
  if (!again)
    fail("safetensors", "a file that opened does not open again: " + again.error().str());
  auto refused = formats::bindWeights(wrong, **again);
  if (refused)
    fail("safetensors", "a signature with a missing tensor binds");
  checkError("safetensors", refused.error());
}

} // namespace

void runSpec(const uint8_t *data, size_t size) {
  checkConfig("spec", frontend::parseSpec(textOf(data, size), "fuzz.vit"));
}

void runIr(const uint8_t *data, size_t size) {
  auto m = ir::parseModule(textOf(data, size), "fuzz.ir");
  if (!m)
    return checkError("ir", m.error());
  Diagnostics d = ir::verify(**m);
  for (const Error &e : d.errors)
    checkError("ir", e);
  checkRoundTrip("ir", **m);
}

void runOnnx(const uint8_t *data, size_t size) {
  auto m = onnximport::importOnnxBytes(textOf(data, size), "fuzz.onnx", 2);
  if (!m)
    return checkError("onnx", m.error());
  Diagnostics d = ir::verify(**m);
  if (!d.empty())
    fail("onnx", "an imported model does not verify: " + d.errors.front().str());
  checkRoundTrip("onnx", **m);
  // The file's own weights bind to what it imported, or say in one line why not.
  MemFile file(data, size);
  auto source = onnximport::openOnnxWeights(file.path());
  if (!source)
    return checkError("onnx", source.error());
  auto params = formats::bindWeights(ir::signatureOf(**m), **source);
  if (!params)
    checkError("onnx", params.error());
}

void runHfConfig(const uint8_t *data, size_t size) {
  checkConfig("hf_config", frontend::parseHfConfig(textOf(data, size), "fuzz/config.json"));
}

void runSafetensors(const uint8_t *data, size_t size) {
  MemFile file(data, size);
  auto st = formats::SafetensorsFile::open(file.path());
  if (!st)
    return checkError("safetensors", st.error());
  for (const formats::SafetensorsEntry &e : st->entries()) {
    auto t = st->load(e.name);
    if (!t) {
      checkError("safetensors", t.error());
      continue;
    }
    if (t->shape() != e.shape)
      fail("safetensors", "tensor '" + e.name + "' loads as " + shapeString(t->shape()) +
                              ", its header says " + shapeString(e.shape));
    touch(*t);
  }
  checkBinding(file.path(), st->entries());
}

void runNpy(const uint8_t *data, size_t size) {
  auto t = formats::parseNpy(data, size, "fuzz.npy");
  // The standalone executable and `vitc run` read inputs from a mapped file, which may borrow the
  // data instead of copying it: the same array or the same refusal.
  MemFile file(data, size);
  auto mapped = formats::readNpy(file.path());
  if (bool(t) != bool(mapped))
    fail("npy", "parseNpy and readNpy disagree on whether the file is valid");
  if (!t) {
    checkError("npy", mapped.error());
    return checkError("npy", t.error());
  }
  size_t bytes = static_cast<size_t>(t->numel()) * sizeof(float);
  if (t->shape() != mapped->shape() ||
      (bytes > 0 && std::memcmp(t->data(), mapped->data(), bytes) != 0))
    fail("npy", "parseNpy and readNpy read different arrays");
  touch(*t);
}

void runNpz(const uint8_t *data, size_t size) {
  MemFile file(data, size);
  auto npz = formats::NpzFile::open(file.path());
  if (!npz)
    return checkError("npz", npz.error());
  for (const std::string &name : npz->names()) {
    if (!npz->contains(name))
      fail("npz", "names() lists '" + name + "' but contains() denies it");
    auto t = npz->load(name);
    if (!t) {
      checkError("npz", t.error());
      continue;
    }
    touch(*t);
  }
}

void runLayout(const uint8_t *data, size_t size) {
  MemFile file(data, size);
  auto layout = passes::readLayoutFile(file.path());
  if (!layout) {
    checkError("layout", layout.error());
  } else {
    // As `--layout` does: the mesh string goes to parseMesh; a layout written back reads the same.
    ir::Mesh mesh = ir::Mesh::single();
    if (!layout->mesh.empty()) {
      auto parsed = ir::parseMesh(layout->mesh, Loc::inFile(file.path()));
      if (parsed)
        mesh = *parsed;
      else
        checkError("layout", parsed.error());
    }
    // Each setting printed as `--pass-option` text parses back to the same value.
    passes::PassOptions fromFile{layout->layout}, reparsed;
    for (const auto &[key, value] : passes::passSettingsOf(fromFile)) {
      auto setting = passes::PassSetting::parse(key, value);
      if (!setting)
        fail("layout", "a layout's setting does not parse: " + setting.error().str());
      setting->applyTo(reparsed);
    }
    if (!(reparsed.layout == fromFile.layout))
      fail("layout", "a layout does not survive its pass settings");
    std::string written = passes::writeLayoutJson(layout->layout, mesh);
    MemFile writtenFile(reinterpret_cast<const uint8_t *>(written.data()), written.size());
    auto again = passes::readLayoutFile(writtenFile.path());
    if (!again)
      fail("layout", "a written layout does not read back: " + again.error().str());
    if (!(again->layout == layout->layout))
      fail("layout", "a written layout reads back differently:\n" + written);
  }

  auto target = autotune::parseTarget(textOf(data, size), "fuzz.json");
  if (!target)
    return checkError("target", target.error());
  std::string written = autotune::writeTarget(*target);
  auto again = autotune::parseTarget(written, "fuzz.json");
  if (!again)
    fail("target", "a written target does not read back: " + again.error().str() + "\n" + written);
}

} // namespace vitc::fuzz
