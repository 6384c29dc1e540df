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
#include "passes/pass_options.h"

namespace vitc::passes {

class PassContext {
public:
  // The settings, parsed and checked before any pass runs: passes read typed values only.
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
