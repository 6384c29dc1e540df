// The pass pipeline driver and its instrumentation.
#include "passes/pass_manager.h"

#include <chrono>
#include <filesystem>

#include "ir/text.h"
#include "ir/verifier.h"
#include "passes/registry.h"
#include "support/files.h"

namespace vitc::passes {

std::string PassOptions::get(std::string_view key, std::string_view fallback) const {
  for (auto it = settings.rbegin(); it != settings.rend(); ++it)
    if (it->first == key)
      return it->second;
  return std::string(fallback);
}

Expected<std::vector<std::string>> parsePassList(std::string_view list) {
  std::vector<std::string> names;
  while (!list.empty()) {
    size_t comma = list.find(',');
    std::string name(list.substr(0, comma));
    list = comma == std::string_view::npos ? std::string_view{} : list.substr(comma + 1);
    name.erase(0, name.find_first_not_of(" \t"));
    name.erase(name.find_last_not_of(" \t") + 1);
    if (name.empty())
      continue;
    VITC_TRY(findPass(name));
    names.push_back(name);
  }
  return names;
}

Status PassManager::validate() const {
  for (const auto *set : {&options_.disabled, &options_.printBefore, &options_.printAfter})
    for (const std::string &name : *set)
      VITC_TRY(findPass(name));
  for (const std::string &name : options_.passes)
    VITC_TRY(findPass(name));
  return Status::ok();
}

std::vector<std::string> PassManager::plannedPasses() const {
  std::vector<std::string> names = options_.passes;
  if (names.empty())
    for (const PipelineStep &step : defaultPipeline())
      names.emplace_back(step.pass);
  std::vector<std::string> planned;
  for (const std::string &name : names) {
    if (options_.disabled.count(name))
      continue;
    if (options_.stopAfterPassNum >= 0 &&
        static_cast<int>(planned.size()) >= options_.stopAfterPassNum)
      break;
    planned.push_back(name);
  }
  return planned;
}

namespace {

void printBanner(std::ostream &out, std::string_view when, std::string_view pass, size_t number,
                 const ir::Module &m) {
  out << "// -----// IR Dump " << when << " " << pass << " (" << number << ") //----- //\n"
      << ir::print(m) << "\n";
}

Status dump(const std::string &dir, size_t number, std::string_view name, const ir::Module &m) {
  std::string path =
      (std::filesystem::path(dir) / fmt::format("{:02d}-{}.ir", number, name)).string();
  return writeFileAtomically(path, ir::print(m));
}

} // namespace

Status PassManager::run(ir::Module &m, PassContext &ctx) {
  VITC_TRY(validate());
  std::vector<std::string> planned = plannedPasses();
  if (!options_.dumpDir.empty()) {
    std::error_code ec;
    std::filesystem::create_directories(options_.dumpDir, ec);
    if (ec)
      return makeError(Loc::inFile(options_.dumpDir), "cannot create dump directory: {}",
                       ec.message());
    VITC_TRY(dump(options_.dumpDir, 0, "input", m));
  }
  using Clock = std::chrono::steady_clock;
  std::vector<std::pair<std::string, double>> timings;
  for (size_t i = 0; i < planned.size(); ++i) {
    const std::string &name = planned[i];
    size_t number = i + 1;
    VITC_ASSIGN(const PassInfo *info, findPass(name));
    std::unique_ptr<Pass> pass = info->create();
    if (options_.printBefore.count(name))
      printBanner(out_, "Before", name, number, m);
    std::string before = options_.verifyEach ? ir::print(m) : std::string();

    auto start = Clock::now();
    Expected<bool> changed = pass->run(m, ctx);
    double ms = std::chrono::duration<double, std::milli>(Clock::now() - start).count();
    timings.emplace_back(name, ms);
    if (!changed)
      return changed.error();

    if (options_.verifyEach) {
      Diagnostics diags = ir::verify(m);
      if (!diags.empty())
        return makeError(Loc{}, "internal error: pass '{}' left invalid IR:\n{}", name,
                         diags.str());
      if (!*changed && ir::print(m) != before)
        return makeError(Loc{}, "internal error: pass '{}' reported no change but changed the IR",
                         name);
    }
    if (options_.printAfterAll || options_.printAfter.count(name) ||
        (options_.printChanged && *changed))
      printBanner(out_, "After", name, number, m);
    if (!options_.dumpDir.empty())
      VITC_TRY(dump(options_.dumpDir, number, name, m));
  }
  if (options_.timePasses) {
    double total = 0;
    for (const auto &t : timings)
      total += t.second;
    out_ << "===-------------------------------------------------------------------------===\n"
         << "                          vitc pass execution timing\n"
         << "===-------------------------------------------------------------------------===\n"
         << fmt::format("  Total: {:.3f} ms\n\n   Time (ms)   (%)  Pass\n", total);
    for (const auto &[name, ms] : timings)
      out_ << fmt::format("  {:10.3f} {:5.1f}%  {}\n", ms, total > 0 ? 100 * ms / total : 0.0,
                          name);
    out_ << fmt::format("  {:10.3f} 100.0%  Total\n", total);
  }
  return Status::ok();
}

} // namespace vitc::passes
