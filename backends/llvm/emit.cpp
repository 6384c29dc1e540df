// Ahead-of-time outputs: LLVM IR, assembly, objects, and linked executables.
#include <cerrno>
#include <chrono>
#include <cstring>
#include <fcntl.h>
#include <filesystem>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include "backends/llvm/compiler.h"
#include "support/files.h"

extern char **environ;

namespace vitc::llvmbe {
namespace {

using Clock = std::chrono::steady_clock;

// Whether the plan can become an executable: one device, so every step is a kernel call.
bool runsAlone(const ir::Module &m, const Plan &plan) {
  if (m.mesh.numDevices() != 1)
    return false;
  for (const Step &s : plan.run)
    if (!s.isKernel)
      return false;
  return true;
}

Expected<std::string> compileModule(const ir::Module &m, const Options &options, OutputKind kind,
                                    bool requireTable, CompileReport *report) {
  auto t0 = Clock::now();
  CompileReport r;
  VITC_ASSIGN(Target target, resolveTarget(options));
  auto tp = Clock::now();
  VITC_ASSIGN(Plan plan, planModule(m, target.tiles));
  r.planSeconds = std::chrono::duration<double>(Clock::now() - tp).count();
  bool table = runsAlone(m, plan);
  if (requireTable && !table)
    return Error(fmt::format("cannot make an executable of module '{}': its mesh ({}) has {} "
                             "devices; executables run on one device",
                             m.name, m.mesh.str(), m.mesh.numDevices()));
  VITC_ASSIGN(std::string out, compileToBuffer(plan, target, table, kind, r));
  r.ops = plan.ops;
  r.kernels = plan.calls;
  r.uniqueKernels = static_cast<int64_t>(plan.kernels.size());
  r.cpu = target.cpu;
  r.vectorWidth = target.vectorWidth;
  r.seconds = std::chrono::duration<double>(Clock::now() - t0).count();
  if (report)
    *report = r;
  if (options.onCompiled)
    options.onCompiled(r);
  return out;
}

// Runs `args` (no shell) with its output going to `log`; returns the exit status.
Expected<int> runTool(const std::vector<std::string> &args, const std::string &log) {
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 1, log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  posix_spawn_file_actions_adddup2(&actions, 1, 2);
  std::vector<char *> argv;
  for (const std::string &a : args)
    argv.push_back(const_cast<char *>(a.c_str()));
  argv.push_back(nullptr);
  pid_t pid = 0;
  int rc = posix_spawnp(&pid, argv[0], &actions, nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  if (rc != 0)
    return Error(fmt::format("cannot run '{}': {}", args[0], std::strerror(rc)));
  int status = 0;
  while (waitpid(pid, &status, 0) < 0)
    if (errno != EINTR)
      return Error(fmt::format("lost track of '{}': {}", args[0], std::strerror(errno)));
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

std::string runtimeLibrary() {
  if (const char *env = std::getenv("VITC_EXE_RUNTIME"))
    return env;
  return VITC_LLVM_EXE_RUNTIME;
}

// A temporary directory removed when this goes out of scope.
class TempDir {
public:
  static Expected<TempDir> create() {
    std::string pattern = (std::filesystem::temp_directory_path() / "vitc-exe-XXXXXX").string();
    if (!mkdtemp(pattern.data()))
      return Error(fmt::format("cannot create a temporary directory: {}", std::strerror(errno)));
    return TempDir(pattern);
  }
  TempDir(TempDir &&other) noexcept : path_(std::move(other.path_)) { other.path_.clear(); }
  TempDir(const TempDir &) = delete;
  ~TempDir() {
    std::error_code ec;
    if (!path_.empty())
      std::filesystem::remove_all(path_, ec);
  }
  std::string file(const std::string &name) const { return path_ + "/" + name; }

private:
  explicit TempDir(std::string path) : path_(std::move(path)) {}
  std::string path_;
};

} // namespace

Expected<std::string> emitLlvmIr(const ir::Module &m, const Options &options,
                                 CompileReport *report) {
  return compileModule(m, options, OutputKind::LlvmIr, false, report);
}

Expected<std::string> emitAssembly(const ir::Module &m, const Options &options,
                                   CompileReport *report) {
  return compileModule(m, options, OutputKind::Assembly, false, report);
}

Status emitObject(const ir::Module &m, const std::string &path, const Options &options,
                  CompileReport *report) {
  VITC_ASSIGN(std::string object, compileModule(m, options, OutputKind::Object, false, report));
  return writeFileAtomically(path, object);
}

Status emitExecutable(const ir::Module &m, const std::string &path, const Options &options,
                      CompileReport *report) {
  if (m.mesh.numDevices() != 1)
    return Error(fmt::format("cannot make an executable of module '{}': its mesh ({}) has {} "
                             "devices; executables run on one device",
                             m.name, m.mesh.str(), m.mesh.numDevices()));
  // The executable is renamed over its target, which would replace a device such as /dev/null.
  if (std::filesystem::exists(path) && !std::filesystem::is_regular_file(path))
    return Error(Loc::inFile(path), "cannot write an executable here: not a regular file");
  std::string runtime = runtimeLibrary();
  if (!std::filesystem::exists(runtime))
    return Error(fmt::format("the executable runtime library '{}' is missing (set "
                             "VITC_EXE_RUNTIME to its path)",
                             runtime));
  VITC_ASSIGN(std::string object, compileModule(m, options, OutputKind::Object, true, report));
  VITC_ASSIGN(TempDir dir, TempDir::create());
  std::string objectPath = dir.file("model.o");
  VITC_TRY(writeFileAtomically(objectPath, object));
  // Link next to the target and rename, so the executable appears whole or not at all.
  std::string linked = path + ".tmp" + std::to_string(getpid());
  const char *cxx = std::getenv("VITC_CXX");
  std::vector<std::string> args{
      cxx && *cxx ? cxx : "c++", "-pie",           "-o", linked, objectPath, runtime,
      "-static-libstdc++",       "-static-libgcc", "-lm"};
  std::string log = dir.file("link.log");
  VITC_ASSIGN(int status, runTool(args, log));
  if (status != 0) {
    std::filesystem::remove(linked);
    Expected<std::string> output = readFile(log);
    return Error(fmt::format("linking {} failed (exit {}): {}", path, status,
                             output ? *output : std::string("no output")));
  }
  std::error_code ec;
  std::filesystem::rename(linked, path, ec);
  if (ec) {
    std::filesystem::remove(linked);
    return Error(fmt::format("cannot write {}: {}", path, ec.message()));
  }
  return Status::ok();
}

} // namespace vitc::llvmbe
