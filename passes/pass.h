// What a pass is, and what it is given.
//
// A pass rewrites a module in place and says whether it changed anything. Its name is its
// interface: `--passes=`, `--print-after=` and the registry all use it. Passes report what they
// decided (for example, which collectives were decomposed and why others were not) as remarks.
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "ir/module.h"

namespace vitc::passes {

// Settings that passes read: the mesh and layout chosen on the command line, tuning knobs.
struct PassOptions {
  // Per-pass switches set by the driver or tests, e.g. {"layout.microbatches", "2"}. The driver
  // checks each against the table of known settings (pass_manager.h: checkPassSetting) before any
  // pass runs, so a pass may parse its values without re-checking them.
  std::vector<std::pair<std::string, std::string>> settings;
  // Where the module's mesh came from (`--mesh`, a layout file, an IR header), for errors about
  // the mesh; unknown (no location) when a test or a tool sets the mesh itself.
  Loc meshLoc = Loc{};
  std::string get(std::string_view key, std::string_view fallback = "") const;
};

class PassContext {
public:
  PassOptions options;
  // One line per decision a pass wants the user to see, starting with the pass's name and ": "
  // (`vitc compile` prints a summary per pass, or every line with --remarks).
  std::vector<std::string> remarks;
  void remark(std::string line) { remarks.push_back(std::move(line)); }
};

class Pass {
public:
  virtual ~Pass() = default;
  virtual std::string_view name() const = 0;
  // Returns whether the module changed. Errors are for inputs the pass cannot handle that a user
  // could have written (a layout that does not divide the model); bugs assert.
  virtual Expected<bool> run(ir::Module &m, PassContext &ctx) = 0;
};

} // namespace vitc::passes
