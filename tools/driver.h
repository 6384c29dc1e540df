// Shared pieces of the vitc subcommands: option groups, model loading, error reporting.
#pragma once

#include <iostream>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include <boost/program_options.hpp>

#include "frontend/load_model.h"
#include "ir/types.h"
#include "passes/pass_manager.h"
#include "support/error.h"

namespace vitc::tools {

namespace po = boost::program_options;

// Exit codes: 0 success, 1 an error in the user's files or a failed run, 2 bad command line.
constexpr int kExitError = 1;
constexpr int kExitUsage = 2;

// Prints `error` in compiler style and returns kExitError.
int report(const Error &error);
// Prints `vitc: error: MESSAGE` (one line, control characters escaped) and returns kExitUsage.
int usageError(const std::string &message);
// A bad command-line value, located at its flag (`--mesh: error: ...`): returns kExitUsage.
int usageError(const Error &error);
// Either: located at its flag when the error names one, else as vitc's own.
int usageErrorOf(const Error &error);

// Bounds on command-line numbers: beyond them a value is a typo, not a request.
constexpr int64_t kMaxBatch = 1 << 20;
constexpr int kMaxThreads = 1024;
constexpr double kMaxCollectiveTimeoutSeconds = 86400;

// --batch, --mesh and --layout.
struct ModelOptions {
  std::string model;
  int64_t batch = 1;
  std::string mesh;
  std::string layout; // a layout JSON file (vitc autotune writes them)
  void add(po::options_description &desc, const char *batchHelp = "images per batch",
           const char *batchDefault = "1");
  // Checks --batch and --mesh before anything is loaded; errors are usage errors.
  Status check() const;
  // The files the model option names (the path as given, with `.vit`, a directory's
  // config.json and model.safetensors) and the layout, for checks that an output is no input.
  std::vector<std::pair<std::string, std::string>> inputFiles() const;
};

// The pass-manager flags of DESIGN.md.
struct PassFlags {
  std::string passes, disable, printBefore, printAfter, dumpDir;
  bool printAfterAll = false, printChanged = false, timePasses = false;
  bool verifyEach = false;
  int stopAfterPassNum = -1;
  std::vector<std::string> settings; // --pass-option key=value, as given
  std::string dtype;                 // --dtype: the pass setting `dtype`, under its own flag
  void add(po::options_description &desc);
  // Checks pass names and --stop-after-pass-num, and parses every --pass-option, before anything
  // is loaded; errors are usage errors.
  Status check(const po::variables_map &vm);
  Expected<passes::PipelineOptions> toOptions() const;
  // After check(): whether a --pass-option sets `key`, and `options` with every --pass-option
  // applied over it (the last of one key wins), as parsed by check().
  bool sets(std::string_view key) const;
  void applyTo(passes::PassOptions &options) const;

private:
  std::vector<passes::PassSetting> parsed_;
};

// The value of --dtype (f32 or bf16) as the pass setting `dtype`; errors are located at the flag.
Expected<passes::PassSetting> parseDTypeFlag(const std::string &value);

// Refuses an output that is one of `inputs` ({flag, path}) by identity (device and inode, so
// symlinks, hard links and other spellings of one file are caught): a usage error at `flag`.
Status checkNotAnInput(const std::string &flag, const std::string &output,
                       const std::vector<std::pair<std::string, std::string>> &inputs);
// Refuses, before any work, an output that cannot be written: a missing folder, a directory, a
// folder (or device) without write permission. Errors are located at the output's path.
Status checkWritable(const std::string &output);

// What --mesh, --layout and --pass-option choose, read and checked once, before the model loads:
// the layout file is read here and nowhere else.
struct ModelLayout {
  passes::PassOptions passOptions; // the layout file's settings, every --pass-option over them
  std::optional<ir::Mesh> mesh;    // --mesh or the layout file's; none: the model's own
};
Expected<ModelLayout> readModelLayout(const ModelOptions &options,
                                      const PassFlags *flags = nullptr);
// The images of one micro-batch when `layout` runs a batch of `batch` in parts (the whole batch
// without micro-batches): the parts and, in each, the devices of the data axis must divide it.
// Errors are located at the layout file, or at --pass-option where that set the micro-batches.
Expected<int64_t> microbatchSize(int64_t batch, const ModelOptions &options,
                                 const ModelLayout &layout, const PassFlags *flags);
// Loads the model on `layout.mesh` (an IR file's own mesh must agree) and sets
// `layout.passOptions.meshLoc` to where the module's mesh came from.
Expected<frontend::LoadedModel> loadModelOnMesh(const ModelOptions &options, ModelLayout &layout);
// Both steps, for a command that needs nothing from the layout before the model loads; the pass
// options go to `passOptions`.
Expected<frontend::LoadedModel> loadModelOnMesh(const ModelOptions &options,
                                                const PassFlags *flags = nullptr,
                                                passes::PassOptions *passOptions = nullptr);

// Parses a subcommand's arguments; returns false (after printing) if it should exit with `exit`.
bool parseArgs(int argc, char **argv, const po::options_description &desc,
               const po::positional_options_description &positional, po::variables_map &vm,
               const char *usage, int &exit);

int runStats(int argc, char **argv);
int runCompile(int argc, char **argv);
int runRun(int argc, char **argv);
int runTrain(int argc, char **argv);
int runInitWeights(int argc, char **argv);
int runAutotune(int argc, char **argv);

// Prints the passes' remarks on stderr: one summary line per pass, or with `which` (the value of
// --remarks[=PASS,...]) every remark of `passes` (all when empty), as LLVM's -Rpass= does.
void printRemarks(const std::vector<std::string> &remarks, const std::string &which,
                  const std::set<std::string> &passes);

} // namespace vitc::tools
