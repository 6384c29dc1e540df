// Running a module over its mesh.
#include "runtime/runner.h"

#include "runtime/blocks.h"
#include "runtime/single_device.h"

namespace vitc::runtime {

Expected<std::unique_ptr<MeshRunner>> MeshRunner::create(std::shared_ptr<const ir::Module> module,
                                                         const ProgramFactory &factory,
                                                         const std::vector<Tensor> &params) {
  auto runner = std::unique_ptr<MeshRunner>(new MeshRunner());
  runner->module_ = module;
  const ir::Mesh &mesh = module->mesh;
  if (mesh.numDevices() != 1)
    return makeError(Loc{}, "running on a {}-device mesh needs the mesh runtime",
                     mesh.numDevices());
  std::vector<ir::Op *> paramOps = module->params();
  for (int64_t device = 0; device < mesh.numDevices(); ++device) {
    std::vector<Tensor> local;
    for (size_t i = 0; i < paramOps.size(); ++i)
      local.push_back(blockOf(params[i], paramOps[i]->type, mesh, device));
    VITC_ASSIGN(std::unique_ptr<DeviceProgram> program, factory(module, device, std::move(local)));
    runner->programs_.push_back(std::move(program));
  }
  return runner;
}

Expected<std::vector<Tensor>> MeshRunner::run(const std::vector<Tensor> &inputs) {
  const ir::Mesh &mesh = module_->mesh;
  std::vector<ir::Op *> inputOps = module_->inputs();
  if (inputs.size() != inputOps.size())
    return makeError(Loc{}, "{} inputs for a program that takes {}", inputs.size(),
                     inputOps.size());
  for (size_t i = 0; i < inputs.size(); ++i)
    if (inputs[i].shape() != inputOps[i]->shape())
      return makeError(Loc{}, "input '{}' has shape {}, the program takes {}",
                       inputOps[i]->attrs.getStr("name"), shapeString(inputs[i].shape()),
                       shapeString(inputOps[i]->shape()));
  SingleDeviceCommunicator comm(mesh);
  std::vector<Tensor> local;
  for (size_t i = 0; i < inputs.size(); ++i)
    local.push_back(blockOf(inputs[i], inputOps[i]->type, mesh, 0));
  VITC_ASSIGN(std::vector<Tensor> outs, programs_[0]->run(local, comm));
  const ir::Op *output = module_->output();
  std::vector<Tensor> global;
  for (size_t i = 0; i < outs.size(); ++i)
    global.push_back(assemble({outs[i]}, output->operand(i)->type, mesh));
  return global;
}

} // namespace vitc::runtime
