// Golden IR tests: every tests/passes/<pass>/*.ir file, case by case.
//
// A file starts with `// RUN: <comma-separated passes> [| key=value ...]` (pass settings, such as
// the layout); cases are separated by `// -----` lines.
// Each case opens with a one-sentence comment of intent, then the input module, then what the
// output must hold: `// CHECK: text` (a later line contains text), `// CHECK-NEXT: text` (the next
// line does), `// CHECK-NOT: text` (no line before the next match does), or
// `// EXPECT-ERROR: text` (the pipeline fails with a message containing text). Expectations are
// regenerated with tests/passes/update-golden.sh and reviewed, not typed by hand.
#include <filesystem>
#include <fstream>
#include <sstream>

#include <gtest/gtest.h>

#include "ir/text.h"
#include "ir/verifier.h"
#include "passes/pass_manager.h"

namespace vitc {
namespace {

namespace fs = std::filesystem;

struct Case {
  std::vector<std::string> lines;                          // everything but expectations
  std::vector<std::pair<std::string, std::string>> checks; // (directive, text)
};

struct GoldenFile {
  std::string run;
  std::vector<Case> cases;
};

GoldenFile readGolden(const std::string &path) {
  std::ifstream in(path);
  GoldenFile g;
  g.cases.emplace_back();
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("// RUN:", 0) == 0) {
      g.run = line.substr(7);
      g.run.erase(0, g.run.find_first_not_of(' '));
      continue;
    }
    if (line == "// -----") {
      g.cases.emplace_back();
      continue;
    }
    bool isCheck = false;
    for (const char *d : {"CHECK-NEXT", "CHECK-NOT", "CHECK", "EXPECT-ERROR"}) {
      std::string prefix = std::string("// ") + d + ":";
      if (line.rfind(prefix, 0) == 0) {
        std::string text = line.substr(prefix.size());
        if (!text.empty() && text[0] == ' ')
          text.erase(0, 1);
        g.cases.back().checks.emplace_back(d, text);
        isCheck = true;
        break;
      }
    }
    if (!isCheck)
      g.cases.back().lines.push_back(line);
  }
  // A file may start with a separator after the RUN line.
  std::erase_if(g.cases, [](const Case &c) {
    for (const std::string &l : c.lines)
      if (l.find("module") != std::string::npos)
        return false;
    return true;
  });
  return g;
}

// Runs the case; returns the printed module or "error: ..." text.
std::string runCase(const Case &c, const std::string &run, const std::string &path, bool &failed) {
  std::string text;
  for (const std::string &l : c.lines)
    text += l + "\n";
  failed = true;
  auto m = ir::parseModule(text, path);
  if (!m)
    return m.error().str();
  Diagnostics d = ir::verify(**m);
  if (!d.empty())
    return "input does not verify:\n" + d.str();
  std::string list = run.substr(0, run.find('|'));
  auto names = passes::parsePassList(list);
  if (!names)
    return names.error().str();
  passes::PipelineOptions options;
  options.passes = *names;
  options.verifyEach = true;
  std::ostringstream sink;
  passes::PassManager pm(options, sink);
  passes::PassContext ctx;
  if (size_t bar = run.find('|'); bar != std::string::npos) {
    std::istringstream settings(run.substr(bar + 1));
    std::string kv;
    while (settings >> kv) {
      size_t eq = kv.find('=');
      auto setting = passes::PassSetting::parse(kv.substr(0, eq),
                                                eq == std::string::npos ? "" : kv.substr(eq + 1));
      if (!setting)
        return "bad RUN line: " + setting.error().str();
      setting->applyTo(ctx.options);
    }
  }
  if (Status s = pm.run(**m, ctx); !s)
    return s.error().str();
  failed = false;
  std::string out = ir::print(**m);
  for (const std::string &r : ctx.remarks)
    out += "remark: " + r + "\n";
  return out;
}

std::vector<std::string> splitLines(const std::string &s) {
  std::vector<std::string> lines;
  std::istringstream in(s);
  std::string l;
  while (std::getline(in, l))
    lines.push_back(l);
  return lines;
}

// Checks `output` against the expectations; returns a description of the first mismatch.
std::string match(const Case &c, const std::string &output, bool failed) {
  std::vector<std::string> lines = splitLines(output);
  size_t next = 0;
  std::vector<std::string> pendingNot;
  for (const auto &[directive, text] : c.checks) {
    if (directive == "EXPECT-ERROR") {
      if (!failed || output.find(text) == std::string::npos)
        return "expected an error containing '" + text + "', got:\n" + output;
      continue;
    }
    if (failed)
      return "the pipeline failed:\n" + output;
    if (directive == "CHECK-NOT") {
      pendingNot.push_back(text);
      continue;
    }
    size_t found = lines.size();
    if (directive == "CHECK-NEXT") {
      if (next < lines.size() && lines[next].find(text) != std::string::npos)
        found = next;
    } else {
      for (size_t i = next; i < lines.size(); ++i)
        if (lines[i].find(text) != std::string::npos) {
          found = i;
          break;
        }
    }
    if (found == lines.size())
      return directive + ": '" + text + "' not found (from output line " +
             std::to_string(next + 1) + ") in:\n" + output;
    for (const std::string &no : pendingNot)
      for (size_t i = next; i < found; ++i)
        if (lines[i].find(no) != std::string::npos)
          return "CHECK-NOT: '" + no + "' found on output line " + std::to_string(i + 1);
    pendingNot.clear();
    next = found + 1;
  }
  for (const std::string &no : pendingNot)
    for (size_t i = next; i < lines.size(); ++i)
      if (lines[i].find(no) != std::string::npos)
        return "CHECK-NOT: '" + no + "' found on output line " + std::to_string(i + 1);
  if (c.checks.empty())
    return "case has no expectations: run tests/passes/update-golden.sh";
  return "";
}

// Rewrites the file with each case's expectations replaced by its current output.
void updateGolden(const std::string &path, const GoldenFile &g) {
  std::string out = "// RUN: " + g.run + "\n";
  for (size_t i = 0; i < g.cases.size(); ++i) {
    const Case &c = g.cases[i];
    if (i > 0)
      out += "// -----\n";
    std::vector<std::string> lines = c.lines;
    while (!lines.empty() && lines.back().empty())
      lines.pop_back();
    while (!lines.empty() && lines.front().empty())
      lines.erase(lines.begin());
    for (const std::string &l : lines)
      out += l + "\n";
    bool failed = false;
    std::string result = runCase(c, g.run, path, failed);
    if (failed) {
      out += "// EXPECT-ERROR: " + splitLines(result).front().substr(result.find("error: ") + 7) +
             "\n";
      continue;
    }
    bool first = true;
    for (const std::string &l : splitLines(result)) {
      out += std::string(first ? "// CHECK: " : "// CHECK-NEXT: ") + l + "\n";
      first = false;
    }
  }
  std::ofstream(path) << out;
}

std::vector<std::string> goldenFiles() {
  std::vector<std::string> files;
  for (const auto &entry :
       fs::recursive_directory_iterator(std::string(VITC_TEST_DATA) + "/passes"))
    if (entry.path().extension() == ".ir")
      files.push_back(entry.path().string());
  std::sort(files.begin(), files.end());
  return files;
}

class Golden : public ::testing::TestWithParam<std::string> {};

TEST_P(Golden, MatchesExpectations) {
  const std::string &path = GetParam();
  GoldenFile g = readGolden(path);
  ASSERT_FALSE(g.run.empty()) << path << " has no RUN line";
  ASSERT_FALSE(g.cases.empty()) << path << " has no cases";
  if (std::getenv("VITC_UPDATE_GOLDEN")) {
    updateGolden(path, g);
    g = readGolden(path);
  }
  for (size_t i = 0; i < g.cases.size(); ++i) {
    bool failed = false;
    std::string output = runCase(g.cases[i], g.run, path, failed);
    std::string problem = match(g.cases[i], output, failed);
    EXPECT_EQ(problem, "") << path << " case " << i + 1;
  }
}

INSTANTIATE_TEST_SUITE_P(Files, Golden, ::testing::ValuesIn(goldenFiles()), [](const auto &info) {
  std::string name = fs::path(info.param).parent_path().filename().string() + "_" +
                     fs::path(info.param).stem().string();
  for (char &c : name)
    if (!std::isalnum(static_cast<unsigned char>(c)))
      c = '_';
  return name;
});

} // namespace
} // namespace vitc
