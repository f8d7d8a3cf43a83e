#pragma once
/// \file npy.hpp
/// Minimal reader and writer for NumPy `.npy` files (internal).

#include <cstdint>
#include <string>
#include <vector>

namespace cnncert::detail {

/// The contents of a `.npy` file, converted to double. `shape` is empty for a 0-d array.
struct NpyArray {
  std::vector<int64_t> shape;  ///< C-order dimensions
  std::string dtype;           ///< descr as written in the file, e.g. "<f4", "|u1"
  std::vector<double> data;    ///< product(shape) values in C order
};

/// Reads a `.npy` file (format versions 1.0, 2.0 and 3.0; C order; little-endian or one-byte
/// dtypes b1, i1, u1, i2, u2, i4, u4, i8, u8, f2, f4, f8). Throws InvalidArgument with a one-line
/// message naming the file on any problem (missing, bad magic, malformed header, Fortran order,
/// unsupported dtype, truncated or oversized data).
NpyArray read_npy(const std::string& path);

/// Writes a version 1.0 `.npy` file holding `data` (C order) as `<f4` (`as_float32`) or `<f8`.
/// Throws InvalidArgument when `data` does not have product(shape) values or the file cannot be
/// written.
void write_npy(const std::string& path, const std::vector<int64_t>& shape, const std::vector<double>& data,
               bool as_float32);

}  // namespace cnncert::detail
