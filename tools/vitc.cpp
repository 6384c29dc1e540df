// vitc: the command-line driver. Each subcommand lives in its own cmd_*.cpp.
#include <cstring>
#include <iostream>

#include "support/files.h"
#include "tools/driver.h"

namespace {

constexpr const char *kHelp = R"(vitc: a compiler for large Vision Transformers

usage: vitc <command> [options]

commands:
  stats    MODEL [--mesh data=2,model=4] [--batch B]
           parameters, FLOPs, tokens and per-device memory, computed from the IR
  compile  MODEL [--mesh ...] [--emit=ir|dot] [-o OUT] [pass flags]
           lower the model through the pass pipeline and print or write the result
  run      MODEL --weights W --input X.npy --output Y.npy [--backend interpreter]
           run an image batch; prints the top-5 classes when the model has labels
  init-weights MODEL -o W.safetensors [--seed S]
           write deterministic random weights for any model
  autotune MODEL --devices N [--batch B] [--target cpu|tpuv4|FILE] [--mode=infer|train]
           [--measure[=K]] [-o layout.json]
           choose a mesh and sharding layout; write it for compile/run --layout

MODEL is a vitc spec (examples/*.vit), a Hugging Face checkpoint directory (config.json) or IR
text (.ir). 'vitc <command> --help' lists a command's options.
)";

struct Command {
  const char *name;
  int (*run)(int, char **);
};

constexpr Command kCommands[] = {
    {"autotune", vitc::tools::runAutotune},
    {"compile", vitc::tools::runCompile},
    {"init-weights", vitc::tools::runInitWeights},
    {"run", vitc::tools::runRun},
    {"stats", vitc::tools::runStats},
};

} // namespace

int main(int argc, char **argv) {
  vitc::installTempFileCleanupOnSignals();
  if (argc < 2 || !std::strcmp(argv[1], "--help") || !std::strcmp(argv[1], "-h") ||
      !std::strcmp(argv[1], "help")) {
    std::cout << kHelp;
    return argc < 2 ? vitc::tools::kExitUsage : 0;
  }
  for (const Command &c : kCommands)
    if (!std::strcmp(argv[1], c.name))
      return c.run(argc - 1, argv + 1);
  std::string known;
  for (const Command &c : kCommands)
    known += (known.empty() ? "" : ", ") + std::string(c.name);
  return vitc::tools::usageError(std::string("unknown command '") + argv[1] + "' (known: " + known +
                                 ")");
}
