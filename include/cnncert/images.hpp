#pragma once
/// \file images.hpp
/// Image loaders (.npy, ERAN CSV, MNIST idx, CIFAR-10 binary) and input preprocessing.

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "cnncert/network.hpp"

namespace cnncert {

/// A set of images in (C, H, W) order with raw values as stored in the file (e.g. 0..255 for
/// uint8 data) and labels (-1 where unknown).
struct ImageSet {
  int64_t count = 0;
  int64_t channels = 0, height = 0, width = 0;
  std::vector<double> pixels;   ///< count × channels × height × width, CHW per image
  std::vector<int64_t> labels;  ///< count entries, -1 = unknown
  std::string source;           ///< file it came from
  /// Number of values per image.
  int64_t image_size() const { return channels * height * width; }
};

/// How to read an image file.
struct LoadOptions {
  int64_t offset = 0;       ///< skip this many images first
  int64_t limit = -1;       ///< read at most this many (-1 = all)
  bool csv_hwc = true;      ///< CSV pixels are HWC-interleaved (ERAN's convention); false = CHW
  std::string labels_path;  ///< explicit labels file (.npy or idx); empty = look beside the images
  /// Image shape (C, H, W) for formats that store flat rows (CSV, 1-D/2-D npy); empty = guess
  /// from the row length (784 → 1×28×28, 3072 → 3×32×32).
  std::vector<int64_t> chw;
  /// The input size of a model whose input is not an image (rank 1 or 2): flat rows of exactly
  /// this many values that are no recognised image size are read as (1, 1, flat_size); 0 = none.
  int64_t flat_size = 0;
};

/// Loads images, choosing the format from the file name: `.npy`; `.csv`; MNIST idx
/// (`*-ubyte`, `*.idx`, optionally `.gz`); CIFAR-10 binary (`*.bin`). Labels come from the file
/// itself (CSV, CIFAR), from `options.labels_path`, or from a sibling file (`X.labels.npy` for
/// `X.npy`; the `labels-idx1` file beside an `images-idx3` file). Throws InvalidArgument naming
/// the file on any problem (missing, truncated, malformed, NaN/Inf values).
ImageSet load_images(const std::string& path, const LoadOptions& options = {});

/// Element order of the model's input tensor. ColumnMajor is MATLAB's (and CORA's) flattening of an
/// H×W×C image: element (c, y, x) at y + H·(x + W·c).
enum class Layout { NCHW, NHWC, Flat, ColumnMajor };
/// Parses "NCHW", "NHWC", "flat" or "colmajor" (case-insensitive).
Layout parse_layout(const std::string& s);
/// Name of a layout.
const char* layout_name(Layout l);

/// Input convention of a model: x = (pixel * scale − mean[c]) / std[c], then arranged in
/// `layout` and reshaped to the model's input shape.
struct Preprocess {
  double scale = 1.0;
  std::vector<double> mean;  ///< one per channel, or one for all; empty = 0
  std::vector<double> std;   ///< one per channel, or one for all; empty = 1
  Layout layout = Layout::NCHW;
  std::string dataset;  ///< informational ("mnist", "cifar10")
};

/// Reads the sidecar `MODEL.json` (e.g. `model.onnx.json`) if it exists (see read_sidecar).
/// Returns nullopt when there is no sidecar; throws InvalidArgument on a malformed one.
std::optional<Preprocess> load_sidecar(const std::string& model_path);

/// Reads a sidecar file (e.g. given with --sidecar): "scale" (a number or a string such as
/// "1/255"), "mean" and "std" (a number or one per channel), "layout", and informational keys
/// (dataset, notes, input_range, test_accuracy, ...; keys starting with "x-" are free). An unknown
/// key, a missing file or a malformed value is an InvalidArgument naming the file.
Preprocess read_sidecar(const std::string& path);

/// Applies `p` to images [first, first+count) of `set` and returns count × input_size(net)
/// values in the model's input element order. Throws InvalidArgument when the image size does not
/// match the model's input (naming both shapes) or a channel count does not match mean/std.
std::vector<double> preprocess(const ImageSet& set, const Preprocess& p, const Network& net, int64_t first = 0,
                               int64_t count = -1);

}  // namespace cnncert
