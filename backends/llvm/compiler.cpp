// Target selection, optimization, ORC LLJIT and object emission.
#include "backends/llvm/compiler.h"

#include <cerrno>
#include <chrono>
#include <cstring>
#include <mutex>
#include <sys/syscall.h>
#include <unistd.h>

#include <llvm/ExecutionEngine/Orc/ExecutionUtils.h>
#include <llvm/ExecutionEngine/Orc/JITTargetMachineBuilder.h>
#include <llvm/ExecutionEngine/Orc/LLJIT.h>
#include <llvm/ExecutionEngine/Orc/ObjectTransformLayer.h>
#include <llvm/ExecutionEngine/Orc/ThreadSafeModule.h>
#include <llvm/IR/LLVMContext.h>
#include <llvm/IR/LegacyPassManager.h>
#include <llvm/IR/Module.h>
#include <llvm/IR/Verifier.h>
#include <llvm/MC/MCSubtargetInfo.h>
#include <llvm/MC/TargetRegistry.h>
#include <llvm/Passes/PassBuilder.h>
#include <llvm/Support/FileSystem.h>
#include <llvm/Support/TargetSelect.h>
#include <llvm/Support/raw_ostream.h>
#include <llvm/Target/TargetMachine.h>
#include <llvm/TargetParser/Host.h>
#include <llvm/TargetParser/Triple.h>

#include "backends/llvm/codegen.h"

namespace vitc::llvmbe {
namespace {

using Clock = std::chrono::steady_clock;

double since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

void initializeLlvm() {
  static std::once_flag once;
  std::call_once(once, [] {
    llvm::InitializeNativeTarget();
    llvm::InitializeNativeTargetAsmPrinter();
    llvm::InitializeNativeTargetAsmParser();
  });
}

Error llvmError(const std::string &what, llvm::Error error) {
  return Error(what + ": " + llvm::toString(std::move(error)));
}

llvm::CodeGenOptLevel codegenLevel(int level) {
  switch (level) {
  case 0:
    return llvm::CodeGenOptLevel::None;
  case 1:
    return llvm::CodeGenOptLevel::Less;
  case 3:
    return llvm::CodeGenOptLevel::Aggressive;
  default:
    return llvm::CodeGenOptLevel::Default;
  }
}

Expected<std::unique_ptr<llvm::TargetMachine>> createTargetMachine(const Target &t) {
  std::string message;
  const llvm::Target *target = llvm::TargetRegistry::lookupTarget(t.triple, message);
  if (!target)
    return Error("no LLVM target for '" + t.triple + "': " + message);
  llvm::TargetOptions options;
  std::unique_ptr<llvm::TargetMachine> tm(
      target->createTargetMachine(t.triple, t.cpu, t.features, options, llvm::Reloc::PIC_,
                                  std::nullopt, codegenLevel(t.optLevel)));
  if (!tm)
    return Error("cannot create an LLVM target machine for '" + t.triple + "'");
  return tm;
}

TileConfig defaultTiles(int64_t vw, const Tiles &user) {
  TileConfig t;
  t.vectorWidth = vw;
  if (vw >= 16) {
    t.mr = 8, t.nr = 3 * vw, t.kc = 768, t.mc = 160, t.nc = 768;
  } else {
    t.mr = 6, t.nr = 2 * vw, t.kc = 256, t.mc = 72, t.nc = 1024;
  }
  if (user.mr > 0)
    t.mr = user.mr;
  if (user.nr > 0)
    t.nr = user.nr;
  if (user.kc > 0)
    t.kc = user.kc;
  if (user.mc > 0)
    t.mc = user.mc;
  if (user.nc > 0)
    t.nc = user.nc;
  t.mc = std::max(t.mr, t.mc / t.mr * t.mr);
  if (t.nr > 0)
    t.nc = std::max(t.nr, t.nc / t.nr * t.nr);
  return t;
}

// What compiling says about the plan's bf16 matmuls and attention (CompileReport::bf16Kernels).
std::string bf16KernelsOf(const Plan &plan, const Target &t) {
  bool matmuls = hasBf16Matmuls(plan), attention = false;
  for (const KernelDesc &k : plan.kernels)
    if (const auto *at = std::get_if<AttentionDesc>(&k); at && at->bf16)
      attention = true;
  if (!matmuls && !attention)
    return "";
  // Attention multiplies with vdpbf16ps on AMX CPUs too.
  return t.amxBf16 && matmuls ? "AMX tdpbf16ps tiles (amx-bf16)"
         : t.avx512Bf16       ? "vdpbf16ps (avx512bf16)"
                              : "f32 FMAs on bf16 values (no avx512bf16)";
}

// The kernels of `plan` in a new module for `tm`, verified when asked.
Expected<std::unique_ptr<llvm::Module>> generate(llvm::LLVMContext &ctx, const Plan &plan,
                                                 const Target &t, llvm::TargetMachine &tm,
                                                 bool table) {
  auto m = std::make_unique<llvm::Module>("vitc", ctx);
  m->setTargetTriple(t.triple);
  m->setDataLayout(tm.createDataLayout());
  emitKernels(*m, plan, CodegenTarget{t.cpu, t.features, t.vectorWidth, t.avx512Bf16, t.amxBf16});
  if (table)
    emitProgramTable(*m, plan);
  if (t.verify) {
    std::string problems;
    llvm::raw_string_ostream os(problems);
    if (llvm::verifyModule(*m, &os))
      return Error("internal error: the llvm backend generated invalid IR: " + os.str());
  }
  return m;
}

void optimize(llvm::Module &m, llvm::TargetMachine &tm, int level) {
  llvm::LoopAnalysisManager lam;
  llvm::FunctionAnalysisManager fam;
  llvm::CGSCCAnalysisManager cgam;
  llvm::ModuleAnalysisManager mam;
  llvm::PassBuilder pb(&tm);
  pb.registerModuleAnalyses(mam);
  pb.registerCGSCCAnalyses(cgam);
  pb.registerFunctionAnalyses(fam);
  pb.registerLoopAnalyses(lam);
  pb.crossRegisterProxies(lam, fam, cgam, mam);
  llvm::ModulePassManager mpm;
  switch (level) {
  case 0:
    mpm = pb.buildO0DefaultPipeline(llvm::OptimizationLevel::O0);
    break;
  case 1:
    mpm = pb.buildPerModuleDefaultPipeline(llvm::OptimizationLevel::O1);
    break;
  case 3:
    mpm = pb.buildPerModuleDefaultPipeline(llvm::OptimizationLevel::O3);
    break;
  default:
    mpm = pb.buildPerModuleDefaultPipeline(llvm::OptimizationLevel::O2);
    break;
  }
  mpm.run(m, mam);
}

class LlJitKernels : public JitKernels {
public:
  std::unique_ptr<llvm::orc::LLJIT> jit;
};

} // namespace

// Linux hands out the AMX tile state only to processes that ask for it (arch_prctl
// ARCH_REQ_XCOMP_PERM for XFEATURE_XTILEDATA); before that, a tile instruction faults. Asked once
// per process, the first time a program with AMX kernels is compiled.
Status requestAmxState() {
  constexpr int kArchReqXcompPerm = 0x1023, kXfeatureXtiledata = 18;
  static std::once_flag once;
  static int error = 0;
  std::call_once(once, [] {
    if (syscall(SYS_arch_prctl, kArchReqXcompPerm, kXfeatureXtiledata) != 0)
      error = errno;
  });
  if (error != 0)
    return Error(fmt::format("the kernel refused this process the AMX tile state (arch_prctl "
                             "ARCH_REQ_XCOMP_PERM): {}; compile with --cpu for a CPU without AMX",
                             std::strerror(error)));
  return Status::ok();
}

bool hasBf16Matmuls(const Plan &plan) {
  for (const KernelDesc &k : plan.kernels)
    if (const auto *mm = std::get_if<MatmulDesc>(&k); mm && mm->bf16)
      return true;
  return false;
}

Expected<Target> resolveTarget(const Options &options) {
  initializeLlvm();
  Target t;
  t.triple = llvm::sys::getProcessTriple();
  t.optLevel = std::clamp(options.optLevel, 0, 3);
  t.verify = options.verify;
  if (options.cpu.empty() || options.cpu == "host") {
    auto host = llvm::orc::JITTargetMachineBuilder::detectHost();
    if (!host)
      return llvmError("cannot detect the host CPU", host.takeError());
    t.cpu = host->getCPU();
    t.features = host->getFeatures().getString();
  } else {
    t.cpu = options.cpu;
  }
  if (!options.features.empty())
    t.features += (t.features.empty() ? "" : ",") + options.features;
  VITC_ASSIGN(std::unique_ptr<llvm::TargetMachine> tm, createTargetMachine(t));
  const llvm::MCSubtargetInfo *sti = tm->getMCSubtargetInfo();
  if (!sti->isCPUStringValid(t.cpu))
    return Error(fmt::format("unknown cpu '{}' for {}", t.cpu, t.triple));
  t.vectorWidth = 4;
  if (llvm::Triple(t.triple).isX86()) {
    if (sti->checkFeatures("+avx512f"))
      t.vectorWidth = 16;
    else if (sti->checkFeatures("+avx"))
      t.vectorWidth = 8;
    t.avx512Bf16 = t.vectorWidth == 16 && sti->checkFeatures("+avx512bf16");
    // The AMX tiles finish a depth that is not whole tiles with vdpbf16ps.
    t.amxBf16 = t.avx512Bf16 && sti->checkFeatures("+amx-bf16") && sti->checkFeatures("+amx-tile");
  }
  t.tiles = defaultTiles(t.vectorWidth, options.tiles);
  t.tiles.threads = std::max(1, options.threads);
  if (t.tiles.nr % t.vectorWidth != 0 || t.tiles.mr < 1 || t.tiles.kc < 1)
    return Error(fmt::format("bad tile sizes mr={} nr={} kc={}: nr must be a multiple of the "
                             "vector width ({}), mr and kc positive",
                             t.tiles.mr, t.tiles.nr, t.tiles.kc, t.vectorWidth));
  return t;
}

Expected<std::unique_ptr<JitKernels>> compileJit(const Plan &plan, const Target &t,
                                                 const std::string &saveObject,
                                                 CompileReport &report) {
  initializeLlvm();
  llvm::orc::JITTargetMachineBuilder jtmb{llvm::Triple(t.triple)};
  jtmb.setCPU(t.cpu);
  if (!t.features.empty()) {
    llvm::SmallVector<llvm::StringRef, 64> features;
    llvm::StringRef(t.features).split(features, ',', -1, false);
    jtmb.addFeatures(std::vector<std::string>(features.begin(), features.end()));
  }
  jtmb.setCodeGenOptLevel(codegenLevel(t.optLevel));
  auto tm = jtmb.createTargetMachine();
  if (!tm)
    return llvmError("cannot create the JIT's target machine", tm.takeError());

  auto t0 = Clock::now();
  auto ctx = std::make_unique<llvm::LLVMContext>();
  VITC_ASSIGN(std::unique_ptr<llvm::Module> m, generate(*ctx, plan, t, **tm, /*table=*/false));
  report.bf16Kernels = bf16KernelsOf(plan, t);
  report.codegenSeconds = since(t0);
  t0 = Clock::now();
  optimize(*m, **tm, t.optLevel);
  report.optimizeSeconds = since(t0);

  t0 = Clock::now();
  auto jit = llvm::orc::LLJITBuilder().setJITTargetMachineBuilder(jtmb).create();
  if (!jit)
    return llvmError("cannot create the JIT", jit.takeError());
  // Kernels may call memcpy and memset (LLVM recognizes copy loops).
  auto process = llvm::orc::DynamicLibrarySearchGenerator::GetForCurrentProcess(
      (*jit)->getDataLayout().getGlobalPrefix());
  if (!process)
    return llvmError("cannot search this process's symbols", process.takeError());
  (*jit)->getMainJITDylib().addGenerator(std::move(*process));
  if (!saveObject.empty())
    (*jit)->getObjTransformLayer().setTransform(
        [saveObject](std::unique_ptr<llvm::MemoryBuffer> object)
            -> llvm::Expected<std::unique_ptr<llvm::MemoryBuffer>> {
          std::error_code ec;
          llvm::raw_fd_ostream out(saveObject, ec, llvm::sys::fs::OF_None);
          if (!ec)
            out << object->getBuffer();
          return object;
        });
  if (llvm::Error e =
          (*jit)->addIRModule(llvm::orc::ThreadSafeModule(std::move(m), std::move(ctx))))
    return llvmError("cannot add the kernels to the JIT", std::move(e));
  auto kernels = std::make_unique<LlJitKernels>();
  for (size_t i = 0; i < plan.kernels.size(); ++i) {
    auto address = (*jit)->lookup(kernelSymbol(plan, i));
    if (!address)
      return llvmError("cannot compile kernel " + kernelSymbol(plan, i), address.takeError());
    kernels->functions.push_back(address->toPtr<exe::KernelFn>());
  }
  kernels->jit = std::move(*jit);
  report.machineSeconds = since(t0);
  return std::unique_ptr<JitKernels>(std::move(kernels));
}

Expected<std::string> compileToBuffer(const Plan &plan, const Target &t, bool table,
                                      OutputKind kind, CompileReport &report) {
  initializeLlvm();
  VITC_ASSIGN(std::unique_ptr<llvm::TargetMachine> tm, createTargetMachine(t));
  auto t0 = Clock::now();
  llvm::LLVMContext ctx;
  VITC_ASSIGN(std::unique_ptr<llvm::Module> m, generate(ctx, plan, t, *tm, table));
  report.bf16Kernels = bf16KernelsOf(plan, t);
  report.codegenSeconds = since(t0);
  t0 = Clock::now();
  optimize(*m, *tm, t.optLevel);
  report.optimizeSeconds = since(t0);
  t0 = Clock::now();
  std::string out;
  if (kind == OutputKind::LlvmIr) {
    llvm::raw_string_ostream os(out);
    m->print(os, nullptr);
    os.flush();
  } else {
    llvm::SmallVector<char, 0> buffer;
    llvm::raw_svector_ostream os(buffer);
    llvm::legacy::PassManager pm;
    auto fileType = kind == OutputKind::Object ? llvm::CodeGenFileType::ObjectFile
                                               : llvm::CodeGenFileType::AssemblyFile;
    if (tm->addPassesToEmitFile(pm, os, nullptr, fileType))
      return Error("the LLVM target cannot emit this kind of file");
    pm.run(*m);
    out.assign(buffer.begin(), buffer.end());
  }
  report.machineSeconds = since(t0);
  return out;
}

} // namespace vitc::llvmbe
