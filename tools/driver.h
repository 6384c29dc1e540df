// Shared pieces of the vitc subcommands: option groups, model loading, error reporting.
#pragma once

#include <iostream>
#include <string>
#include <vector>

#include <boost/program_options.hpp>

#include "frontend/load_model.h"
#include "passes/pass_manager.h"
#include "support/error.h"

namespace vitc::tools {

namespace po = boost::program_options;

// Exit codes: 0 success, 1 an error in the user's files or a failed run, 2 bad command line.
constexpr int kExitError = 1;
constexpr int kExitUsage = 2;

// Prints `error` in compiler style and returns kExitError.
int report(const Error &error);
int usageError(const std::string &message);

// --batch, --mesh and --layout.
struct ModelOptions {
  std::string model;
  int64_t batch = 1;
  std::string mesh;
  std::string layout; // a layout JSON file (vitc autotune writes them)
  void add(po::options_description &desc);
};

// The pass-manager flags of DESIGN.md.
struct PassFlags {
  std::string passes, disable, printBefore, printAfter, dumpDir;
  bool printAfterAll = false, printChanged = false, timePasses = false;
  bool verifyEach = false;
  int stopAfterPassNum = -1;
  std::vector<std::string> settings; // --pass-option key=value
  void add(po::options_description &desc);
  Expected<passes::PipelineOptions> toOptions() const;
  passes::PassOptions passOptions() const;
};

// Loads the model and applies --mesh and --layout; the layout's settings go to `passOptions`.
Expected<frontend::LoadedModel> loadModel(const ModelOptions &options,
                                          passes::PassOptions *passOptions = nullptr);

// Parses a subcommand's arguments; returns false (after printing) if it should exit with `exit`.
bool parseArgs(int argc, char **argv, const po::options_description &desc,
               const po::positional_options_description &positional, po::variables_map &vm,
               const char *usage, int &exit);

int runStats(int argc, char **argv);
int runCompile(int argc, char **argv);
int runRun(int argc, char **argv);
int runInitWeights(int argc, char **argv);
int runAutotune(int argc, char **argv);

} // namespace vitc::tools
