// Faults at the command line: interrupted writes, runs too big for the machine, dead MPI ranks.
#include <algorithm>
#include <chrono>
#include <csignal>
#include <fcntl.h>
#include <filesystem>
#include <spawn.h>
#include <sstream>
#include <sys/wait.h>
#include <thread>
#include <unistd.h>

#include <gtest/gtest.h>

#include "frontend/formats/npy.h"
#include "tests/common/subprocess.h"

extern char **environ;

namespace vitc {
namespace {

namespace fs = std::filesystem;

pid_t spawn(const std::vector<std::string> &args, const std::vector<std::string> &env) {
  std::vector<char *> argv;
  for (const std::string &a : args)
    argv.push_back(const_cast<char *>(a.c_str()));
  argv.push_back(nullptr);
  std::vector<std::string> envs;
  for (char **e = environ; *e; ++e)
    envs.emplace_back(*e);
  envs.insert(envs.end(), env.begin(), env.end());
  std::vector<char *> envp;
  for (std::string &e : envs)
    envp.push_back(e.data());
  envp.push_back(nullptr);
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0);
  posix_spawn_file_actions_addopen(&actions, 2, "/dev/null", O_WRONLY, 0);
  pid_t pid = 0;
  posix_spawnp(&pid, argv[0], &actions, nullptr, argv.data(), envp.data());
  posix_spawn_file_actions_destroy(&actions);
  return pid;
}

bool anyTempFile(const std::string &dir) {
  for (const auto &e : fs::directory_iterator(dir))
    if (e.path().string().find(".tmp.") != std::string::npos)
      return true;
  return false;
}

TEST(Faults, CtrlCDuringAWriteLeavesNoFile) {
  std::string dir = test::makeTempDir("ctrl-c");
  pid_t pid = spawn({VITC_BINARY, "init-weights", test::sourcePath("examples/vit-ti16.vit"), "-o",
                     dir + "/w.safetensors"},
                    {"VITC_SLOW_WRITES=1"});
  ASSERT_GT(pid, 0);
  // Wait until the temporary file exists: the write is under way.
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  while (!anyTempFile(dir) && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  ASSERT_TRUE(anyTempFile(dir)) << "the write never started";
  kill(pid, SIGINT);
  int status = 0;
  waitpid(pid, &status, 0);
  EXPECT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGINT);
  EXPECT_FALSE(fs::exists(dir + "/w.safetensors"));
  EXPECT_FALSE(anyTempFile(dir));
}

TEST(Faults, ARunTooBigForTheMachineIsRefusedBeforeItAllocates) {
  std::string dir = test::makeTempDir("too-big");
  ASSERT_TRUE(formats::writeNpy(dir + "/x.npy", Tensor::zeros({1, 3, 224, 224})));
  auto start = std::chrono::steady_clock::now();
  auto r = test::runVitc({"run", test::sourcePath("examples/vit22b.vit"), "--weights", "random:0",
                          "--input", dir + "/x.npy", "--output", dir + "/out.npy"});
  double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  EXPECT_EQ(r.exit, 1);
  EXPECT_NE(r.err.find("error: this run needs"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("GiB but this machine has"), std::string::npos) << r.err;
  EXPECT_FALSE(fs::exists(dir + "/out.npy"));
  EXPECT_LT(seconds, 30); // refused, not attempted
  auto big = test::runVitc(
      {"init-weights", test::sourcePath("examples/vit22b.vit"), "-o", dir + "/w.safetensors"});
  EXPECT_EQ(big.exit, 1);
  EXPECT_NE(big.err.find("writing these weights needs"), std::string::npos) << big.err;
  EXPECT_FALSE(fs::exists(dir + "/w.safetensors"));
}

// Whether the process /proc/<pid> was started, directly or not, by `ancestor`.
bool descendsFrom(fs::path proc, pid_t ancestor) {
  for (int depth = 0; depth < 8; ++depth) {
    // /proc/<pid>/stat: "pid (comm) state ppid ..."; comm may hold spaces and parentheses.
    std::string stat = test::slurp((proc / "stat").string());
    size_t close = stat.rfind(')');
    if (close == std::string::npos)
      return false;
    std::istringstream rest(stat.substr(close + 1));
    std::string state;
    long parent = 0;
    rest >> state >> parent;
    if (parent == ancestor)
      return true;
    if (parent <= 1)
      return false;
    proc = fs::path("/proc") / std::to_string(parent);
  }
  return false;
}

// Processes other than this one whose command line mentions `text` (a test's private folder).
std::vector<std::string> processesMentioning(const std::string &text) {
  std::vector<std::string> found;
  std::string self = std::to_string(getpid());
  for (const auto &e : fs::directory_iterator("/proc")) {
    std::string name = e.path().filename().string();
    if (name.find_first_not_of("0123456789") != std::string::npos || name == self)
      continue;
    std::string cmdline = test::slurp((e.path() / "cmdline").string());
    std::replace(cmdline.begin(), cmdline.end(), '\0', ' ');
    if (cmdline.find(text) != std::string::npos)
      found.push_back(name + ": " + cmdline);
  }
  return found;
}

std::vector<std::string> entries(const std::string &dir) {
  std::vector<std::string> names;
  for (const auto &e : fs::directory_iterator(dir))
    names.push_back(e.path().filename().string());
  return names;
}

std::string joined(const std::vector<std::string> &lines) {
  std::string out;
  for (const std::string &l : lines)
    out += l + "\n";
  return out;
}

// Ctrl-C while an executable is being linked: vitc stops the linker (and what it started), removes
// its temporary folder and its half-linked output, and dies of the signal. Interrupted at several
// moments from the start of the link, since a leftover depends on where the signal lands.
TEST(Faults, CtrlCDuringALinkLeavesNoFileAndNoLinker) {
  std::string dir = test::makeTempDir("ctrl-c-exe");
  std::string tmp = dir + "/tmp", out = dir + "/out";
  fs::create_directories(tmp);
  fs::create_directories(out);
  int interrupted = 0;
  for (int delayMs : {0, 2, 10, 30, 60, 100, 200, 400}) {
    pid_t pid = spawn({VITC_BINARY, "compile", test::sourcePath("examples/parallel-tiny.vit"),
                       "--emit=exe", "-o", out + "/prog"},
                      {"TMPDIR=" + tmp});
    ASSERT_GT(pid, 0);
    // The link folder appears once the object code is ready, just before the linker starts.
    int status = 0;
    bool exited = false;
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(120);
    while (entries(tmp).empty() && std::chrono::steady_clock::now() < deadline &&
           !(exited = waitpid(pid, &status, WNOHANG) == pid))
      std::this_thread::sleep_for(std::chrono::microseconds(500));
    ASSERT_FALSE(exited) << "vitc ended before it linked: " << status;
    std::this_thread::sleep_for(std::chrono::milliseconds(delayMs));
    kill(pid, SIGINT);
    waitpid(pid, &status, 0);
    if (WIFSIGNALED(status) && WTERMSIG(status) == SIGINT) {
      ++interrupted;
      // A signal after the program was renamed into place (vitc was exiting: slow under ASan,
      // whose leak check runs then) leaves the whole program, which must run.
      if (fs::exists(out + "/prog")) {
        auto help = test::runCommand({out + "/prog", "--help"}, {}, 60);
        EXPECT_EQ(help.exit, 0) << delayMs << " ms: a partial program: " << help.err;
        EXPECT_NE(help.err.find("usage:"), std::string::npos) << delayMs << " ms"; // on stderr
        fs::remove(out + "/prog");
      }
    } else {
      // The link was done before the signal came: a whole program.
      EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << delayMs << " ms: " << status;
      EXPECT_TRUE(fs::exists(out + "/prog")) << delayMs << " ms";
      fs::remove(out + "/prog");
    }
    EXPECT_EQ(joined(processesMentioning(dir)), "") << delayMs << " ms: a child survived";
    EXPECT_EQ(joined(entries(tmp)), "") << delayMs << " ms: left in the temporary folder";
    EXPECT_EQ(joined(entries(out)), "") << delayMs << " ms: left beside the output";
    for (const std::string &name : entries(tmp))
      fs::remove_all(tmp + "/" + name);
    for (const std::string &name : entries(out))
      fs::remove_all(out + "/" + name);
  }
  EXPECT_GE(interrupted, 3) << "too few signals came during the link to test it";
}

TEST(Faults, AKilledMpiRankEndsTheRunWithAnError) {
  std::string dir = test::makeTempDir("mpi-kill");
  std::string fx = test::sourcePath("tests/fixtures/parallel_map");
  // A run long enough to be killed in the middle: many repeats over a slow emulated link.
  pid_t pid =
      spawn({"mpirun", "--allow-run-as-root", "--oversubscribe", "-np", "2", VITC_BINARY, "run",
             fx + "/model.vit", "--weights", "random:0", "--input", fx + "/input.npy", "--output",
             dir + "/out.npy", "--mesh", "data=1,model=2", "--runtime=mpi", "--repeat", "100000"},
            {});
  ASSERT_GT(pid, 0);
  std::this_thread::sleep_for(std::chrono::seconds(2));
  // Kill one rank: a process running the vitc binary itself, started by this mpirun (other tests
  // may run vitc under mpirun at the same time).
  pid_t rank = 0;
  std::string vitc = fs::canonical(VITC_BINARY).string();
  for (const auto &e : fs::directory_iterator("/proc")) {
    std::error_code ec;
    fs::path exe = fs::read_symlink(e.path() / "exe", ec);
    if (!ec && exe.string() == vitc && descendsFrom(e.path(), pid) &&
        test::slurp((e.path() / "cmdline").string()).find("--runtime=mpi") != std::string::npos) {
      rank = static_cast<pid_t>(std::stol(e.path().filename().string()));
      break;
    }
  }
  ASSERT_GT(rank, 0) << "no rank to kill";
  kill(rank, SIGKILL);
  auto start = std::chrono::steady_clock::now();
  int status = 0;
  while (waitpid(pid, &status, WNOHANG) == 0) {
    if (std::chrono::steady_clock::now() - start > std::chrono::seconds(30)) {
      kill(pid, SIGKILL);
      waitpid(pid, &status, 0);
      FAIL() << "the other rank hung for 30 s";
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  EXPECT_FALSE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  EXPECT_FALSE(fs::exists(dir + "/out.npy"));
}

} // namespace
} // namespace vitc
