// File reading, mapping and atomic writing.
#include "support/files.h"

#include <algorithm>
#include <array>
#include <atomic>
#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <dirent.h>
#include <fcntl.h>
#include <mutex>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

namespace vitc {
namespace {

// Temporary files not yet committed, so that a signal handler can remove them. A fixed table of
// C strings because a signal handler may not allocate.
constexpr int kMaxTempFiles = 64;
constexpr int kMaxTempPath = 4096;
std::array<std::atomic<bool>, kMaxTempFiles> gTempUsed{};
char gTempPaths[kMaxTempFiles][kMaxTempPath];
std::mutex gTempMutex;

int registerTemp(const std::string &path) {
  std::lock_guard<std::mutex> lock(gTempMutex);
  if (path.size() + 1 > kMaxTempPath)
    return -1;
  for (int i = 0; i < kMaxTempFiles; ++i) {
    if (gTempUsed[i].load())
      continue;
    std::memcpy(gTempPaths[i], path.c_str(), path.size() + 1);
    gTempUsed[i].store(true);
    return i;
  }
  return -1;
}

void unregisterTemp(int slot) {
  if (slot >= 0)
    gTempUsed[slot].store(false);
}

std::atomic<pid_t> gChild{0};

// Removes a temporary folder with what is in it (files a child left that nobody registered: a
// compiler driver's temporary files), using system calls only, as a signal handler must. Does
// nothing to a path that is not a folder.
void removeFolderOnSignal(const char *path) {
  int fd = ::open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0)
    return;
  // Removing entries while reading the folder may make the reading skip some: read it again
  // until a pass finds nothing to remove.
  alignas(struct dirent64) char buf[4096];
  for (int pass = 0; pass < 8; ++pass) {
    bool removed = false;
    ::lseek(fd, 0, SEEK_SET);
    for (ssize_t n; (n = ::getdents64(fd, buf, sizeof buf)) > 0;)
      for (ssize_t at = 0; at < n;) {
        auto *entry = reinterpret_cast<struct dirent64 *>(buf + at);
        at += entry->d_reclen;
        const char *name = entry->d_name;
        if (!std::strcmp(name, ".") || !std::strcmp(name, ".."))
          continue;
        removed |= ::unlinkat(fd, name, 0) == 0 || ::unlinkat(fd, name, AT_REMOVEDIR) == 0;
      }
    if (!removed)
      break;
  }
  ::close(fd);
  ::rmdir(path);
}

void cleanupAndReraise(int sig) {
  if (pid_t child = gChild.load(); child > 0) {
    // The child leads its own process group (a compiler driver and the linker it starts): the
    // whole group gets the signal, and must be gone before its output files can be removed for
    // good. Whatever is left after two seconds is killed.
    ::kill(-child, sig);
    while (::waitpid(child, nullptr, 0) < 0 && errno == EINTR) {
    }
    // (Zombies count as members until reaped, which a container's init may never do: the wait is
    // bounded.)
    for (int waited = 0; waited < 300 && ::kill(-child, 0) == 0; ++waited) {
      if (waited == 200)
        ::kill(-child, SIGKILL);
      const struct timespec tick = {0, 10 * 1000 * 1000};
      ::nanosleep(&tick, nullptr);
    }
  }
  for (int i = 0; i < kMaxTempFiles; ++i)
    if (gTempUsed[i].load())
      ::unlink(gTempPaths[i]);
  for (int i = 0; i < kMaxTempFiles; ++i) // folders, now that the files in them are gone
    if (gTempUsed[i].load())
      removeFolderOnSignal(gTempPaths[i]);
  std::signal(sig, SIG_DFL);
  std::raise(sig);
}

std::string errnoText() { return std::strerror(errno); }

// Mapped files, so that a SIGBUS can name the file it came from. A read from a mapping past the
// end of a file that was truncated after it was mapped raises SIGBUS, wherever the read happens: a
// format reader converting a tensor, the runtime copying a borrowed one, a JIT-compiled kernel
// reading one in place. The handler cannot return an error from most of those places (worker
// threads, generated code), so it writes one line with async-signal-safe calls, removes the
// temporary files as the SIGINT handler does, and exits with status 1, as for any bad file.
constexpr int kMaxMappings = 64;
struct MappedRange {
  std::atomic<bool> used{false};
  std::atomic<uintptr_t> begin{0}, end{0};
  char path[kMaxTempPath];
};
std::array<MappedRange, kMaxMappings> gMapped;
std::mutex gMappedMutex;
struct sigaction gPreviousBusAction;

void writeAll(const char *text, size_t size) {
  while (size > 0) {
    ssize_t n = ::write(STDERR_FILENO, text, size);
    if (n < 0 && errno == EINTR)
      continue;
    if (n <= 0)
      return;
    text += n;
    size -= static_cast<size_t>(n);
  }
}

void onBusError(int sig, siginfo_t *info, void *context) {
  auto at = reinterpret_cast<uintptr_t>(info->si_addr);
  for (MappedRange &m : gMapped) {
    if (!m.used.load() || at < m.begin.load() || at >= m.end.load())
      continue;
    writeAll(m.path, std::strlen(m.path));
    static const char kMessage[] =
        ": error: the file changed (was truncated) while vitc was reading it\n";
    writeAll(kMessage, sizeof kMessage - 1);
    for (int i = 0; i < kMaxTempFiles; ++i)
      if (gTempUsed[i].load())
        ::unlink(gTempPaths[i]);
    for (int i = 0; i < kMaxTempFiles; ++i)
      if (gTempUsed[i].load())
        ::rmdir(gTempPaths[i]);
    ::_exit(1);
  }
  // Not a mapped file: whatever handled SIGBUS before (by default, the returning read faults
  // again and the process dies of SIGBUS as it would have without this handler).
  if (gPreviousBusAction.sa_flags & SA_SIGINFO) {
    gPreviousBusAction.sa_sigaction(sig, info, context);
    return;
  }
  if (gPreviousBusAction.sa_handler != SIG_DFL && gPreviousBusAction.sa_handler != SIG_IGN) {
    gPreviousBusAction.sa_handler(sig);
    return;
  }
  ::signal(SIGBUS, SIG_DFL);
}

int registerMapping(const std::string &path, const void *data, size_t size) {
  static std::once_flag installed;
  std::call_once(installed, [] {
    struct sigaction action {};
    action.sa_sigaction = onBusError;
    action.sa_flags = SA_SIGINFO;
    sigemptyset(&action.sa_mask);
    sigaction(SIGBUS, &action, &gPreviousBusAction);
  });
  std::lock_guard<std::mutex> lock(gMappedMutex);
  if (path.size() + 1 > kMaxTempPath)
    return -1;
  for (int i = 0; i < kMaxMappings; ++i) {
    MappedRange &m = gMapped[static_cast<size_t>(i)];
    if (m.used.load())
      continue;
    std::memcpy(m.path, path.c_str(), path.size() + 1);
    m.begin.store(reinterpret_cast<uintptr_t>(data));
    m.end.store(reinterpret_cast<uintptr_t>(data) + size);
    m.used.store(true);
    return i;
  }
  return -1; // a full table only costs the message: SIGBUS then kills as it would without it
}

} // namespace

Expected<std::string> readFile(const std::string &path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK); // a FIFO would block
  if (fd < 0)
    return makeError(Loc::inFile(path), "cannot open file: {}", errnoText());
  struct stat st {};
  if (::fstat(fd, &st) != 0 || S_ISDIR(st.st_mode)) {
    ::close(fd);
    return makeError(Loc::inFile(path), "cannot read file: it is a directory or unreadable");
  }
  // A device or a pipe has no size and may never end (/dev/zero): refused, as mapped files are.
  if (!S_ISREG(st.st_mode)) {
    ::close(fd);
    return makeError(Loc::inFile(path), "cannot read file: not a regular file");
  }
  std::string text;
  char buf[1 << 16];
  for (;;) {
    ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0) {
      if (errno == EINTR)
        continue;
      std::string why = errnoText();
      ::close(fd);
      return makeError(Loc::inFile(path), "cannot read file: {}", why);
    }
    if (n == 0)
      break;
    text.append(buf, static_cast<size_t>(n));
  }
  ::close(fd);
  return text;
}

Expected<std::shared_ptr<MappedFile>> MappedFile::open(const std::string &path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK); // a FIFO would block
  if (fd < 0)
    return makeError(Loc::inFile(path), "cannot open file: {}", errnoText());
  struct stat st {};
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    return makeError(Loc::inFile(path), "cannot map file: not a regular file");
  }
  std::shared_ptr<MappedFile> m(new MappedFile());
  m->path_ = path;
  m->size_ = static_cast<size_t>(st.st_size);
  if (m->size_ > 0) {
    void *p = ::mmap(nullptr, m->size_, PROT_READ, MAP_PRIVATE, fd, 0);
    if (p == MAP_FAILED) {
      std::string why = errnoText();
      ::close(fd);
      return makeError(Loc::inFile(path), "cannot map file: {}", why);
    }
    m->data_ = static_cast<const uint8_t *>(p);
    m->slot_ = registerMapping(path, p, m->size_);
  }
  ::close(fd);
  return m;
}

MappedFile::~MappedFile() {
  if (slot_ >= 0)
    gMapped[static_cast<size_t>(slot_)].used.store(false);
  if (data_)
    ::munmap(const_cast<uint8_t *>(data_), size_);
}

Expected<std::unique_ptr<AtomicFile>> AtomicFile::create(const std::string &path) {
  std::unique_ptr<AtomicFile> f(new AtomicFile());
  f->path_ = path;
  struct stat st {};
  if (::stat(path.c_str(), &st) == 0 && !S_ISREG(st.st_mode)) {
    if (S_ISDIR(st.st_mode))
      return makeError(Loc::inFile(path), "cannot create output file: it is a directory");
    int fd = ::open(path.c_str(), O_WRONLY | O_CLOEXEC);
    if (fd < 0)
      return makeError(Loc::inFile(path), "cannot open output file: {}", errnoText());
    f->fd_ = fd;
    f->inPlace_ = true;
    return f;
  }
  std::string pattern = path + ".tmp.XXXXXX";
  std::vector<char> buf(pattern.begin(), pattern.end());
  buf.push_back('\0');
  // Ctrl-C between creating the file and registering it would leave it behind: hold the signals
  // until the cleanup handler knows the name.
  sigset_t held, previous;
  sigemptyset(&held);
  sigaddset(&held, SIGINT);
  sigaddset(&held, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &held, &previous);
  int fd = ::mkstemp(buf.data());
  int error = errno;
  if (fd >= 0) {
    f->fd_ = fd;
    f->temp_ = buf.data();
    f->slot_ = registerTemp(f->temp_);
  }
  pthread_sigmask(SIG_SETMASK, &previous, nullptr);
  if (fd < 0)
    return makeError(Loc::inFile(path), "cannot create output file: {}", std::strerror(error));
  return f;
}

AtomicFile::~AtomicFile() {
  if (fd_ >= 0)
    ::close(fd_);
  if (!committed_ && !temp_.empty())
    ::unlink(temp_.c_str());
  unregisterTemp(slot_);
}

Status AtomicFile::write(const void *data, size_t size) {
  // Fault injection for tests: VITC_SLOW_WRITES=1 writes 64 KiB per millisecond, so that a test
  // can interrupt a write in progress.
  static const bool slow = std::getenv("VITC_SLOW_WRITES") != nullptr;
  const char *p = static_cast<const char *>(data);
  while (size > 0) {
    if (slow)
      ::usleep(1000);
    ssize_t n = ::write(fd_, p, slow ? std::min<size_t>(size, 65536) : size);
    if (n < 0) {
      if (errno == EINTR)
        continue;
      return makeError(Loc::inFile(path_), "cannot write output file: {}", errnoText());
    }
    p += n;
    size -= static_cast<size_t>(n);
  }
  return Status::ok();
}

Status AtomicFile::commit(bool executable) {
  if (inPlace_) {
    int fd = fd_;
    fd_ = -1;
    committed_ = true;
    if (::close(fd) != 0)
      return makeError(Loc::inFile(path_), "cannot write output file: {}", errnoText());
    return Status::ok();
  }
  if (::fchmod(fd_, executable ? 0755 : 0644) != 0)
    return makeError(Loc::inFile(path_), "cannot set permissions: {}", errnoText());
  if (::close(fd_) != 0) {
    fd_ = -1;
    return makeError(Loc::inFile(path_), "cannot write output file: {}", errnoText());
  }
  fd_ = -1;
  if (::rename(temp_.c_str(), path_.c_str()) != 0)
    return makeError(Loc::inFile(path_), "cannot write output file: {}", errnoText());
  committed_ = true;
  return Status::ok();
}

Status writeFileAtomically(const std::string &path, std::string_view text, bool executable) {
  VITC_ASSIGN(auto file, AtomicFile::create(path));
  VITC_TRY(file->write(text));
  return file->commit(executable);
}

int registerTempPath(const std::string &path) { return registerTemp(path); }

void unregisterTempPath(int slot) { unregisterTemp(slot); }

void setChildForSignals(int pid) { gChild.store(pid); }

void installTempFileCleanupOnSignals() {
  std::signal(SIGINT, cleanupAndReraise);
  std::signal(SIGTERM, cleanupAndReraise);
}

} // namespace vitc
