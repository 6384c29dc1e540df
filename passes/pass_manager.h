// Runs a pipeline of passes with LLVM/MLIR-style instrumentation.
//
// --passes=a,b (instead of the default pipeline), --disable-pass=NAME, --stop-after-pass-num=N,
// --print-before/--print-after=NAME[,NAME], --print-after-all, --print-changed (only passes that
// changed something), --time-passes, --dump-dir=DIR (numbered files 00-input.ir, 01-<pass>.ir,
// ...),
// --verify-each (the verifier after every pass, and a check that a pass that reports "unchanged"
// really left the module unchanged).
#pragma once

#include <ostream>
#include <set>
#include <string>
#include <vector>

#include "passes/pass.h"

namespace vitc::passes {

struct PipelineOptions {
  std::vector<std::string> passes; // empty: the default pipeline
  std::set<std::string> disabled;
  std::set<std::string> printBefore;
  std::set<std::string> printAfter;
  bool printAfterAll = false;
  bool printChanged = false;
  bool verifyEach = false;
  bool timePasses = false;
  int stopAfterPassNum = -1; // run only the first N passes of the pipeline
  std::string dumpDir;
};

// Parses "a,b,c" into names and checks each against the registry.
Expected<std::vector<std::string>> parsePassList(std::string_view list);

// One line per pass for what its remarks say: a pass's only remark as it is; otherwise the first
// remark of each kind (remarks that differ only in value names and numbers are of one kind) with
// how many more there are like it.
struct RemarkSummary {
  std::string pass;
  size_t count = 0; // remarks it summarizes
  std::string line; // "collective-matmul: all_gather %a -> 4-step ring (and 47 more like it); ..."
};
std::vector<RemarkSummary> summarizeRemarks(const std::vector<std::string> &remarks);
// The pass a remark came from: the text before its first ": ".
std::string_view remarkPass(std::string_view remark);

class PassManager {
public:
  PassManager(PipelineOptions options, std::ostream &out)
      : options_(std::move(options)), out_(out) {}
  // Checks the options (unknown pass names are errors) before anything runs.
  Status validate() const;
  Status run(ir::Module &m, PassContext &ctx);
  // The passes that will run, in order, after --passes, --disable-pass and --stop-after-pass-num.
  std::vector<std::string> plannedPasses() const;

private:
  PipelineOptions options_;
  std::ostream &out_;
};

} // namespace vitc::passes
