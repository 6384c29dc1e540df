// Subprocess helpers for tests.
#include "tests/common/subprocess.h"

#include <cerrno>
#include <csignal>
#include <cstring>
#include <fcntl.h>
#include <filesystem>
#include <fstream>
#include <poll.h>
#include <spawn.h>
#include <sstream>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

namespace vitc::test {

CommandResult runCommand(const std::vector<std::string> &args,
                         const std::vector<std::string> &extraEnv, int timeoutSeconds) {
  CommandResult r;
  int outPipe[2], errPipe[2];
  if (pipe(outPipe) != 0 || pipe(errPipe) != 0)
    return r;
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, outPipe[1], 1);
  posix_spawn_file_actions_adddup2(&actions, errPipe[1], 2);
  posix_spawn_file_actions_addclose(&actions, outPipe[0]);
  posix_spawn_file_actions_addclose(&actions, errPipe[0]);
  std::vector<char *> argv;
  for (const std::string &a : args)
    argv.push_back(const_cast<char *>(a.c_str()));
  argv.push_back(nullptr);
  // An addition replaces a variable of the same name (getenv would find the inherited one first).
  auto overridden = [&](const char *e) {
    for (const std::string &add : extraEnv) {
      size_t eq = add.find('=');
      if (eq != std::string::npos && std::strncmp(e, add.c_str(), eq + 1) == 0)
        return true;
    }
    return false;
  };
  std::vector<std::string> envStrings;
  for (char **e = environ; *e; ++e)
    if (!overridden(*e))
      envStrings.emplace_back(*e);
  for (const std::string &e : extraEnv)
    envStrings.push_back(e);
  std::vector<char *> envp;
  for (std::string &e : envStrings)
    envp.push_back(e.data());
  envp.push_back(nullptr);
  pid_t pid = 0;
  int rc = posix_spawnp(&pid, argv[0], &actions, nullptr, argv.data(), envp.data());
  posix_spawn_file_actions_destroy(&actions);
  close(outPipe[1]);
  close(errPipe[1]);
  if (rc != 0) {
    close(outPipe[0]);
    close(errPipe[0]);
    r.err = std::string("cannot start ") + args[0] + ": " + std::strerror(rc);
    return r;
  }
  struct pollfd fds[2] = {{outPipe[0], POLLIN, 0}, {errPipe[0], POLLIN, 0}};
  std::string *sinks[2] = {&r.out, &r.err};
  int open = 2;
  timespec start{};
  clock_gettime(CLOCK_MONOTONIC, &start);
  bool killed = false;
  while (open > 0) {
    int n = poll(fds, 2, 1000);
    timespec now{};
    clock_gettime(CLOCK_MONOTONIC, &now);
    if (!killed && now.tv_sec - start.tv_sec > timeoutSeconds) {
      kill(pid, SIGKILL);
      killed = true;
    }
    if (n <= 0)
      continue;
    for (int i = 0; i < 2; ++i) {
      if (fds[i].fd < 0 || !(fds[i].revents & (POLLIN | POLLHUP)))
        continue;
      char buf[65536];
      ssize_t got = read(fds[i].fd, buf, sizeof buf);
      if (got > 0) {
        sinks[i]->append(buf, static_cast<size_t>(got));
      } else {
        close(fds[i].fd);
        fds[i].fd = -1;
        --open;
      }
    }
  }
  int status = 0;
  waitpid(pid, &status, 0);
  r.exit = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  return r;
}

CommandResult runVitc(const std::vector<std::string> &args) {
  std::vector<std::string> all{VITC_BINARY};
  all.insert(all.end(), args.begin(), args.end());
  return runCommand(all);
}

std::string makeTempDir(const std::string &name) {
  std::string dir = (std::filesystem::temp_directory_path() /
                     ("vitc-test-" + name + "-" + std::to_string(getpid())))
                        .string();
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  return dir;
}

std::string sourcePath(const std::string &relative) {
  return std::string(VITC_SOURCE_DIR) + "/" + relative;
}

std::string slurp(const std::string &path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

bool fileExists(const std::string &path) { return std::filesystem::exists(path); }

} // namespace vitc::test
