// Reading whole files, mapping them, and writing outputs whole or not at all.
//
// Every output vitc writes (results, IR dumps, executables, layouts) goes through `AtomicFile`:
// the bytes go to a temporary name beside the target and are renamed over it only on `commit()`,
// so an error, an exception or Ctrl-C never leaves a half-written file behind. A target that is not
// a regular file (`/dev/null`, a FIFO, a terminal) is written in place instead: renaming over it
// would replace the device with a file. (Tests set VITC_SLOW_WRITES to slow writes down enough to
// interrupt one in progress.)
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "support/error.h"

namespace vitc {

Expected<std::string> readFile(const std::string &path);

// A read-only memory mapping of a whole file. If the file is truncated while mapped, a read past
// its new end (SIGBUS) ends the process with `FILE: error: the file changed (was truncated) while
// vitc was reading it` and exit status 1, after removing temporary files.
class MappedFile {
public:
  static Expected<std::shared_ptr<MappedFile>> open(const std::string &path);
  ~MappedFile();
  MappedFile(const MappedFile &) = delete;
  MappedFile &operator=(const MappedFile &) = delete;

  const std::string &path() const { return path_; }
  const uint8_t *data() const { return data_; }
  size_t size() const { return size_; }

private:
  MappedFile() = default;
  std::string path_;
  const uint8_t *data_ = nullptr;
  size_t size_ = 0;
  int slot_ = -1; // in the table the SIGBUS handler reads
};

class AtomicFile {
public:
  // Creates the temporary file (or opens a target that is not a regular file); fails if the
  // target's folder is not writable.
  static Expected<std::unique_ptr<AtomicFile>> create(const std::string &path);
  ~AtomicFile(); // removes the temporary file unless committed
  AtomicFile(const AtomicFile &) = delete;
  AtomicFile &operator=(const AtomicFile &) = delete;

  Status write(const void *data, size_t size);
  Status write(std::string_view text) { return write(text.data(), text.size()); }
  // Flushes, optionally marks the file executable, and renames it over the target.
  Status commit(bool executable = false);
  const std::string &tempPath() const { return temp_; } // empty when written in place

private:
  AtomicFile() = default;
  std::string path_;
  std::string temp_;
  int fd_ = -1;
  int slot_ = -1; // place in the table the signal handler cleans up
  bool committed_ = false;
  bool inPlace_ = false; // the target is a device or FIFO: written directly, never renamed
};

// Writes `text` to `path` through an AtomicFile.
Status writeFileAtomically(const std::string &path, std::string_view text, bool executable = false);

// Removes every uncommitted temporary file and re-raises the signal: installed by the driver for
// SIGINT and SIGTERM.
void installTempFileCleanupOnSignals();

// Temporary paths that are not AtomicFiles (a linker's output, a scratch folder), removed by that
// handler if a signal comes before `unregisterTempPath`: a file is unlinked, a folder removed with
// the files in it. Returns a slot, or -1 when the table is full.
int registerTempPath(const std::string &path);
void unregisterTempPath(int slot);
// A child process, leader of its own process group, that the handler passes SIGINT/SIGTERM on to
// (the whole group) and waits for before it removes the temporary paths, so that neither it nor
// its children outlive vitc or write a file after it was removed. 0: none.
void setChildForSignals(int pid);

} // namespace vitc
