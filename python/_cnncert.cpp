// The Python extension `cnncert._cnncert` (pybind11): networks, inputs from numpy arrays, and the
// library's certify / bounds / proven calls with the GIL released. python/cnncert/__init__.py
// builds the documented Python API on top of it.
#include <pybind11/functional.h>
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <limits>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "cnncert/cnncert.hpp"

namespace py = pybind11;
using namespace pybind11::literals;

namespace {

using cnncert::InvalidArgument;

/// A network with its input convention.
struct PyNetwork {
  cnncert::Network net;
  cnncert::Preprocess pre;
  std::string path;
};

PyNetwork load(const std::string& path, std::optional<double> scale, std::optional<std::vector<double>> mean,
               std::optional<std::vector<double>> std_dev, std::optional<std::string> layout) {
  PyNetwork n{cnncert::import_onnx(path), cnncert::load_sidecar(path).value_or(cnncert::Preprocess{}), path};
  if (scale) n.pre.scale = *scale;
  if (mean) n.pre.mean = *mean;
  if (std_dev) n.pre.std = *std_dev;
  if (layout) n.pre.layout = cnncert::parse_layout(*layout);
  // The command line's rules (host/cli/options.hpp): a positive scale, positive standard deviations.
  if (!std::isfinite(n.pre.scale) || !(n.pre.scale > 0)) throw InvalidArgument("scale must be positive and finite");
  for (double s : n.pre.std)
    if (!(s > 0) || !std::isfinite(s)) throw InvalidArgument("std values must be positive and finite");
  for (double m : n.pre.mean)
    if (!std::isfinite(m)) throw InvalidArgument("mean values must be finite");
  return n;
}

/// The (C, H, W) of one image the model takes, by its input shape and layout (flat inputs: the
/// loaders' guess for 784 and 3072 values, else 1 × 1 × D).
std::vector<int64_t> image_chw(const PyNetwork& n) {
  std::vector<int64_t> s(n.net.input_shape().begin(), n.net.input_shape().end());
  while (s.size() > 3 && s.front() == 1) s.erase(s.begin());
  if (s.size() == 3 && n.pre.layout != cnncert::Layout::Flat && n.pre.layout != cnncert::Layout::ColumnMajor)
    return n.pre.layout == cnncert::Layout::NHWC ? std::vector<int64_t>{s[2], s[0], s[1]} : s;
  const int64_t d = n.net.input_size();
  if (d == 784) return {1, 28, 28};
  if (d == 3072) return {3, 32, 32};
  return {1, 1, d};
}

std::string shape_text(const std::vector<int64_t>& s) {
  std::string t = "(";
  for (size_t i = 0; i < s.size(); ++i) t += (i ? ", " : "") + std::to_string(s[i]);
  return t + (s.size() == 1 ? ",)" : ")");
}

/// Reads element `flat` (C order of the array's shape) of a strided array of type T as a double.
template <class T>
void read_strided(const py::array& a, std::vector<double>& out) {
  const auto nd = static_cast<size_t>(a.ndim());
  const auto* base = static_cast<const char*>(a.data());
  std::vector<py::ssize_t> idx(nd, 0);
  const py::ssize_t n = a.size();
  out.resize(static_cast<size_t>(n));
  for (py::ssize_t k = 0; k < n; ++k) {
    py::ssize_t off = 0;
    for (size_t d = 0; d < nd; ++d) off += idx[d] * a.strides(static_cast<py::ssize_t>(d));
    out[static_cast<size_t>(k)] = static_cast<double>(*reinterpret_cast<const T*>(base + off));
    for (size_t d = nd; d-- > 0;) {
      if (++idx[d] < a.shape(static_cast<py::ssize_t>(d))) break;
      idx[d] = 0;
    }
  }
}

/// The array's values in C order as doubles, read in place through its strides (no numpy copy
/// for uint8, int, float32 and float64 arrays, whatever their memory order).
std::vector<double> values(const py::array& a) {
  std::vector<double> v;
  const py::dtype dt = a.dtype();
  if (dt.is(py::dtype::of<double>()))
    read_strided<double>(a, v);
  else if (dt.is(py::dtype::of<float>()))
    read_strided<float>(a, v);
  else if (dt.is(py::dtype::of<uint8_t>()))
    read_strided<uint8_t>(a, v);
  else if (dt.is(py::dtype::of<int64_t>()))
    read_strided<int64_t>(a, v);
  else if (dt.is(py::dtype::of<int32_t>()))
    read_strided<int32_t>(a, v);
  else if (dt.kind() == 'f' || dt.kind() == 'i' || dt.kind() == 'u' || dt.kind() == 'b') {
    const py::array conv = py::array::ensure(a.attr("astype")("float64"));
    read_strided<double>(conv, v);
  } else {
    throw InvalidArgument("images must be a numeric array, got dtype " + std::string(py::str(dt)));
  }
  return v;
}

/// The model inputs (count × input_size, the model's element order) of a batch of images:
/// (N, C, H, W), (N, H, W, C), (N, H, W) or (N, D) raw pixels with the network's convention
/// applied, or with `preprocessed` the model's inputs as they are ((N, D) or (N, *input shape)).
std::vector<double> model_inputs(const PyNetwork& n, const py::array& x, const std::string& layout, bool preprocessed,
                                 int64_t& count) {
  if (x.ndim() < 2)
    throw InvalidArgument("images must have a batch dimension first, got shape " +
                          std::string(py::str(x.attr("shape"))));
  std::vector<int64_t> shape(static_cast<size_t>(x.ndim()));
  for (py::ssize_t d = 0; d < x.ndim(); ++d) shape[static_cast<size_t>(d)] = x.shape(d);
  count = shape[0];
  std::vector<double> v = values(x);
  for (double e : v)
    if (!std::isfinite(e)) throw InvalidArgument("images contain NaN or infinite values");
  const int64_t per = count ? static_cast<int64_t>(v.size()) / count : 0;
  if (preprocessed) {
    if (per != n.net.input_size())
      throw InvalidArgument("preprocessed inputs of shape " + shape_text(shape) + " have " + std::to_string(per) +
                            " values per image; the model input " + shape_text(n.net.input_shape()) + " needs " +
                            std::to_string(n.net.input_size()));
    return v;
  }
  const std::vector<int64_t> chw = image_chw(n);
  const std::vector<int64_t> hwc{chw[1], chw[2], chw[0]};
  cnncert::ImageSet set;
  set.count = count;
  set.source = "images";
  std::string lay = layout;
  std::transform(lay.begin(), lay.end(), lay.begin(),
                 [](unsigned char c) { return static_cast<char>(std::toupper(c)); });
  const std::vector<int64_t> tail(shape.begin() + 1, shape.end());
  if (shape.size() == 4) {
    if (lay.empty()) lay = tail == chw ? "NCHW" : tail == hwc ? "NHWC" : "";
    if (lay == "NCHW")
      set.channels = shape[1], set.height = shape[2], set.width = shape[3];
    else if (lay == "NHWC")
      set.channels = shape[3], set.height = shape[1], set.width = shape[2];
    else
      throw InvalidArgument(layout.empty()
                                ? "images of shape " + shape_text(shape) + " fit neither (N, C, H, W) = (N, " +
                                      shape_text(chw).substr(1) + " nor (N, H, W, C) = (N, " +
                                      shape_text(hwc).substr(1) + " of this model"
                                : "layout must be 'NCHW' or 'NHWC' for 4-D images, got '" + layout + "'");
    if (lay == "NHWC") {  // to (C, H, W) per image
      std::vector<double> chw_v(v.size());
      const int64_t h = set.height, w = set.width, c = set.channels;
      for (int64_t i = 0; i < count; ++i)
        for (int64_t y = 0; y < h; ++y)
          for (int64_t xq = 0; xq < w; ++xq)
            for (int64_t ch = 0; ch < c; ++ch)
              chw_v[static_cast<size_t>(((i * c + ch) * h + y) * w + xq)] =
                  v[static_cast<size_t>(((i * h + y) * w + xq) * c + ch)];
      v = std::move(chw_v);
    }
  } else if (shape.size() == 3) {
    if (!layout.empty()) throw InvalidArgument("layout applies to 4-D images; (N, H, W) images have one channel");
    set.channels = 1, set.height = shape[1], set.width = shape[2];
  } else if (shape.size() == 2) {
    if (!layout.empty()) throw InvalidArgument("layout applies to 4-D images; (N, D) rows are in (C, H, W) order");
    if (per != chw[0] * chw[1] * chw[2])
      throw InvalidArgument("image rows of " + std::to_string(per) + " values do not fit the model's images " +
                            shape_text(chw));
    set.channels = chw[0], set.height = chw[1], set.width = chw[2];
  } else {
    throw InvalidArgument("images must be (N, C, H, W), (N, H, W, C), (N, H, W) or (N, D), got shape " +
                          shape_text(shape));
  }
  set.pixels = std::move(v);
  return cnncert::preprocess(set, n.pre, n.net);
}

std::vector<int64_t> labels_of(const std::optional<py::array>& labels, int64_t count, const char* what) {
  if (!labels) return {};
  const std::vector<double> v = values(*labels);
  if (static_cast<int64_t>(v.size()) != count)
    throw InvalidArgument(std::string(what) + ": " + std::to_string(v.size()) + " values for " + std::to_string(count) +
                          " images");
  std::vector<int64_t> out;
  for (double e : v) {
    // Whole numbers of a size a class index can have (a cast of 1e30 or inf would be undefined).
    if (!(std::fabs(e) < 9.0e15) || e != std::floor(e))
      throw InvalidArgument(std::string(what) + " must be whole class indices (or -1)");
    out.push_back(static_cast<int64_t>(e));
  }
  return out;
}

template <class T>
py::array_t<T> to_array(const std::vector<T>& v) {
  py::array_t<T> a(static_cast<py::ssize_t>(v.size()));
  std::copy(v.begin(), v.end(), a.mutable_data());
  return a;
}

/// Option `key` of `o` as a T: `fallback` when it is missing or None; a value of another type is an
/// InvalidArgument naming the option (not pybind11's "Unable to cast").
template <class T>
T opt(const py::dict& o, const char* key, T fallback) {
  if (!o.contains(key) || o[key].is_none()) return fallback;
  try {
    return o[key].cast<T>();
  } catch (const py::cast_error&) {
    throw InvalidArgument(std::string(key) + ": " + std::string(py::repr(o[key])) + " has the wrong type");
  }
}

/// Options shared by the bound computations.
struct Common {
  std::string norm = "inf", method = "cnncert", device = "cpu", engine = "fast";
  int threads = 0;
  bool exact_cnncert = false;
  std::optional<std::pair<double, double>> clip;
  size_t gpu_memory_mib = 0;

  cnncert::BoundOptions bound() const {
    cnncert::BoundOptions o;
    o.norm = cnncert::parse_norm(norm);
    o.method = cnncert::parse_method(method);
    o.exact_cnncert = exact_cnncert;
    if (clip) {
      if (!(clip->first < clip->second) || !std::isfinite(clip->first) || !std::isfinite(clip->second))
        throw InvalidArgument("clip needs (lo, hi) with lo < hi");
      if (o.norm != cnncert::Norm::Linf) throw InvalidArgument("clip applies to norm 'inf' only");
      o.clip_to_box = true, o.box_lo = clip->first, o.box_hi = clip->second;
    }
    return o;
  }
  std::unique_ptr<cnncert::BoundEngine> make(const cnncert::Network& net) const {
    if (threads < 0) throw InvalidArgument("threads must not be negative");
    cnncert::EngineOptions e;
    e.device = cnncert::parse_device(device);
    e.cpu_engine = cnncert::parse_cpu_engine(engine);
    e.threads = threads;
    e.gpu_memory_mib = gpu_memory_mib;
    return cnncert::make_engine(net, e);
  }
  /// What the outputs call the engine (as the command line).
  std::string mode(const cnncert::BoundEngine& e) const {
    if (e.name() != "cpu") return e.name();
    return exact_cnncert ? "fast, exact CNN-Cert" : "fast, stable neurons by interval propagation and larger radii";
  }
};

Common common_of(const py::dict& o) {
  Common c;
  c.norm = opt<std::string>(o, "norm", c.norm);
  c.method = opt<std::string>(o, "method", c.method);
  c.device = opt<std::string>(o, "device", c.device);
  c.engine = opt<std::string>(o, "engine", c.engine);
  c.threads = opt<int>(o, "threads", 0);
  c.exact_cnncert = opt<bool>(o, "exact_cnncert", false);
  if (o.contains("clip") && !o["clip"].is_none()) c.clip = opt<std::pair<double, double>>(o, "clip", {});
  if (o.contains("gpu_memory_mib") && !o["gpu_memory_mib"].is_none()) {
    const auto m = opt<int64_t>(o, "gpu_memory_mib", 0);
    if (m < 0) throw InvalidArgument("gpu_memory_mib must not be negative");
    c.gpu_memory_mib = static_cast<size_t>(m);
  }
  return c;
}

/// A progress callback for the library: called with the GIL held; Ctrl-C in Python stops the run.
/// The library copies and destroys the callback while the GIL is released (e.g. proven_certify
/// copies its options): the Python object is held through a shared pointer, whose copies only touch
/// an atomic count, and whose last owner takes the GIL to drop the reference.
std::function<void(int64_t, int64_t)> progress_of(const py::object& cb) {
  std::shared_ptr<py::object> held(new py::object(cb), [](py::object* p) {
    py::gil_scoped_acquire gil;
    delete p;
  });
  return [held](int64_t done, int64_t total) {
    py::gil_scoped_acquire gil;
    if (PyErr_CheckSignals() != 0) throw py::error_already_set();
    if (!held->is_none()) (*held)(done, total);
  };
}

cnncert::CertifyOptions certify_options(const py::dict& o, const Common& c) {
  cnncert::CertifyOptions co;
  co.bound = c.bound();
  co.target = cnncert::parse_target_mode(opt<std::string>(o, "target", "random"));
  co.search = cnncert::parse_search_mode(opt<std::string>(o, "search", "cnncert"));
  {
    const auto s = opt<int64_t>(o, "seed", 1215);
    if (s < 0) throw InvalidArgument("seed must be a non-negative integer");
    co.seed = static_cast<uint64_t>(s);
  }
  return co;
}

py::dict certify(const PyNetwork& n, const py::array& x, const std::optional<py::array>& labels,
                 const std::optional<py::array>& targets, const py::dict& o, const py::object& progress) {
  const Common c = common_of(o);
  cnncert::CertifyOptions co = certify_options(o, c);
  const std::string layout = opt<std::string>(o, "layout", "");
  const bool preprocessed = opt<bool>(o, "preprocessed", false);
  const int64_t first = opt<int64_t>(o, "first_index", 0);
  if (first < 0) throw InvalidArgument("first_index must not be negative");
  int64_t count = 0;
  const std::vector<double> in = model_inputs(n, x, layout, preprocessed, count);
  const std::vector<int64_t> lab = labels_of(labels, count, "labels");
  co.targets = labels_of(targets, count, "targets");
  {
    const auto moves = opt<int64_t>(o, "attack_moves", 0);
    if (moves < 0 || moves > 10000)
      throw InvalidArgument("attack_moves must be in 0..10000, got " + std::to_string(moves));
    co.attack_moves = static_cast<int>(moves);
  }
  cnncert::check_boundable(n.net);
  auto engine = c.make(n.net);
  co.progress = progress_of(progress);
  std::vector<cnncert::ImageResult> res;
  double seconds = 0;
  {
    py::gil_scoped_release release;
    const auto t0 = std::chrono::steady_clock::now();
    res = cnncert::certify(n.net, *engine, in, lab, co, first);
    seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  }
  // One row per (image, target); a skipped image is one row with its reason.
  std::vector<int64_t> image, label, predicted, target, steps, steps_by_attack;
  std::vector<double> radius, time, attack_eps;
  std::vector<bool> skipped;
  py::list note;
  for (const auto& r : res) {
    auto row = [&](int64_t t, double e, int st, const std::string& why, int by_attack, double adv) {
      image.push_back(r.image), label.push_back(r.label), predicted.push_back(r.predicted),
          skipped.push_back(r.skipped);
      target.push_back(t), radius.push_back(e), steps.push_back(st), note.append(why);
      steps_by_attack.push_back(by_attack), attack_eps.push_back(adv);
      time.push_back(r.targets.empty() ? 0.0 : r.seconds / static_cast<double>(r.targets.size()));
    };
    if (r.skipped) row(-1, std::nan(""), 0, r.skip_reason, 0, INFINITY);
    for (const auto& t : r.targets) row(t.target, t.eps, t.steps, t.note, t.steps_by_attack, t.attack_eps);
  }
  py::array_t<bool> sk(static_cast<py::ssize_t>(skipped.size()));
  std::copy(skipped.begin(), skipped.end(), sk.mutable_data());
  return py::dict("image"_a = to_array(image), "label"_a = to_array(label), "predicted"_a = to_array(predicted),
                  "skipped"_a = sk, "target"_a = to_array(target), "radius"_a = to_array(radius),
                  "steps"_a = to_array(steps), "seconds"_a = to_array(time), "note"_a = note,
                  "steps_by_attack"_a = to_array(steps_by_attack), "attack_eps"_a = to_array(attack_eps),
                  "engine"_a = engine->name(), "engine_mode"_a = c.mode(*engine), "total_seconds"_a = seconds);
}

py::dict bounds(const PyNetwork& n, const py::array& x, double eps, bool logits, const py::dict& o) {
  if (!std::isfinite(eps) || eps <= 0) throw InvalidArgument("eps must be a positive finite radius");
  const Common c = common_of(o);
  const cnncert::BoundOptions bo = c.bound();
  const std::string layout = opt<std::string>(o, "layout", "");
  const bool preprocessed = opt<bool>(o, "preprocessed", false);
  int64_t count = 0;
  const std::vector<double> in = model_inputs(n, x, layout, preprocessed, count);
  cnncert::check_boundable(n.net);
  const int64_t classes = n.net.output_size(), rows = logits ? classes : classes - 1;
  std::vector<int64_t> predicted, row_class;
  std::vector<cnncert::BoundProblem> problems;
  {
    py::gil_scoped_release release;
    problems = cnncert::prediction_problems(n.net, in, eps, logits, predicted);
  }
  for (const int64_t pc : predicted)  // the class of every row: all of them, or all but the prediction
    for (int64_t k = 0; k < classes; ++k)
      if (logits || k != pc) row_class.push_back(k);
  auto engine = c.make(n.net);
  std::vector<cnncert::BoundResult> res;
  {
    py::gil_scoped_release release;
    res = engine->bound(problems, bo);
  }
  py::array_t<double> lower({count, rows}), upper({count, rows});
  py::array_t<int64_t> cls({count, rows});
  py::array_t<bool> certified(count);
  py::list errors;
  for (int64_t i = 0; i < count; ++i) {
    const auto& r = res[static_cast<size_t>(i)];
    bool ok = !logits && r.error.empty();
    for (int64_t k = 0; k < rows; ++k) {
      lower.mutable_at(i, k) = r.lower[static_cast<size_t>(k)];
      upper.mutable_at(i, k) = r.upper[static_cast<size_t>(k)];
      cls.mutable_at(i, k) = row_class[static_cast<size_t>(i * rows + k)];
      ok = ok && r.lower[static_cast<size_t>(k)] > 0;
    }
    certified.mutable_at(i) = ok;
    errors.append(r.error);
  }
  return py::dict("lower"_a = lower, "upper"_a = upper, "row_class"_a = cls, "predicted"_a = to_array(predicted),
                  "certified"_a = certified, "error"_a = errors, "engine"_a = engine->name());
}

py::dict proven(const PyNetwork& n, const py::array& x, const std::optional<py::array>& labels, const py::dict& o,
                const py::object& progress) {
  const Common c = common_of(o);
  cnncert::ProvenOptions po;
  po.base = certify_options(o, c);
  po.noise.kind = cnncert::parse_noise(opt<std::string>(o, "noise", "uniform"));
  po.noise.uniform_variance_proxy = opt<bool>(o, "uniform_proxy", false);
  if (po.noise.uniform_variance_proxy && po.noise.kind != cnncert::NoiseKind::Uniform)
    throw InvalidArgument("uniform_proxy applies to noise 'uniform' only");
  po.confidence = opt<double>(o, "confidence", 0.9999);
  if (!(po.confidence > 0 && po.confidence < 1)) throw InvalidArgument("confidence must lie in (0, 1)");
  po.worst_case = opt<bool>(o, "worst_case", true);
  const std::string layout = opt<std::string>(o, "layout", "");
  const bool preprocessed = opt<bool>(o, "preprocessed", false);
  int64_t count = 0;
  const std::vector<double> in = model_inputs(n, x, layout, preprocessed, count);
  const std::vector<int64_t> lab = labels_of(labels, count, "labels");
  if (o.contains("covariance") && !o["covariance"].is_none()) {
    if (po.noise.kind != cnncert::NoiseKind::Gaussian)
      throw InvalidArgument("covariance applies to noise 'gaussian' only");
    po.noise.covariance = values(py::array::ensure(o["covariance"]));
    cnncert::validate_covariance(po.noise.covariance, n.net.input_size(), "covariance");
  }
  cnncert::check_boundable(n.net);
  auto engine = c.make(n.net);
  po.base.progress = progress_of(progress);
  cnncert::ProvenRun run;
  {
    py::gil_scoped_release release;
    run = cnncert::proven_certify(n.net, *engine, in, lab, po, 0);
  }
  std::vector<int64_t> image, label, predicted, target;
  std::vector<double> level, worst, ratio;
  std::vector<bool> skipped;
  py::list note;
  for (const auto& im : run.images) {
    auto row = [&](int64_t t, double lv, double w, double r, const std::string& why) {
      image.push_back(im.image), label.push_back(im.label), predicted.push_back(im.predicted),
          skipped.push_back(im.skipped);
      target.push_back(t), level.push_back(lv), worst.push_back(w), ratio.push_back(r), note.append(why);
    };
    if (im.skipped) row(-1, std::nan(""), std::nan(""), std::nan(""), im.skip_reason);
    for (const auto& t : im.targets) row(t.target, t.noise, t.worst_case, t.ratio, t.note);
  }
  py::array_t<bool> sk(static_cast<py::ssize_t>(skipped.size()));
  std::copy(skipped.begin(), skipped.end(), sk.mutable_data());
  return py::dict("image"_a = to_array(image), "label"_a = to_array(label), "predicted"_a = to_array(predicted),
                  "skipped"_a = sk, "target"_a = to_array(target), "noise_level"_a = to_array(level),
                  "worst_case"_a = to_array(worst), "ratio"_a = to_array(ratio), "note"_a = note,
                  "engine"_a = engine->name(), "worst_case_seconds"_a = run.worst_case_seconds,
                  "proven_seconds"_a = run.proven_seconds);
}

py::dict attack(const PyNetwork& n, const py::array& x, const std::optional<py::array>& targets, const py::dict& o) {
  const std::string method = opt<std::string>(o, "method", "pgd");
  const cnncert::Norm norm = cnncert::parse_norm(opt<std::string>(o, "norm", "inf"));
  if (method != "pgd" && method != "cw") throw InvalidArgument("unknown attack '" + method + "' (use pgd or cw)");
  if (method == "cw" && norm != cnncert::Norm::L2) throw InvalidArgument("the cw attack is an l2 attack (norm 2)");
  cnncert::AttackOptions ao;
  if (o.contains("clip") && !o["clip"].is_none()) {
    const auto c = opt<std::pair<double, double>>(o, "clip", {});
    ao.clip_to_box = true, ao.box_lo = c.first, ao.box_hi = c.second;
  }
  const auto seed = opt<int64_t>(o, "seed", 1);
  if (seed < 0) throw InvalidArgument("seed must be a non-negative integer");
  ao.seed = static_cast<uint64_t>(seed);
  const std::string layout = opt<std::string>(o, "layout", "");
  const bool preprocessed = opt<bool>(o, "preprocessed", false);
  int64_t count = 0;
  const std::vector<double> in = model_inputs(n, x, layout, preprocessed, count);
  const std::vector<int64_t> tg = labels_of(targets, count, "targets");
  const int64_t n_in = n.net.input_size(), classes = n.net.output_size();
  std::vector<cnncert::AttackResult> res(static_cast<size_t>(count));
  std::vector<int64_t> predicted(static_cast<size_t>(count));
  {
    py::gil_scoped_release release;
    const std::vector<double> out = n.net.forward(in.data(), count);
    for (int64_t i = 0; i < count; ++i) {
      const double* l = out.data() + i * classes;
      const int64_t c = std::max_element(l, l + classes) - l;
      predicted[static_cast<size_t>(i)] = c;
      const int64_t t = tg.empty() ? -1 : tg[static_cast<size_t>(i)];
      const std::vector<double> x0(in.begin() + i * n_in, in.begin() + (i + 1) * n_in);
      res[static_cast<size_t>(i)] =
          method == "pgd" ? cnncert::pgd_attack(n.net, x0, c, t, norm, ao) : cnncert::cw_l2_attack(n.net, x0, c, t, ao);
    }
  }
  py::array_t<bool> found(count);
  py::array_t<double> dist(count), adv({count, n_in});
  py::array_t<int64_t> target(count);
  for (int64_t i = 0; i < count; ++i) {
    const auto& r = res[static_cast<size_t>(i)];
    found.mutable_at(i) = r.found,
    dist.mutable_at(i) = r.found ? r.distortion : std::numeric_limits<double>::infinity();
    target.mutable_at(i) = r.target;
    for (int64_t k = 0; k < n_in; ++k) adv.mutable_at(i, k) = r.found ? r.x[static_cast<size_t>(k)] : std::nan("");
  }
  return py::dict("found"_a = found, "distortion"_a = dist, "target"_a = target, "x"_a = adv,
                  "predicted"_a = to_array(predicted));
}

py::dict vnnlib(const PyNetwork& n, const std::string& property, const py::dict& o) {
  const Common c = common_of(o);
  cnncert::VnnOptions vo;
  vo.bound = c.bound();
  vo.timeout_seconds = opt<double>(o, "timeout", 0.0);
  if (!std::isfinite(vo.timeout_seconds) || vo.timeout_seconds < 0)
    throw InvalidArgument("timeout must be a non-negative number of seconds");
  vo.attack = opt<bool>(o, "attack", true);
  const cnncert::VnnProperty prop = cnncert::load_vnnlib(property);
  const cnncert::EngineOptions eo = [&] {
    cnncert::EngineOptions e;
    e.device = cnncert::parse_device(c.device), e.cpu_engine = cnncert::parse_cpu_engine(c.engine);
    e.threads = c.threads, e.gpu_memory_mib = c.gpu_memory_mib;
    return e;
  }();
  cnncert::VnnResult r;
  {
    py::gil_scoped_release release;
    r = cnncert::verify_vnnlib(n.net, prop, vo, eo);
  }
  return py::dict("answer"_a = cnncert::vnn_answer_name(r.answer), "x"_a = to_array(r.x), "y"_a = to_array(r.y),
                  "cases"_a = static_cast<int64_t>(prop.cases.size()), "cases_refuted"_a = r.cases_refuted,
                  "note"_a = r.note, "seconds"_a = r.seconds);
}

py::array_t<double> logits(const PyNetwork& n, const py::array& x, const std::string& layout, bool preprocessed) {
  int64_t count = 0;
  const std::vector<double> in = model_inputs(n, x, layout, preprocessed, count);
  const int64_t classes = n.net.output_size();
  py::array_t<double> out({count, classes});
  {
    py::gil_scoped_release release;
    constexpr int64_t kChunk = 256;  // bounds the memory of the intermediate activations
    for (int64_t first = 0; first < count; first += kChunk) {
      const int64_t m = std::min(kChunk, count - first);
      const std::vector<double> part = n.net.forward(in.data() + first * n.net.input_size(), m);
      std::copy(part.begin(), part.end(), out.mutable_data() + first * classes);
    }
  }
  for (py::ssize_t i = 0; i < out.size(); ++i)
    if (!std::isfinite(out.data()[i]))
      throw InvalidArgument("image " + std::to_string(i / classes) + " gives a non-finite logit");
  return out;
}

py::list layers(const PyNetwork& n) {
  py::list out;
  for (const auto& node : n.net.nodes()) {
    std::vector<int64_t> shape(node.shape.begin(), node.shape.end());
    out.append(py::dict("name"_a = node.name, "op"_a = cnncert::op_name(node.op),
                        "shape"_a = py::tuple(py::cast(shape)), "parameters"_a = node.parameter_count()));
  }
  return out;
}

}  // namespace

PYBIND11_MODULE(_cnncert, m) {
  m.doc() = "cnncert's C++ core (use the cnncert package)";
  m.attr("__version__") = cnncert::version();

  // Exceptions: cnncert.Error and its kinds, with the library's one-line messages. Bad input is
  // also a ValueError, a failed CUDA call also a RuntimeError. (Translators registered later are
  // tried first: the base class goes first.)
  const py::exception<cnncert::Error>& error = py::register_exception<cnncert::Error>(m, "Error", PyExc_Exception);
  py::register_exception<cnncert::InternalError>(m, "InternalError",
                                                 py::make_tuple(error, py::handle(PyExc_RuntimeError)));
  py::register_exception<cnncert::CudaError>(m, "CudaError", py::make_tuple(error, py::handle(PyExc_RuntimeError)));
  py::register_exception<cnncert::UnsupportedModel>(m, "UnsupportedModel", error);
  py::register_exception<cnncert::InvalidArgument>(m, "InvalidArgument",
                                                   py::make_tuple(error, py::handle(PyExc_ValueError)));

  py::class_<PyNetwork>(m, "Network")
      .def_property_readonly("path", [](const PyNetwork& n) { return n.path; })
      .def_property_readonly(
          "input_shape",
          [](const PyNetwork& n) {
            return py::tuple(py::cast(std::vector<int64_t>(n.net.input_shape().begin(), n.net.input_shape().end())));
          })
      .def_property_readonly("image_shape", [](const PyNetwork& n) { return py::tuple(py::cast(image_chw(n))); })
      .def_property_readonly("input_size", [](const PyNetwork& n) { return n.net.input_size(); })
      .def_property_readonly("num_classes", [](const PyNetwork& n) { return n.net.output_size(); })
      .def_property_readonly("convention",
                             [](const PyNetwork& n) {
                               return py::dict("scale"_a = n.pre.scale, "mean"_a = n.pre.mean, "std"_a = n.pre.std,
                                               "layout"_a = cnncert::layout_name(n.pre.layout));
                             })
      .def_property_readonly("notes", [](const PyNetwork& n) { return n.net.notes(); })
      .def("layers", &layers)
      .def("logits", &logits, "x"_a, "layout"_a = "", "preprocessed"_a = false);

  m.def("load", &load, "path"_a, "scale"_a = py::none(), "mean"_a = py::none(), "std"_a = py::none(),
        "layout"_a = py::none());
  m.def("certify", &certify, "net"_a, "x"_a, "labels"_a, "targets"_a, "options"_a, "progress"_a);
  m.def("bounds", &bounds, "net"_a, "x"_a, "eps"_a, "logits"_a, "options"_a);
  m.def("proven", &proven, "net"_a, "x"_a, "labels"_a, "options"_a, "progress"_a);
  m.def("vnnlib", &vnnlib, "net"_a, "property"_a, "options"_a);
  m.def("attack", &attack, "net"_a, "x"_a, "targets"_a, "options"_a);
  m.def("cuda_available", &cnncert::cuda_available);
  m.def("cuda_device_info", &cnncert::cuda_device_info);
}
