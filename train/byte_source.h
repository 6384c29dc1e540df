// The bytes of a file read in order: as stored, or inflated when the file is gzip-compressed.
//
// MNIST-format data sets ship gzip-compressed (`train-images-idx3-ubyte.gz`). Compression is
// told by the gzip magic bytes, not by the name, so that a renamed file still reads. The file is
// mapped and inflated with zlib as it is read, so that a reader can check a header before it
// allocates what the header asks for. Concatenated gzip members read as one stream, as gunzip
// reads them.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "support/error.h"

namespace vitc {
class MappedFile;
}

namespace vitc::train {

class ByteSource {
public:
  static Expected<ByteSource> open(const std::string &path);
  ByteSource(ByteSource &&) noexcept;
  ByteSource &operator=(ByteSource &&) noexcept;
  ~ByteSource();

  const std::string &path() const { return path_; }
  bool compressed() const { return inflater_ != nullptr; }
  // The file's size on disk.
  size_t storedSize() const;
  // The most bytes the rest of the file can give: exact for a stored file, the most that deflate
  // can expand the unread compressed bytes to for a gzip file.
  uint64_t mostRemaining() const;
  // Reads up to `n` bytes into `out`; fewer only at the end of the data. An Error when the gzip
  // data cannot be inflated.
  Expected<size_t> read(uint8_t *out, size_t n);

private:
  struct Inflater; // zlib's stream, kept out of this header
  ByteSource() = default;
  std::string path_;
  std::shared_ptr<MappedFile> file_;
  size_t offset_ = 0; // the next stored byte (for a stored file)
  std::unique_ptr<Inflater> inflater_;
};

} // namespace vitc::train
