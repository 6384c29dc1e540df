// The runtime linked into every vitc executable: load weights and inputs, run, write outputs.
//
//   PROG --weights W.safetensors --input X.npy [--input ...] --output Y.npy [--output ...]
//        [--allow-unused-weights] [--allow-nonfinite] [--repeat N]
//
// It reads the program table (program_table.h) of the object it is linked with, binds the
// parameters from a safetensors file by name with `bindWeights`, exactly as `vitc run` does (a
// name starting with `vit.` is also found without that prefix; a file with tensors of other
// shapes, missing tensors or tensors the model does not use is refused in one line), runs the load
// calls (weight packing), reads .npy inputs, runs the program and writes float32 .npy outputs. The
// files are read and written by vitc's own format code (frontend/formats: the core readers,
// compiled into this library with what they need of support/ and program/, fmt header-only), so
// an executable needs no vitc install and nothing beyond libc at run time. Errors are one line on
// stderr and exit status 1; a weights file truncated while mapped is one such error, not a
// SIGBUS, and Ctrl-C leaves no half-written output behind.
#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <memory>
#include <optional>
#include <string>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <vector>

#include "backends/llvm/exe/program_table.h"
#include "frontend/formats/bind.h"
#include "frontend/formats/npy.h"
#include "support/files.h"

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

// A file's error names the file (`w.safetensors: error: ...`), as vitc's do; others the program.
[[noreturn]] void fail(const vitc::Error &error) {
  if (!error.loc().known())
    fail(error.message());
  std::fprintf(stderr, "%s\n", error.str().c_str());
  std::exit(1);
}

template <typename T> T orFail(vitc::Expected<T> value) {
  if (!value)
    fail(value.error());
  return value.take();
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
               "usage: %s --weights W.safetensors --input X.npy --output Y.npy\n"
               "          [--allow-unused-weights] [--allow-nonfinite] [--repeat N]\n"
               "  runs the vitc-compiled model on one device; --input and --output repeat for\n"
               "  models with several, in order\n",
               programName);
}

// A tensor of `shape` at `data`, which something else keeps alive: the writer needs a Tensor.
vitc::Tensor viewOf(const std::vector<int64_t> &shape, const float *data) {
  return vitc::Tensor::borrow(shape, data, std::shared_ptr<const void>(data, [](const void *) {}));
}

int run(int argc, char **argv) {
  std::string weights;
  std::vector<std::string> inputPaths, outputPaths;
  vitc::formats::WeightLoadOptions weightOptions;
  bool allowNonfinite = false;
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
    else if (a == "--allow-unused-weights")
      weightOptions.allowUnused = true;
    else if (a == "--allow-nonfinite")
      allowNonfinite = true;
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
  // Outputs are written through temporary files, which Ctrl-C must not leave behind.
  vitc::installTempFileCleanupOnSignals();

  // The parameters as a signature, so that they bind exactly as `vitc run` binds them. A bound
  // tensor may be borrowed from the mapped file (F32), as the JIT-compiled programs use it too.
  vitc::Signature sig;
  sig.mesh = vitc::Mesh::single();
  std::vector<bool> paramKeep;
  for (int64_t i = 0; i < numParams; ++i) {
    int64_t nameOffset = t.next(), nameLength = t.next();
    paramKeep.push_back(t.next() != 0);
    std::vector<int64_t> shape = t.shape();
    vitc::Sharding replicated = vitc::Sharding::replicated(shape.size());
    sig.params.push_back(
        {std::string(vitc_program_names + nameOffset, static_cast<size_t>(nameLength)),
         vitc::DType::F32, shape, replicated});
  }
  std::vector<vitc::Tensor> params;
  if (numParams > 0) {
    std::unique_ptr<vitc::formats::WeightSource> source =
        orFail(vitc::formats::openSafetensorsWeights(weights));
    params = orFail(vitc::formats::bindWeights(sig, *source, weightOptions));
  }
  // NaN or Inf in a weight or an input makes NaN outputs with exit 0: say so, as `vitc run` does.
  auto warnNonfinite = [&](const std::string &file, const std::string &name,
                           const vitc::Tensor &t) {
    if (allowNonfinite)
      return;
    if (std::optional<std::string> warning = vitc::formats::nonFiniteWarning(file, name, t))
      std::fprintf(stderr, "%s\n", warning->c_str());
  };
  for (size_t i = 0; i < params.size(); ++i)
    warnNonfinite(weights, sig.params[i].name, params[i]);
  // Inputs go to the kernels in 64-byte aligned storage, as the runtime's buffers are.
  std::vector<vitc::Tensor> inputs;
  for (size_t i = 0; i < static_cast<size_t>(numInputs); ++i) {
    int64_t nameOffset = t.next(), nameLength = t.next(); // inputs are given in order
    std::string name(vitc_program_names + nameOffset, static_cast<size_t>(nameLength));
    std::vector<int64_t> shape = t.shape();
    vitc::Tensor input = orFail(vitc::formats::readNpy(inputPaths[i]));
    if (input.shape() != shape)
      fail(vitc::Error(vitc::Loc::inFile(inputPaths[i]),
                       "the array has shape " + vitc::shapeString(input.shape()) +
                           ", the model takes " + vitc::shapeString(shape)));
    warnNonfinite(inputPaths[i], name, input);
    if (reinterpret_cast<uintptr_t>(input.data()) % 64 != 0)
      input = input.clone();
    inputs.push_back(std::move(input));
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
    const float *base = nullptr;
    switch (r.storage) {
    case vitc::exe::kWorkspace:
      base = workspace.data;
      break;
    case vitc::exe::kParam:
      base = params[static_cast<size_t>(r.index)].data();
      break;
    case vitc::exe::kInput:
      base = inputs[static_cast<size_t>(r.index)].data();
      break;
    case vitc::exe::kConst:
      base = consts[static_cast<size_t>(r.index)].data;
      break;
    }
    // Kernels take every argument as `float *`; parameters and inputs are only ever read.
    return const_cast<float *>(
        reinterpret_cast<const float *>(reinterpret_cast<const char *>(base) + r.offset));
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
      params[i] = vitc::Tensor();

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
    if (vitc::Status s = vitc::formats::writeNpy(outputPaths[i], viewOf(shape, address(r))); !s)
      fail(s.error());
  }
  return 0;
}

} // namespace

int main(int argc, char **argv) {
  programName = argv[0];
  // Kernels compiled for a CPU with AMX use its tiles, which Linux hands out only to a process that
  // asks (arch_prctl ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA = 18). Asking is harmless elsewhere:
  // a refusal only matters to AMX code, which a CPU without AMX was not compiled for.
  syscall(SYS_arch_prctl, 0x1023, 18);
  // The readers return errors for bad files; running out of memory is the one way they throw.
  try {
    return run(argc, argv);
  } catch (const std::exception &e) {
    fail(e.what());
  }
}
