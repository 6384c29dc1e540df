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
#include <fcntl.h>
#include <mutex>
#include <sys/mman.h>
#include <sys/stat.h>
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

void cleanupAndReraise(int sig) {
  for (int i = 0; i < kMaxTempFiles; ++i)
    if (gTempUsed[i].load())
      ::unlink(gTempPaths[i]);
  std::signal(sig, SIG_DFL);
  std::raise(sig);
}

std::string errnoText() { return std::strerror(errno); }

} // namespace

Expected<std::string> readFile(const std::string &path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return makeError(Loc::inFile(path), "cannot open file: {}", errnoText());
  struct stat st {};
  if (::fstat(fd, &st) != 0 || S_ISDIR(st.st_mode)) {
    ::close(fd);
    return makeError(Loc::inFile(path), "cannot read file: it is a directory or unreadable");
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
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
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
  }
  ::close(fd);
  return m;
}

MappedFile::~MappedFile() {
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

void installTempFileCleanupOnSignals() {
  std::signal(SIGINT, cleanupAndReraise);
  std::signal(SIGTERM, cleanupAndReraise);
}

} // namespace vitc
