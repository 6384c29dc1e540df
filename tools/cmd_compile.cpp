// `vitc compile`: lower a model through the pass pipeline and emit the result.
#include "ir/dot.h"
#include "ir/text.h"
#include "support/files.h"
#include "tools/driver.h"

namespace vitc::tools {

int runCompile(int argc, char **argv) {
  ModelOptions model;
  PassFlags passFlags;
  std::string emit = "ir", output;
  po::options_description desc("vitc compile options");
  desc.add_options()("help,h", "show this help");
  model.add(desc);
  desc.add_options()("emit", po::value(&emit)->default_value("ir"), "what to produce: ir or dot")(
      "output,o", po::value(&output), "output file (default: standard output)");
  passFlags.add(desc);
  po::positional_options_description positional;
  positional.add("model", 1);
  po::variables_map vm;
  int exit = 0;
  if (!parseArgs(argc, argv, desc, positional, vm,
                 "usage: vitc compile MODEL [--mesh ...] [--emit=ir|dot] [-o OUT] [pass flags]",
                 exit))
    return exit;
  if (emit != "ir" && emit != "dot")
    return usageError(fmt::format("unknown --emit={} (expected ir or dot)", emit));

  Expected<passes::PipelineOptions> pipeline = passFlags.toOptions();
  if (!pipeline)
    return report(pipeline.error());
  passes::PassContext ctx;
  ctx.options = passFlags.passOptions();
  Expected<frontend::LoadedModel> loaded = loadModel(model, &ctx.options);
  if (!loaded)
    return report(loaded.error());
  ir::Module &m = *loaded->module;

  passes::PassManager pm(*pipeline, std::cerr);
  if (Status s = pm.run(m, ctx); !s)
    return report(s.error());
  for (const std::string &remark : ctx.remarks)
    std::cerr << "remark: " << remark << "\n";

  std::string text = emit == "dot" ? ir::printDot(m) : ir::print(m);
  if (output.empty() || output == "-") {
    std::cout << text;
    return 0;
  }
  if (Status s = writeFileAtomically(output, text); !s)
    return report(s.error());
  return 0;
}

} // namespace vitc::tools
