// Reading and writing NumPy .npy files.
//
// A .npy file is the magic `\x93NUMPY`, a version (1.0, 2.0 or 3.0), a header length (2 bytes in
// 1.0, 4 after), a header that is a Python dict literal `{'descr': '<f4', 'fortran_order': False,
// 'shape': (2, 3), }`, then the raw elements. The reader parses the dict with a small literal
// parser (no eval, bounded nesting) and checks that the data holds exactly shape x itemsize bytes.
//
// Dtypes: `<f4` is read as is (`readNpy` even borrows it from the mapped file when it is aligned);
// `>f4`, `f2`, `f8` and the integers `i1 u1 i2 u2 i4 u4 i8 u8`, in either byte order, are converted
// to float32. Bool, complex, object, string, datetime and structured arrays are refused with the
// dtype named. Fortran-ordered arrays are rearranged into C order. A 0-d array has shape [].
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include "frontend/formats/convert.h"
#include "support/error.h"
#include "support/tensor.h"

namespace vitc::formats {

Expected<Tensor> readNpy(const std::string &path);

// Parses a whole .npy image held in memory, copying the data out. `where` names it in errors, e.g.
// `model.npz:embedding/kernel.npy`.
Expected<Tensor> parseNpy(const uint8_t *data, size_t size, const std::string &where);

// What a .npy header declares, read without the data: the shape, the dtype as spelled, and the
// bytes the data must fill after the header.
struct NpyDeclaration {
  Shape shape;
  std::string descr;
  ElementType type; // what `descr` stands for
  bool fortranOrder = false;
  size_t headerBytes = 0; // magic, version, length and dict: where the data starts
  uint64_t dataBytes = 0;
};

// How many bytes the header of the .npy image starting with `prefix` takes, from its first 12
// bytes; 0 when `prefix` is too short to tell or is not a .npy image (`parseNpyHeader` says why).
size_t npyHeaderBytes(const uint8_t *prefix, size_t size);

// Parses the header at the start of `data` (which needs to hold the header only, not the data).
Expected<NpyDeclaration> parseNpyHeader(const uint8_t *data, size_t size, const std::string &where);

// The version 1.0 header for a C-ordered `<f4` array of `shape`, padded with spaces and a newline
// so that the data after it starts at a multiple of 64 bytes (version 2.0 if the header would not
// fit a 2-byte length).
std::string npyHeader(const Shape &shape);

// Writes `t` as `<f4` in C order; the file appears whole or not at all.
Status writeNpy(const std::string &path, const Tensor &t);

} // namespace vitc::formats
