// Running one pass: its remarks carry its name.
#include "passes/pass.h"

#include <utility>

namespace vitc::passes {

void PassContext::remark(std::string_view line) {
  remarks.push_back(pass_.empty() ? std::string(line) : fmt::format("{}: {}", pass_, line));
}

Expected<bool> Pass::run(ir::Module &m, PassContext &ctx) {
  std::string_view outer = std::exchange(ctx.pass_, name());
  Expected<bool> changed = rewrite(m, ctx);
  ctx.pass_ = outer;
  return changed;
}

} // namespace vitc::passes
