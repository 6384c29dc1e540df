// Reading and writing NumPy .npz archives: zip files of .npy members.
//
// numpy's `savez` stores each array `name` as the member `name.npy` (uncompressed) and
// `savez_compressed` deflates it. `NpzFile` maps the archive, lists its `.npy` members (other
// members and folders are ignored; a name that appears twice is an error) and reads members with
// libzip on demand. Before reading, a member's stated size is checked against a 64 GiB cap and
// against what its compressed bytes could produce, and the CRC is verified after. Members over
// 4 GiB (zip64) are read in parts, because libzip 1.7's inflater miscounts a single read of more
// than 4 GiB. `loadStored` gives a member's dtype and bytes undecoded. `declaredShape` inflates
// only a member's .npy header, so that a caller can refuse a small file declaring a huge array
// before inflating it. An NpzFile is cheap to copy (copies share the archive) and safe to load from
// on several threads.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "frontend/formats/npy.h"
#include "support/error.h"
#include "support/tensor.h"

namespace vitc::formats {

// An array as its .npy member stores it: what the header declares, and the data bytes after it
// (in the declared byte order and memory order), exactly `declaration.dataBytes` of them.
struct StoredArray {
  NpyDeclaration declaration;
  std::vector<uint8_t> data;
};

class NpzFile {
public:
  static Expected<NpzFile> open(const std::string &path);

  const std::string &path() const { return path_; }
  // Member names without the `.npy` suffix, sorted.
  const std::vector<std::string> &names() const { return names_; }
  bool contains(std::string_view name) const;
  // The array `name` (the member `name.npy`), converted as `parseNpy` does.
  Expected<Tensor> load(std::string_view name) const;
  // The array `name` undecoded, for callers that need its dtype or its integers exactly (class
  // labels) rather than converted to float32.
  Expected<StoredArray> loadStored(std::string_view name) const;
  // The shape that the member `name.npy` declares in its .npy header, inflating nothing more.
  Expected<Shape> declaredShape(std::string_view name) const;

  struct Member; // a member opened for reading, with the archive locked (defined in npz.cpp)

private:
  struct Archive; // the libzip handle and the mapping it reads
  Expected<std::unique_ptr<Member>> openMember(std::string_view name) const;
  std::string path_;
  std::shared_ptr<Archive> archive_;
  std::vector<std::string> names_;
  std::vector<uint64_t> indices_; // libzip's index of each member of names_
};

// Writes each tensor as the uncompressed member `name.npy` (`<f4`, C order) in the order given;
// the file appears whole or not at all. Names must be distinct and non-empty.
Status writeNpz(const std::string &path,
                const std::vector<std::pair<std::string, Tensor>> &tensors);

} // namespace vitc::formats
