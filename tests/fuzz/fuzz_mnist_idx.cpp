// libFuzzer target: the MNIST idx loader, plain and gzip-compressed, with the sibling labels file.
// Input: the images file, optionally followed by kLabelsSeparator and the labels file. Each input
// is loaded three ways:
//   1. as written:  t10k-images-idx3-ubyte    (+ t10k-labels-idx1-ubyte beside it);
//   2. gzipped by this harness: gz-images-idx3-ubyte.gz (+ gz-labels-idx1-ubyte.gz), so fuzzed
//      contents reach the gzip path inside a valid gzip stream;
//   3. when the images part is itself gzip data (1f 8b): as-is, raw-images.idx3.gz
//      (+ raw-labels.idx1.gz), for corrupt or truncated streams.
#include <cstdint>
#include <string>
#include <string_view>
#ifdef CNNCERT_FUZZ_HAVE_ZLIB
#include <zlib.h>
#endif

#include "cnncert/images.hpp"
#include "fuzz_common.hpp"

namespace {

constexpr std::string_view kLabelsSeparator = "LABELS::";

#ifdef CNNCERT_FUZZ_HAVE_ZLIB
// gzip (not zlib) framing of `in`.
std::string gzip(std::string_view in) {
  z_stream z{};
  if (deflateInit2(&z, 6, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) != Z_OK)
    cnncert::fuzz::finding("harness: deflateInit2");
  std::string out(deflateBound(&z, in.size()) + 32, '\0');
  z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(in.data()));
  z.avail_in = static_cast<uInt>(in.size());
  z.next_out = reinterpret_cast<Bytef*>(out.data());
  z.avail_out = static_cast<uInt>(out.size());
  if (deflate(&z, Z_FINISH) != Z_STREAM_END) cnncert::fuzz::finding("harness: deflate");
  out.resize(z.total_out);
  deflateEnd(&z);
  return out;
}
#endif

void load_pair(const std::string& images, std::string_view img, const std::string& labels, bool has_labels,
               std::string_view lbl) {
  cnncert::fuzz::write_file(images, img);
  if (has_labels)
    cnncert::fuzz::write_file(labels, lbl);
  else
    cnncert::fuzz::remove_file(labels);
  cnncert::fuzz::guarded([&] { cnncert::fuzz::load_and_touch(images); });
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using cnncert::fuzz::scratch;
  static const std::string img1 = scratch("t10k-images-idx3-ubyte"), lbl1 = scratch("t10k-labels-idx1-ubyte");
  static const std::string img2 = scratch("gz-images-idx3-ubyte.gz"), lbl2 = scratch("gz-labels-idx1-ubyte.gz");
  static const std::string img3 = scratch("raw-images.idx3.gz"), lbl3 = scratch("raw-labels.idx1.gz");
  bool has_labels = false;
  const auto [img, lbl] =
      cnncert::fuzz::split(std::string_view(reinterpret_cast<const char*>(data), size), kLabelsSeparator, has_labels);

  load_pair(img1, img, lbl1, has_labels, lbl);
#ifdef CNNCERT_FUZZ_HAVE_ZLIB
  load_pair(img2, gzip(img), lbl2, has_labels, has_labels ? gzip(lbl) : std::string());
#endif
  if (img.size() >= 2 && static_cast<unsigned char>(img[0]) == 0x1f && static_cast<unsigned char>(img[1]) == 0x8b)
    load_pair(img3, img, lbl3, has_labels, lbl);
  return 0;
}
