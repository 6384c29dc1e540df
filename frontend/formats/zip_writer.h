// Writing zip archives of stored (or deflated) members, streamed into an AtomicFile.
//
// `writeNpz` builds on this; tests use it to build archives with whatever members they need.
// Members are written as they are added, straight from the caller's memory, so an archive of large
// tensors needs no second copy of them. Sizes and offsets past 4 GiB and more than 65,534 members
// use the zip64 extensions; `forceZip64` uses them for every member, as numpy's `savez` does.
// `deflate` compresses each member as numpy's `savez_compressed` does (holding the compressed
// member in memory: tests use it to build small archives of large, repetitive members). The
// timestamps are fixed (1980-01-01), so the same members give the same bytes.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "support/error.h"
#include "support/files.h"

namespace vitc::formats {

class ZipWriter {
public:
  struct Options {
    bool forceZip64 = false;
    bool deflate = false;
  };

  // Starts the archive at a temporary name beside `path`.
  static Expected<ZipWriter> create(const std::string &path, Options options);
  static Expected<ZipWriter> create(const std::string &path) { return create(path, Options{}); }

  // Adds a member whose contents are the concatenation of `parts`.
  Status add(const std::string &name, const std::vector<std::string_view> &parts);
  // Writes the central directory and renames the archive over `path`. After an error from `add`
  // nothing is committed and the temporary file is removed.
  Status commit();

private:
  struct Member {
    std::string name;
    uint32_t crc = 0;
    uint64_t size = 0;
    uint64_t compressedSize = 0;
    uint64_t offset = 0; // of its local header
  };

  Status write(const std::string &bytes);
  std::string centralHeader(const Member &m) const;

  std::string path_;
  Options options_;
  std::unique_ptr<AtomicFile> out_;
  uint64_t offset_ = 0;
  std::vector<Member> members_;
  bool failed_ = false;
};

} // namespace vitc::formats
