// vitc: the command-line driver. Each subcommand lives in its own cmd_*.cpp.
#include <cstdlib>
#include <cstring>
#include <exception>
#include <iostream>
#include <new>
#include <stdexcept>

#include "support/files.h"
#include "support/tensor.h"
#include "tools/driver.h"

namespace {

constexpr const char *kHelp = R"(vitc: a compiler for large Vision Transformers

usage: vitc <command> [options]

commands:
  stats    MODEL [--mesh data=2,model=4] [--batch B]
           parameters, FLOPs, tokens and per-device memory, computed from the IR
  compile  MODEL [--mesh ...] [--emit=ir|dot|signature|llvm|asm|obj|exe] [-o OUT] [pass flags]
           lower the model through the pass pipeline and print or write the result
  run      MODEL --weights W --input X.npy --output Y.npy [--backend interpreter]
           run an image batch; prints the top-5 classes when the model has labels
  train    MODEL --data D -o W.safetensors [--optimizer sgd|adamw|adafactor] [--lr LR]
           [--steps N | --epochs E] [--checkpoint-every K] [--resume CKPT]
           train on a .npz or MNIST-format IDX data set; prints progress, the median step time
           and the test accuracy
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
    {"train", vitc::tools::runTrain},
};

// Runs a subcommand. Errors are returned values, never exceptions; this is the last resort for a
// library that throws anyway (std::bad_alloc from a container, a parser's exception), so that
// a user sees one line rather than an abort.
// VITC_TEST_THROW (bad_alloc, or any other text for a std::runtime_error) makes the subcommand
// throw, so that tests can check this handler.
int dispatch(const Command &c, int argc, char **argv) {
  try {
    if (const char *what = std::getenv("VITC_TEST_THROW")) {
      if (!std::strcmp(what, "bad_alloc"))
        throw std::bad_alloc();
      throw std::runtime_error(what);
    }
    return c.run(argc, argv);
  } catch (const vitc::OutOfMemory &e) { // says how much
    std::cerr << "vitc: error: " << e.what() << std::endl;
  } catch (const std::bad_alloc &) {
    std::cerr << "vitc: error: out of memory" << std::endl;
  } catch (const std::exception &e) {
    std::cerr << "vitc: error: internal error: " << vitc::Error(e.what()).message() << std::endl;
  } catch (...) {
    std::cerr << "vitc: error: internal error: an unknown exception" << std::endl;
  }
  return vitc::tools::kExitError;
}

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
      return dispatch(c, argc - 1, argv + 1);
  std::string known;
  for (const Command &c : kCommands)
    known += (known.empty() ? "" : ", ") + std::string(c.name);
  return vitc::tools::usageError(std::string("unknown command '") + argv[1] + "' (known: " + known +
                                 ")");
}
