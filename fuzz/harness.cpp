// The fuzz harnesses: arbitrary bytes into each parser, and the checks on what comes out.
//
// A parser may accept or refuse its input; either way it must not crash, and what it returns must
// keep the promises its header makes. Refusals are checked for the error style of STYLE.md (one
// line, lower case, no final period). Accepted inputs go one step further where that is cheap: a
// spec or config is written back and built into a model that must verify, an IR module is printed
// and parsed again, every tensor of a weights file is loaded and read through.
#include "fuzz/harness.h"

#include <cctype>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>
#include <sys/mman.h>
#include <unistd.h>

#include "autotune/target.h"
#include "frontend/formats/npy.h"
#include "frontend/formats/npz.h"
#include "frontend/formats/safetensors.h"
#include "frontend/hf_config.h"
#include "frontend/spec.h"
#include "frontend/vit_builder.h"
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
}

void runNpy(const uint8_t *data, size_t size) {
  auto t = formats::parseNpy(data, size, "fuzz.npy");
  if (!t)
    return checkError("npy", t.error());
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
