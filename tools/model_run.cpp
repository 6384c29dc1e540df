// Shared steps of `vitc run` and `vitc init-weights`.
#include "tools/model_run.h"

#include <cstdlib>
#include <thread>
#include <unistd.h>

#include "backends/interpreter/interpreter.h"
#include "backends/llvm/llvm_backend.h"

namespace vitc::tools {

Expected<int64_t> checkImageBatch(const Tensor &images, const std::string &path,
                                  const frontend::LoadedModel &model) {
  std::vector<ir::Op *> inputs = model.module->inputs();
  if (inputs.size() != 1)
    return makeError(Loc::inFile(path), "the model takes {} inputs; vitc run feeds one image batch",
                     inputs.size());
  const Shape &want = inputs[0]->shape();
  const Shape &got = images.shape();
  bool ok = got.size() == want.size() && got.size() == 4;
  for (size_t d = 1; ok && d < 4; ++d)
    ok = got[d] == want[d];
  if (!ok)
    return makeError(Loc::inFile(path),
                     "input has shape {}; the model takes images [B, {}, {}, {}] (NCHW float32)",
                     shapeString(got), want.size() > 1 ? want[1] : 0, want.size() > 2 ? want[2] : 0,
                     want.size() > 3 ? want[3] : 0);
  if (got[0] <= 0)
    return makeError(Loc::inFile(path), "input holds no images");
  return got[0];
}

Expected<std::map<std::string, Tensor>> loadParams(const ir::Module &m,
                                                   frontend::WeightSource &source) {
  std::map<std::string, Tensor> params;
  for (const ir::Op *p : m.params()) {
    VITC_ASSIGN(Tensor t, source.load(m, *p));
    params[p->attrs.getStr("name")] = std::move(t);
  }
  return params;
}

std::vector<Tensor> paramsInOrder(const ir::Module &m,
                                  const std::map<std::string, Tensor> &byName) {
  std::vector<Tensor> params;
  for (const ir::Op *p : m.params())
    params.push_back(byName.at(p->attrs.getStr("name")));
  return params;
}

Expected<runtime::ProgramFactory> backendFactory(const std::string &name, int threads,
                                                 std::ostream *remarks) {
  if (name == "interpreter")
    return interp::interpreterFactory();
  if (name == "llvm") {
    llvmbe::Options options;
    options.threads = std::max(1, threads);
    // Tiles measured on this host once, then cached (VITC_TILES=default skips the tuning).
    const char *choice = std::getenv("VITC_TILES");
    if (!choice || std::string(choice) != "default") {
      const char *home = std::getenv("HOME");
      std::string dir = std::string(home && *home ? home : "/tmp") + "/.cache/vitc";
      VITC_ASSIGN(options.tiles, llvmbe::tunedTiles(options, dir));
    }
    if (remarks)
      options.onCompiled = [remarks](const llvmbe::CompileReport &r) {
        *remarks << fmt::format(
            "remark: llvm: {} kernels ({} calls) JIT-compiled for {} in {:.2f} s\n",
            r.uniqueKernels, r.kernels, r.cpu, r.seconds);
      };
    return llvmbe::jitFactory(options);
  }
  return makeError(Loc::inFile("--backend"), "unknown backend '{}' (known: llvm, interpreter)",
                   name);
}

int defaultThreads(int64_t devices) {
  int64_t cores = std::max<int64_t>(1, std::thread::hardware_concurrency());
  return static_cast<int>(std::max<int64_t>(1, cores / std::max<int64_t>(1, devices)));
}

Status checkMemory(int64_t bytes, const std::string &what) {
  long pages = sysconf(_SC_PHYS_PAGES), pageSize = sysconf(_SC_PAGE_SIZE);
  if (pages <= 0 || pageSize <= 0)
    return Status::ok();
  double have = static_cast<double>(pages) * static_cast<double>(pageSize);
  if (static_cast<double>(bytes) > 0.9 * have)
    return makeError(Loc{}, "{} needs {:.1f} GiB but this machine has {:.1f} GiB of memory", what,
                     static_cast<double>(bytes) / (1 << 30), have / (1 << 30));
  return Status::ok();
}

} // namespace vitc::tools
