// Ahead-of-time outputs: LLVM IR, assembly, objects, and linked executables.
#include <algorithm>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstring>
#include <fcntl.h>
#include <filesystem>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <llvm/MC/MCSubtargetInfo.h>
#include <llvm/MC/TargetRegistry.h>
#include <llvm/Support/TargetSelect.h>
#include <llvm/TargetParser/Host.h>

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

// Holds SIGINT and SIGTERM while in scope, so that the signal handler (support/files.h) never sees
// a temporary path or a child half-registered.
class HeldSignals {
public:
  HeldSignals() {
    sigset_t held;
    sigemptyset(&held);
    sigaddset(&held, SIGINT);
    sigaddset(&held, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &held, &previous_);
  }
  ~HeldSignals() { pthread_sigmask(SIG_SETMASK, &previous_, nullptr); }
  HeldSignals(const HeldSignals &) = delete;
  HeldSignals &operator=(const HeldSignals &) = delete;
  const sigset_t &previous() const { return previous_; }

private:
  sigset_t previous_;
};

// A path the signal handler removes until this goes out of scope.
class RemovedOnSignal {
public:
  explicit RemovedOnSignal(const std::string &path) : slot_(registerTempPath(path)) {}
  ~RemovedOnSignal() { unregisterTempPath(slot_); }
  RemovedOnSignal(const RemovedOnSignal &) = delete;
  RemovedOnSignal &operator=(const RemovedOnSignal &) = delete;

private:
  int slot_;
};

// Runs `args` (no shell) with its output going to `log` and its temporary files (TMPDIR) in
// `tempDir`; returns the exit status. The tool runs in a process group of its own, which the
// driver's SIGINT/SIGTERM handler signals and waits for, so that Ctrl-C never leaves a linker
// running on after vitc, nor its files behind: the handler removes `tempDir` with what is in it.
Expected<int> runTool(const std::vector<std::string> &args, const std::string &log,
                      const std::string &tempDir) {
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 1, log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  posix_spawn_file_actions_adddup2(&actions, 1, 2);
  std::vector<char *> argv;
  for (const std::string &a : args)
    argv.push_back(const_cast<char *>(a.c_str()));
  argv.push_back(nullptr);
  std::vector<std::string> env{"TMPDIR=" + tempDir};
  for (char **e = environ; *e; ++e)
    if (std::strncmp(*e, "TMPDIR=", 7) != 0)
      env.emplace_back(*e);
  std::vector<char *> envp;
  for (std::string &e : env)
    envp.push_back(e.data());
  envp.push_back(nullptr);
  pid_t pid = 0;
  int rc = 0;
  {
    HeldSignals held;
    posix_spawnattr_t attr;
    posix_spawnattr_init(&attr);
    posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGMASK);
    posix_spawnattr_setpgroup(&attr, 0);
    posix_spawnattr_setsigmask(&attr, &held.previous());
    rc = posix_spawnp(&pid, argv[0], &actions, &attr, argv.data(), envp.data());
    posix_spawnattr_destroy(&attr);
    if (rc == 0)
      setChildForSignals(pid);
  }
  posix_spawn_file_actions_destroy(&actions);
  if (rc != 0)
    return Error(fmt::format("cannot run '{}': {}", args[0], std::strerror(rc)));
  // Wait for the exit without reaping, then forget the child and reap it with signals held: a
  // signal in between would otherwise make the handler signal a reaped (perhaps reused) pid.
  siginfo_t info{};
  while (waitid(P_PID, static_cast<id_t>(pid), &info, WEXITED | WNOWAIT) < 0)
    if (errno != EINTR)
      return Error(fmt::format("lost track of '{}': {}", args[0], std::strerror(errno)));
  int status = 0;
  {
    HeldSignals held;
    setChildForSignals(0);
    while (waitpid(pid, &status, 0) < 0)
      if (errno != EINTR)
        return Error(fmt::format("lost track of '{}': {}", args[0], std::strerror(errno)));
  }
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

// A tool's output on the one line an error has: its lines joined by "; ", at most 1000 characters.
std::string oneLine(const std::string &text) {
  std::string out;
  size_t start = 0;
  while (start < text.size() && out.size() < 1000) {
    size_t end = std::min(text.find('\n', start), text.size());
    std::string line = text.substr(start, end - start);
    if (line.find_first_not_of(" \t\r") != std::string::npos)
      out += (out.empty() ? "" : "; ") + line;
    start = end + 1;
  }
  if (out.size() > 1000)
    out = out.substr(0, 1000) + "...";
  return out.empty() ? "no output" : out;
}

std::string runtimeLibrary() {
  if (const char *env = std::getenv("VITC_EXE_RUNTIME"))
    return env;
  return VITC_LLVM_EXE_RUNTIME;
}

// A temporary directory removed, with what is in it, when this goes out of scope or by the
// signal handler.
class TempDir {
public:
  static Expected<std::unique_ptr<TempDir>> create() {
    std::string pattern = (std::filesystem::temp_directory_path() / "vitc-exe-XXXXXX").string();
    HeldSignals held;
    if (!mkdtemp(pattern.data()))
      return Error(fmt::format("cannot create a temporary directory: {}", std::strerror(errno)));
    return std::unique_ptr<TempDir>(new TempDir(pattern));
  }
  TempDir(const TempDir &) = delete;
  TempDir &operator=(const TempDir &) = delete;
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  const std::string &path() const { return path_; }
  std::string file(const std::string &name) const { return path_ + "/" + name; }

private:
  explicit TempDir(std::string path) : path_(std::move(path)), onSignal_(path_) {}
  std::string path_;
  RemovedOnSignal onSignal_; // unregistered after the destructor's body removed the folder
};

} // namespace

Status checkCpu(const std::string &cpu) {
  if (cpu.empty() || cpu == "host")
    return Status::ok();
  llvm::InitializeNativeTarget();
  std::string triple = llvm::sys::getProcessTriple(), message;
  const llvm::Target *target = llvm::TargetRegistry::lookupTarget(triple, message);
  if (!target)
    return Error(fmt::format("no LLVM target for '{}': {}", triple, message));
  // A subtarget for the generic CPU knows every CPU name, and asking it prints nothing (creating
  // one for an unknown name prints LLVM's own warning).
  std::unique_ptr<llvm::MCSubtargetInfo> info(target->createMCSubtargetInfo(triple, "", ""));
  if (!info || !info->isCPUStringValid(cpu))
    return Error(fmt::format("unknown cpu '{}' for {} (expected host or an LLVM CPU name such as "
                             "x86-64-v3 or x86-64-v4)",
                             cpu, triple));
  return Status::ok();
}

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
  VITC_ASSIGN(std::unique_ptr<TempDir> dir, TempDir::create());
  std::string objectPath = dir->file("model.o");
  VITC_TRY(writeFileAtomically(objectPath, object));
  // Link next to the target and rename, so the executable appears whole or not at all.
  std::string linked = path + ".tmp" + std::to_string(getpid());
  RemovedOnSignal linkedOnSignal(linked);
  const char *cxx = std::getenv("VITC_CXX");
  std::vector<std::string> args{
      cxx && *cxx ? cxx : "c++", "-pie",           "-o", linked, objectPath, runtime,
      "-static-libstdc++",       "-static-libgcc", "-lm"};
  std::string log = dir->file("link.log");
  VITC_ASSIGN(int status, runTool(args, log, dir->path()));
  if (status != 0) {
    std::filesystem::remove(linked);
    Expected<std::string> output = readFile(log);
    return Error(fmt::format("linking {} failed (exit {}): {}", path, status,
                             output ? oneLine(*output) : std::string("no output")));
  }
  std::error_code ec;
  std::filesystem::rename(linked, path, ec);
  if (ec) {
    std::filesystem::remove(linked);
    return Error(fmt::format("cannot write {}: {}", path, ec.message()));
  }
  return Status::ok();
}

Expected<ProgramMemory> programMemory(const ir::Module &m, const Options &options) {
  VITC_ASSIGN(Target target, resolveTarget(options));
  VITC_ASSIGN(Plan plan, planModule(m, target.tiles));
  ProgramMemory memory;
  for (const NamedShape &p : plan.params)
    memory.paramBytes += numElements(p.shape) * static_cast<int64_t>(sizeof(float));
  for (size_t i = 0; i < plan.constBytes.size(); ++i)
    if (plan.constAfterLoad[i])
      memory.preparedBytes += plan.constBytes[i];
  memory.workspaceBytes = plan.workspaceBytes;
  for (int64_t bytes : plan.stagingBytes)
    memory.workspaceBytes += bytes;
  memory.scratchBytes = plan.scratchBytes * std::max(1, options.threads);
  return memory;
}

} // namespace vitc::llvmbe
