// What a pass is, and what it is given.
//
// A pass rewrites a module in place and says whether it changed anything. Its name is its
// interface: `--passes=`, `--print-after=` and `--remarks=` use it; it is written once, in the
// pass's class, and the registry takes it from there. Passes report what they decided (for
// example, which collectives were decomposed and why others were not) as remarks, which carry the
// pass's name.
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "ir/module.h"
#include "passes/pass_options.h"

namespace vitc::passes {

class PassContext {
public:
  // The settings, parsed and checked before any pass runs: passes read typed values only.
  PassOptions options;
  // One line per decision a pass wants the user to see, starting with the pass's name and ": "
  // (`vitc compile` prints a summary per pass, or every line with --remarks).
  std::vector<std::string> remarks;
  // Records `line` as a remark of the pass that is running.
  void remark(std::string_view line);

private:
  friend class Pass;
  std::string_view pass_; // the pass that is running, set by Pass::run
};

class Pass {
public:
  virtual ~Pass() = default;
  virtual std::string_view name() const = 0;
  // Returns whether the module changed. Errors are for inputs the pass cannot handle that a user
  // could have written (a layout that does not divide the model); bugs assert.
  Expected<bool> run(ir::Module &m, PassContext &ctx);

private:
  // The rewrite itself; `run` makes the remarks it records name the pass.
  virtual Expected<bool> rewrite(ir::Module &m, PassContext &ctx) = 0;
};

} // namespace vitc::passes
