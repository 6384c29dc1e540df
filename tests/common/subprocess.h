// Running the vitc binary (or any command) from tests and capturing what it printed.
#pragma once

#include <string>
#include <vector>

namespace vitc::test {

struct CommandResult {
  int exit = -1; // the exit status, or 128 + signal if killed
  std::string out;
  std::string err;
};

// Runs `args[0]` with `args` (no shell), with optional environment additions (replacing inherited
// variables of the same names) and a time limit.
CommandResult runCommand(const std::vector<std::string> &args,
                         const std::vector<std::string> &extraEnv = {}, int timeoutSeconds = 300);

// Runs the vitc binary built with the tests.
CommandResult runVitc(const std::vector<std::string> &args);

// A fresh empty directory for one test.
std::string makeTempDir(const std::string &name);

std::string sourcePath(const std::string &relative); // under the repository root
std::string slurp(const std::string &path);
bool fileExists(const std::string &path);

} // namespace vitc::test
