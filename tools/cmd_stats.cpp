// `vitc stats`: parameters, FLOPs, tokens and per-device memory, from the IR alone.
#include "passes/analysis.h"
#include "passes/pass_manager.h"
#include "tools/driver.h"

namespace vitc::tools {
namespace {

std::string millions(int64_t n) { return fmt::format("{:.2f} M", static_cast<double>(n) / 1e6); }

std::string bytes(int64_t b) {
  double v = static_cast<double>(b);
  if (v >= 1024.0 * 1024 * 1024)
    return fmt::format("{:.2f} GiB", v / (1024.0 * 1024 * 1024));
  return fmt::format("{:.1f} MiB", v / (1024.0 * 1024));
}

} // namespace

int runStats(int argc, char **argv) {
  ModelOptions model;
  po::options_description desc("vitc stats options");
  desc.add_options()("help,h", "show this help");
  model.add(desc);
  po::positional_options_description positional;
  positional.add("model", 1);
  po::variables_map vm;
  int exit = 0;
  if (!parseArgs(argc, argv, desc, positional, vm,
                 "usage: vitc stats MODEL [--batch B] [--mesh data=T,model=K]", exit))
    return exit;
  if (Status s = model.check(); !s)
    return usageError(s.error());

  passes::PassContext ctx;
  Expected<frontend::LoadedModel> loaded = loadModelOnMesh(model, nullptr, &ctx.options);
  if (!loaded)
    return report(loaded.error());
  ir::Module &m = *loaded->module;
  // Model FLOPs and parameters come from the program as written; memory from the compiled one.
  passes::ModuleStats before = passes::analyze(m);
  passes::PipelineOptions pipeline;
  std::ostringstream sink;
  passes::PassManager pm(pipeline, sink);
  if (Status s = pm.run(m, ctx); !s)
    return report(s.error());
  passes::ModuleStats after = passes::analyze(m);

  int64_t batch = before.batch;
  std::cout << fmt::format("model          {} ({})\n", m.name, loaded->path);
  std::cout << fmt::format("mesh           {} ({} device{})\n", m.mesh.str(), m.mesh.numDevices(),
                           m.mesh.numDevices() == 1 ? "" : "s");
  std::cout << fmt::format("batch          {}\n", batch);
  if (const ir::AttrValue *t = m.attrs.find("tokens"); t && std::holds_alternative<int64_t>(*t))
    std::cout << fmt::format("tokens         {} per image\n", std::get<int64_t>(*t));
  std::cout << fmt::format("parameters     {} total, {} without head ({} in the pooling head and "
                           "classifier)\n",
                           millions(before.params), millions(before.params - before.headParams),
                           millions(before.headParams));
  std::cout << fmt::format("GFLOPs         {:.2f} per image, {:.2f} for the batch ({} matmuls)\n",
                           before.flops / 1e9 / static_cast<double>(batch), before.flops / 1e9,
                           before.matmuls);
  std::cout << fmt::format("memory/device  {} weights + {} peak activations = {}\n",
                           bytes(after.weightBytesPerDevice),
                           bytes(after.activationPeakBytesPerDevice),
                           bytes(after.weightBytesPerDevice + after.activationPeakBytesPerDevice));
  return 0;
}

} // namespace vitc::tools
