// Reading and writing safetensors files: named tensors behind a JSON header.
//
// A safetensors file is an 8-byte little-endian header length N, N bytes of JSON mapping each
// tensor name to `{"dtype", "shape", "data_offsets": [begin, end]}` (plus an optional
// `__metadata__` object of strings), then the data section that the offsets index. `open` maps the
// file and checks the whole header before anything is loaded: every dtype is known, every shape is
// non-negative and its size does not overflow, every byte range lies inside the data section, has
// exactly the size the dtype and shape call for, and overlaps no other. Gaps between tensors are
// allowed. `load` then cannot fail on a file that opened, except on a dtype vitc does not convert.
//
// Dtypes: F32 loads without a copy when its data is 4-byte aligned in the file (the tensor keeps
// the mapping alive); F16, BF16, F64 and the integer types (I8..I64, U8..U64) are converted to an
// owned float32 tensor, integers and doubles rounding to the nearest float. BOOL, the 8-, 6- and
// 4-bit floats and C64 are recognized, so a file holding them opens, but loading one of them is an
// error. The writer writes F32 only.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "support/error.h"
#include "support/files.h"
#include "support/tensor.h"

namespace vitc::formats {

// One tensor as the header describes it.
struct SafetensorsEntry {
  std::string name;
  std::string dtype; // as spelled in the file: "F32", "BF16", ...
  Shape shape;
  uint64_t begin = 0; // byte range in the data section, as in `data_offsets`
  uint64_t end = 0;
  uint64_t byteSize() const { return end - begin; }
};

class SafetensorsFile {
public:
  // Maps `path` and validates its header; errors name the file and, where there is one, the
  // tensor.
  static Expected<SafetensorsFile> open(const std::string &path);

  const std::string &path() const { return path_; }
  // Every tensor, sorted by name.
  const std::vector<SafetensorsEntry> &entries() const { return entries_; }
  // The entry named `name`, or nullptr.
  const SafetensorsEntry *find(std::string_view name) const;
  // The `__metadata__` object; empty when the file has none.
  const std::map<std::string, std::string> &metadata() const { return metadata_; }

  // The tensor named `name` as float32 (see the file comment for which dtypes copy).
  Expected<Tensor> load(std::string_view name) const;

private:
  std::string path_;
  std::shared_ptr<MappedFile> file_;
  uint64_t dataStart_ = 0; // file offset of the data section
  std::vector<SafetensorsEntry> entries_;
  std::map<std::string, std::string> metadata_;
};

// Writes `tensors` as F32 in the order given, after a header padded with spaces to a multiple of
// 8 bytes. The file appears whole or not at all. Names must be distinct, non-empty and not
// `__metadata__`.
Status writeSafetensors(const std::string &path,
                        const std::vector<std::pair<std::string, Tensor>> &tensors,
                        const std::map<std::string, std::string> &metadata = {});

} // namespace vitc::formats
