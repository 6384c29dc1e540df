// The pass pipeline driver and its instrumentation.
#include "passes/pass_manager.h"

#include <algorithm>
#include <cctype>
#include <chrono>
#include <filesystem>
#include <map>

#include "ir/text.h"
#include "ir/verifier.h"
#include "passes/registry.h"
#include "support/files.h"

namespace vitc::passes {

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

std::string_view remarkPass(std::string_view remark) {
  size_t colon = remark.find(": ");
  return colon == std::string_view::npos ? std::string_view{} : remark.substr(0, colon);
}

namespace {

// A remark with the names of values and all numbers blanked out: remarks that differ only in
// which block or how large are of one kind.
std::string remarkKind(std::string_view remark) {
  std::string kind;
  for (size_t i = 0; i < remark.size();) {
    char c = remark[i];
    if (c == '%') {
      kind += '%';
      ++i;
      while (i < remark.size() && (std::isalnum(static_cast<unsigned char>(remark[i])) ||
                                   remark[i] == '_' || remark[i] == '.' || remark[i] == '-'))
        ++i;
    } else if (std::isdigit(static_cast<unsigned char>(c))) {
      kind += '#';
      while (i < remark.size() && std::isdigit(static_cast<unsigned char>(remark[i])))
        ++i;
    } else {
      kind += c;
      ++i;
    }
  }
  return kind;
}

} // namespace

std::vector<RemarkSummary> summarizeRemarks(const std::vector<std::string> &remarks) {
  struct Kind {
    std::string first;
    size_t count = 0;
  };
  struct Group {
    std::vector<Kind> kinds;
    std::map<std::string, size_t> index; // remarkKind -> position in `kinds`
    size_t count = 0;
  };
  std::vector<std::string> order;
  std::map<std::string, Group> groups;
  for (const std::string &r : remarks) {
    std::string pass(remarkPass(r));
    auto [it, inserted] = groups.try_emplace(pass);
    if (inserted)
      order.push_back(pass);
    Group &g = it->second;
    std::string_view body = std::string_view(r).substr(pass.empty() ? 0 : pass.size() + 2);
    auto [k, isNew] = g.index.try_emplace(remarkKind(body), g.kinds.size());
    if (isNew)
      g.kinds.push_back(Kind{std::string(body), 0});
    ++g.kinds[k->second].count;
    ++g.count;
  }
  // A summary line stays readable: the first few kinds, then how many more kinds there were.
  constexpr size_t kMaxKinds = 3;
  std::vector<RemarkSummary> out;
  for (const std::string &pass : order) {
    const Group &g = groups[pass];
    RemarkSummary s{pass, g.count, pass.empty() ? "" : pass + ": "};
    for (size_t i = 0; i < g.kinds.size() && i < kMaxKinds; ++i) {
      s.line += (i ? "; " : "") + g.kinds[i].first;
      if (g.kinds[i].count > 1)
        s.line += fmt::format(" (and {} more like it)", g.kinds[i].count - 1);
    }
    if (g.kinds.size() > kMaxKinds)
      s.line += fmt::format("; and {} more kinds of remark", g.kinds.size() - kMaxKinds);
    out.push_back(std::move(s));
  }
  return out;
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
      if (!diags.empty()) {
        // One line: the first problem and how many there were (--dump-dir shows the IR).
        return makeError(Loc{}, "internal error: pass '{}' left invalid IR ({} problem{}): {}",
                         name, diags.errors.size(), diags.errors.size() == 1 ? "" : "s",
                         diags.errors.front().str());
      }
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
