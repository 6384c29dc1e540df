// Kernel dispatch and the executable's program table.
#include "backends/llvm/codegen.h"

#include <cassert>

#include <llvm/IR/Constants.h>
#include <llvm/IR/Module.h>

#include "backends/llvm/exe/program_table.h"
#include "backends/llvm/ir_emitter.h"

namespace vitc::llvmbe {

std::string kernelSymbol(const Plan &plan, size_t kernel) {
  return "vitc_" + kernelKindName(plan.kernels[kernel]) + "_" + std::to_string(kernel);
}

void emitKernels(llvm::Module &module, const Plan &plan, const CodegenTarget &target) {
  Emitter e(module, target);
  for (size_t i = 0; i < plan.kernels.size(); ++i) {
    std::string name = kernelSymbol(plan, i);
    const KernelDesc &desc = plan.kernels[i];
    if (const auto *d = std::get_if<MatmulDesc>(&desc))
      emitMatmul(e, *d, name);
    else if (const auto *d = std::get_if<ConvertDesc>(&desc))
      emitConvert(e, *d, name);
    else if (const auto *d = std::get_if<PackDesc>(&desc))
      emitPack(e, *d, name);
    else if (const auto *d = std::get_if<AttentionDesc>(&desc))
      emitAttention(e, *d, name);
    else if (const auto *d = std::get_if<EltwiseDesc>(&desc))
      emitEltwise(e, *d, name);
    else if (const auto *d = std::get_if<LayerNormDesc>(&desc))
      emitLayerNorm(e, *d, name);
    else if (const auto *d = std::get_if<SoftmaxDesc>(&desc))
      emitSoftmax(e, *d, name);
    else if (const auto *d = std::get_if<MeanDesc>(&desc))
      emitMean(e, *d, name);
    else if (const auto *d = std::get_if<CopyDesc>(&desc))
      emitCopy(e, *d, name);
    else if (const auto *d = std::get_if<FillDesc>(&desc))
      emitFill(e, *d, name);
    else if (const auto *d = std::get_if<LayerNormGradDesc>(&desc))
      emitLayerNormGrad(e, *d, name);
    else if (const auto *d = std::get_if<SoftmaxGradDesc>(&desc))
      emitSoftmaxGrad(e, *d, name);
    else if (const auto *d = std::get_if<LossDesc>(&desc))
      emitLoss(e, *d, name);
    // The key says what the kernel computes, in the IR a user can print.
    module.getFunction(name)->addFnAttr("vitc-kernel", plan.keys[i]);
  }
}

namespace {

int64_t storageCode(Storage s) {
  switch (s) {
  case Storage::Workspace:
    return exe::kWorkspace;
  case Storage::Param:
    return exe::kParam;
  case Storage::Input:
    return exe::kInput;
  case Storage::Const:
    return exe::kConst;
  case Storage::Staging:
    break;
  }
  assert(false && "executables have no staging buffers");
  return -1;
}

} // namespace

void emitProgramTable(llvm::Module &module, const Plan &plan) {
  std::vector<uint64_t> words;
  auto put = [&](int64_t v) { words.push_back(static_cast<uint64_t>(v)); };
  auto putShape = [&](const Shape &s) {
    put(static_cast<int64_t>(s.size()));
    for (int64_t d : s)
      put(d);
  };
  auto putRef = [&](const BufferRef &r) {
    put(storageCode(r.storage));
    put(r.index);
    put(r.offsetOn(plan.mesh, 0)); // executables run on a one-device mesh
  };
  std::string names;
  auto putName = [&](const std::string &name) {
    put(static_cast<int64_t>(names.size()));
    put(static_cast<int64_t>(name.size()));
    names += name;
  };
  put(exe::kProgramMagic);
  put(exe::kProgramVersion);
  put(plan.workspaceBytes);
  put(plan.scratchBytes);
  put(static_cast<int64_t>(plan.params.size()));
  put(static_cast<int64_t>(plan.inputs.size()));
  put(static_cast<int64_t>(plan.outputs.size()));
  put(static_cast<int64_t>(plan.constBytes.size()));
  put(static_cast<int64_t>(plan.load.size()));
  put(static_cast<int64_t>(plan.run.size()));
  for (size_t i = 0; i < plan.params.size(); ++i) {
    putName(plan.params[i].name);
    put(plan.paramAfterLoad[i]);
    putShape(plan.params[i].shape);
  }
  for (const NamedShape &in : plan.inputs) {
    putName(in.name);
    putShape(in.shape);
  }
  for (size_t i = 0; i < plan.constBytes.size(); ++i) {
    put(plan.constBytes[i]);
    put(plan.constAfterLoad[i]);
  }
  auto putCall = [&](const KernelCall &c) {
    put(c.kernel);
    put(c.work);
    put(static_cast<int64_t>(c.args.size()));
    for (const BufferRef &r : c.args)
      putRef(r);
  };
  for (const KernelCall &c : plan.load)
    putCall(c);
  for (const Step &s : plan.run) {
    assert(s.isKernel && "executables run kernel calls only");
    putCall(s.kernel);
  }
  for (size_t i = 0; i < plan.outputs.size(); ++i) {
    putRef(plan.outputs[i]);
    putShape(plan.outputShapes[i]);
  }

  llvm::LLVMContext &ctx = module.getContext();
  auto global = [&](llvm::Constant *init, const char *name) {
    new llvm::GlobalVariable(module, init->getType(), /*isConstant=*/true,
                             llvm::GlobalValue::ExternalLinkage, init, name);
  };
  global(llvm::ConstantDataArray::get(ctx, words), "vitc_program");
  global(llvm::ConstantDataArray::getString(ctx, names, /*AddNull=*/true), "vitc_program_names");
  std::vector<llvm::Constant *> kernels;
  for (size_t i = 0; i < plan.kernels.size(); ++i)
    kernels.push_back(module.getFunction(kernelSymbol(plan, i)));
  auto *type = llvm::ArrayType::get(llvm::PointerType::get(ctx, 0), kernels.size());
  global(llvm::ConstantArray::get(type, kernels), "vitc_program_kernels");
}

} // namespace vitc::llvmbe
