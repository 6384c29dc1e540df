// `vitc compile`: lower a model through the pass pipeline and emit the result.
#include "backends/llvm/llvm_backend.h"
#include "ir/dot.h"
#include "ir/signature.h"
#include "ir/text.h"
#include "support/files.h"
#include "tools/driver.h"

namespace vitc::tools {
namespace {} // namespace

int runCompile(int argc, char **argv) {
  ModelOptions model;
  PassFlags passFlags;
  std::string emit = "ir", output, cpu = "host", remarks;
  po::options_description desc("vitc compile options");
  desc.add_options()("help,h", "show this help");
  model.add(desc);
  desc.add_options()("emit", po::value(&emit)->default_value("ir"),
                     "what to produce: ir, dot, signature (what the compiled program takes and "
                     "returns: names, shapes, per-device blocks), llvm, asm, obj or exe (these "
                     "four need plan-memory, the pipeline's last pass)")(
      "output,o", po::value(&output), "output file (default: standard output)")(
      "cpu", po::value(&cpu)->default_value("host"),
      "CPU to generate code for (llvm, asm, obj, exe): host, or an LLVM CPU name such as "
      "x86-64-v3 (any AVX2 machine) or x86-64-v4 (AVX-512)")(
      "remarks", po::value(&remarks)->implicit_value("all"),
      "print every remark of the passes (=PASS[,PASS]: of those passes); without it, one "
      "summary line per pass");
  passFlags.add(desc);
  po::positional_options_description positional;
  positional.add("model", 1);
  po::variables_map vm;
  int exit = 0;
  if (!parseArgs(
          argc, argv, desc, positional, vm,
          "usage: vitc compile MODEL [--mesh ...] [--emit=ir|dot|signature|llvm|asm|obj|exe] "
          "[-o OUT] [pass flags]",
          exit))
    return exit;
  if (emit != "ir" && emit != "dot" && emit != "signature" && emit != "llvm" && emit != "asm" &&
      emit != "obj" && emit != "exe")
    return usageError(fmt::format(
        "unknown --emit={} (expected ir, dot, signature, llvm, asm, obj or exe)", emit));
  if ((emit == "obj" || emit == "exe") && (output.empty() || output == "-"))
    return usageError(fmt::format("--emit={} needs -o FILE", emit));
  // Every value from the command line is checked before the model is read or anything compiled.
  if (Status s = model.check(); !s)
    return usageError(s.error());
  if (Status s = passFlags.check(vm); !s)
    return usageError(s.error());
  std::set<std::string> remarkPasses;
  if (!remarks.empty() && remarks != "all") {
    Expected<std::vector<std::string>> names = passes::parsePassList(remarks);
    if (!names)
      return usageError(Error(Loc::inFile("--remarks"), names.error().message()));
    if (names->empty())
      return usageError(Error(Loc::inFile("--remarks"), "expected a pass name"));
    remarkPasses.insert(names->begin(), names->end());
  }
  if (cpu != "host")
    if (Status s = llvmbe::checkCpu(cpu); !s)
      return usageError(Error(Loc::inFile("--cpu"), s.error().message()));
  if (Status s = checkNotAnInput("-o", output, model.inputFiles()); !s)
    return usageError(s.error());
  if (Status s = checkWritable(output); !s)
    return report(s.error());

  Expected<passes::PipelineOptions> pipeline = passFlags.toOptions();
  if (!pipeline)
    return report(pipeline.error());
  passes::PassContext ctx;
  Expected<frontend::LoadedModel> loaded = loadModelOnMesh(model, &passFlags, &ctx.options);
  if (!loaded)
    return report(loaded.error());
  ir::Module &m = *loaded->module;

  passes::PassManager pm(*pipeline, std::cerr);
  if (Status s = pm.run(m, ctx); !s)
    return report(s.error());
  printRemarks(ctx.remarks, remarks, remarkPasses);

  llvmbe::Options backend;
  backend.cpu = cpu;
  llvmbe::CompileReport compiled;
  if (emit == "obj" || emit == "exe") {
    Status s = emit == "obj" ? llvmbe::emitObject(m, output, backend, &compiled)
                             : llvmbe::emitExecutable(m, output, backend, &compiled);
    if (!s)
      return report(s.error());
    std::cerr << fmt::format("remark: llvm: {} kernels ({} calls) for {} in {:.2f} s\n",
                             compiled.uniqueKernels, compiled.kernels, compiled.cpu,
                             compiled.seconds);
    if (!compiled.bf16Kernels.empty())
      std::cerr << fmt::format("remark: llvm: bf16 matmuls use {} on {}\n", compiled.bf16Kernels,
                               compiled.cpu);
    return 0;
  }
  std::string text;
  if (emit == "llvm" || emit == "asm") {
    Expected<std::string> code = emit == "llvm" ? llvmbe::emitLlvmIr(m, backend, &compiled)
                                                : llvmbe::emitAssembly(m, backend, &compiled);
    if (!code)
      return report(code.error());
    text = std::move(*code);
  } else if (emit == "signature") {
    text = ir::signatureOf(m).str();
  } else {
    text = emit == "dot" ? ir::printDot(m) : ir::print(m);
  }
  if (output.empty() || output == "-") {
    std::cout << text;
    return 0;
  }
  if (Status s = writeFileAtomically(output, text); !s)
    return report(s.error());
  return 0;
}

} // namespace vitc::tools
