// Measurements for the LLVM backend (not part of the test suite): matmul GFLOP/s on ViT shapes,
// and ViT-B/16 compile time and image latency against the interpreter.
//
//   vitc_llvm_bench matmul [--mr N --nr N --kc N --mc N]   single-thread GFLOP/s
//   vitc_llvm_bench vit MODEL.vit [--batch B]               compile time, kernels, latency
#include <chrono>
#include <cstdio>
#include <cstring>
#include <sstream>
#include <string>
#include <vector>

#include "backends/interpreter/interpreter.h"
#include "backends/llvm/compiler.h"
#include "frontend/load_model.h"
#include "frontend/weights.h"
#include "ir/signature.h"
#include "passes/pass_manager.h"
#include "runtime/single_device.h"

using namespace vitc;
using Clock = std::chrono::steady_clock;

namespace {

double seconds(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

float *alignedFloats(int64_t n) {
  auto *p =
      static_cast<float *>(std::aligned_alloc(64, static_cast<size_t>((n * 4 + 63) / 64 * 64)));
  for (int64_t i = 0; i < n; ++i)
    p[i] = static_cast<float>((i * 7919) % 1000) / 1000.0f - 0.5f;
  return p;
}

int benchMatmul(const llvmbe::Options &options, bool cold) {
  auto target = llvmbe::resolveTarget(options);
  if (!target) {
    std::fprintf(stderr, "%s\n", target.error().str().c_str());
    return 1;
  }
  const llvmbe::TileConfig &t = target->tiles;
  std::printf("cpu %s, vector width %ld, tiles mr=%ld nr=%ld kc=%ld mc=%ld\n", target->cpu.c_str(),
              static_cast<long>(target->vectorWidth), static_cast<long>(t.mr),
              static_cast<long>(t.nr), static_cast<long>(t.kc), static_cast<long>(t.mc));
  for (int64_t m : {197, 1576}) {
    for (auto [k, n] :
         {std::pair<int64_t, int64_t>{768, 2304}, {768, 768}, {768, 3072}, {3072, 768}}) {
      auto mm = llvmbe::compileStandaloneMatmul(*target, m, n, k);
      if (!mm) {
        std::fprintf(stderr, "%s\n", mm.error().str().c_str());
        return 1;
      }
      float *a = alignedFloats(m * k), *w = alignedFloats(n * k), *c = alignedFloats(m * n);
      float *scratch = alignedFloats(llvmbe::scratchBytes(mm->matmul) / 4 + 16);
      // Cold weights (as in a forward pass, where every matrix comes from memory once): rotate
      // through copies that together overflow the last-level cache.
      int copies = cold ? static_cast<int>(std::max<int64_t>(2, 128'000'000 / (n * k * 4))) : 1;
      std::vector<float *> packed;
      for (int i = 0; i < copies; ++i) {
        packed.push_back(alignedFloats(llvmbe::packedFloats(mm->pack)));
        mm->packWeights(packed.back(), w, scratch);
      }
      double best = 1e9, total = 0;
      int reps = std::max(copies, m * n * k > 1'000'000'000 ? 5 : 20);
      for (int r = -1; r < reps; ++r) {
        auto t0 = Clock::now();
        mm->multiply(c, a, packed[static_cast<size_t>((r + copies) % copies)], scratch);
        double s = seconds(t0);
        if (r >= 0) {
          best = std::min(best, s);
          total += s;
        }
      }
      double flops = 2.0 * static_cast<double>(m * n * k);
      std::printf(
          "M=%5ld K=%4ld N=%4ld  best %8.3f ms %7.1f GFLOP/s   mean %8.3f ms %7.1f GFLOP/s\n",
          static_cast<long>(m), static_cast<long>(k), static_cast<long>(n), best * 1e3,
          flops / best / 1e9, total / reps * 1e3, flops / (total / reps) / 1e9);
      std::free(a), std::free(w), std::free(c), std::free(scratch);
      for (float *p : packed)
        std::free(p);
    }
  }
  return 0;
}

int benchVit(const std::string &path, int64_t batch, const llvmbe::Options &base,
             bool compileOnly) {
  auto loaded = frontend::loadModel(path, {batch});
  if (!loaded) {
    std::fprintf(stderr, "%s\n", loaded.error().str().c_str());
    return 1;
  }
  std::ostringstream sink;
  passes::PassManager pm({}, sink);
  passes::PassContext ctx;
  if (Status s = pm.run(*loaded->module, ctx); !s) {
    std::fprintf(stderr, "%s\n", s.error().str().c_str());
    return 1;
  }
  std::shared_ptr<const ir::Module> m = std::move(loaded->module);
  if (compileOnly) {
    // Shapes are enough: plan and compile without weights (large models on a small machine).
    auto t0 = Clock::now();
    auto target = llvmbe::resolveTarget(base);
    auto plan = llvmbe::planModule(*m, target->tiles);
    if (!plan) {
      std::fprintf(stderr, "%s\n", plan.error().str().c_str());
      return 1;
    }
    llvmbe::CompileReport report;
    auto kernels = llvmbe::compileJit(*plan, *target, "", report);
    if (!kernels) {
      std::fprintf(stderr, "%s\n", kernels.error().str().c_str());
      return 1;
    }
    std::printf("%s batch %ld: %zu ops, %ld kernel calls, %zu unique kernels; compile %.3f s "
                "(optimize %.3f, machine code %.3f)\n",
                m->name.c_str(), static_cast<long>(batch), m->size(),
                static_cast<long>(plan->calls), plan->kernels.size(), seconds(t0),
                report.optimizeSeconds, report.machineSeconds);
    return 0;
  }
  std::vector<Tensor> params;
  auto source = frontend::openWeights("random:1", m.get());
  for (const TensorSpec &p : ir::signatureOf(*m).params)
    params.push_back(*(*source)->load(p));
  Tensor input = Tensor::zeros(m->inputs()[0]->shape());
  for (int64_t i = 0; i < input.numel(); ++i)
    input.mutableData()[i] = static_cast<float>((i * 7919) % 1000) / 1000.0f - 0.5f;

  llvmbe::Options options = base;
  llvmbe::CompileReport report;
  options.onCompiled = [&](const llvmbe::CompileReport &r) { report = r; };
  auto t0 = Clock::now();
  auto executable = llvmbe::compile(*m, options);
  if (!executable) {
    std::fprintf(stderr, "%s\n", executable.error().str().c_str());
    return 1;
  }
  auto program = (*executable)->instantiate(0, params);
  double build = seconds(t0);
  if (!program) {
    std::fprintf(stderr, "%s\n", program.error().str().c_str());
    return 1;
  }
  std::printf("%s batch %ld: %ld ops, %ld kernel calls, %ld unique kernels (cpu %s)\n",
              m->name.c_str(), static_cast<long>(batch), static_cast<long>(report.ops),
              static_cast<long>(report.kernels), static_cast<long>(report.uniqueKernels),
              report.cpu.c_str());
  std::printf("compile %.3f s (plan %.3f, IR %.3f, optimize %.3f, machine code %.3f); "
              "with weight packing %.3f s\n",
              report.seconds, report.planSeconds, report.codegenSeconds, report.optimizeSeconds,
              report.machineSeconds, build);
  runtime::SingleDeviceCommunicator comm(m->mesh);
  auto time = [&](runtime::DeviceProgram &p, int reps) {
    double best = 1e9;
    for (int r = 0; r < reps; ++r) {
      auto t1 = Clock::now();
      auto out = p.run({input}, comm);
      if (!out)
        std::fprintf(stderr, "%s\n", out.error().str().c_str());
      best = std::min(best, seconds(t1));
    }
    return best;
  };
  double jit = time(**program, 10);
  auto interp = (*interp::compile(m))->instantiate(0, params);
  double ref = time(**interp, 2);
  std::printf("one forward pass: llvm %.2f ms, interpreter %.1f ms (%.1fx)\n", jit * 1e3, ref * 1e3,
              ref / jit);
  return 0;
}

} // namespace

int main(int argc, char **argv) {
  if (argc < 2) {
    std::fprintf(stderr,
                 "usage: %s matmul|vit [MODEL] [--batch B] [--mr N --nr N --kc N --mc N] "
                 "[--cpu CPU]\n",
                 argv[0]);
    return 2;
  }
  std::string what = argv[1];
  llvmbe::Options options;
  std::string model;
  int64_t batch = 1;
  bool cold = false, compileOnly = false;
  for (int i = 2; i < argc; ++i) {
    std::string a = argv[i];
    auto next = [&] { return std::atoll(argv[++i]); };
    if (a == "--mr")
      options.tiles.mr = next();
    else if (a == "--nr")
      options.tiles.nr = next();
    else if (a == "--kc")
      options.tiles.kc = next();
    else if (a == "--nc")
      options.tiles.nc = next();
    else if (a == "--mc")
      options.tiles.mc = next();
    else if (a == "--batch")
      batch = next();
    else if (a == "--cpu")
      options.cpu = argv[++i];
    else if (a == "--cold")
      cold = true;
    else if (a == "--compile-only")
      compileOnly = true;
    else
      model = a;
  }
  if (what == "matmul")
    return benchMatmul(options, cold);
  return benchVit(model, batch, options, compileOnly);
}
