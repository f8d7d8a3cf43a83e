// The `cnncert` command: info, predict (and later certify, bounds, proven).
#include <CLI/CLI.hpp>
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <iomanip>
#include <iostream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "cnncert/cnncert.hpp"

namespace {

using cnncert::InvalidArgument;
using json = nlohmann::json;

constexpr int kExitBadInput = 2;

// Parses "0.5", "1/255" or "1e-3".
double parse_number(const std::string& text, const std::string& option) {
  const auto slash = text.find('/');
  try {
    size_t used = 0;
    if (slash != std::string::npos) {
      const double a = std::stod(text.substr(0, slash), &used);
      const double b = std::stod(text.substr(slash + 1));
      if (b == 0) throw std::invalid_argument("zero");
      return a / b;
    }
    const double v = std::stod(text, &used);
    if (used != text.size()) throw std::invalid_argument("junk");
    return v;
  } catch (const std::exception&) {
    throw InvalidArgument(option + ": '" + text + "' is not a number");
  }
}

std::vector<double> parse_list(const std::string& text, const std::string& option) {
  std::vector<double> out;
  std::stringstream ss(text);
  std::string item;
  while (std::getline(ss, item, ',')) out.push_back(parse_number(item, option));
  if (out.empty()) throw InvalidArgument(option + ": empty list");
  for (double v : out)
    if (!std::isfinite(v)) throw InvalidArgument(option + ": values must be finite");
  return out;
}

/// Options shared by every command that reads images.
struct InputOptions {
  std::string model, images, labels, scale, mean, std, layout, csv_layout = "hwc";
  int64_t count = -1, offset = 0;

  void add(CLI::App& app) {
    app.add_option("MODEL", model, "ONNX model file")->required();
    app.add_option("IMAGES", images, "images: .npy, ERAN .csv, MNIST idx (.gz), CIFAR-10 .bin")->required();
    app.add_option("-n,--count", count, "number of images (default: all)");
    app.add_option("--offset", offset, "skip this many images first");
    app.add_option("--labels", labels, "labels file (.npy or idx) when the images carry none");
    app.add_option("--scale", scale, "pixel scale, e.g. 1/255 (default: sidecar MODEL.json, else 1)");
    app.add_option("--mean", mean, "per-channel mean subtracted after scaling, e.g. 0.4914,0.4822,0.4465");
    app.add_option("--std", std, "per-channel standard deviation divided by after the mean");
    app.add_option("--layout", layout, "element order of the model input: NCHW, NHWC or flat");
    app.add_option("--csv-layout", csv_layout, "pixel order in CSV rows: hwc (ERAN, default) or chw");
  }

  cnncert::Preprocess preprocess() const {
    cnncert::Preprocess p = cnncert::load_sidecar(model).value_or(cnncert::Preprocess{});
    if (!scale.empty()) p.scale = parse_number(scale, "--scale");
    if (!mean.empty()) p.mean = parse_list(mean, "--mean");
    if (!std.empty()) p.std = parse_list(std, "--std");
    if (!layout.empty()) p.layout = cnncert::parse_layout(layout);
    if (!std::isfinite(p.scale) || p.scale == 0) throw InvalidArgument("--scale must be finite and non-zero");
    for (double s : p.std)
      if (!(s > 0)) throw InvalidArgument("--std values must be positive");
    return p;
  }

  cnncert::ImageSet load() const {
    if (count < -1 || count == 0) throw InvalidArgument("-n/--count must be positive");
    if (offset < 0) throw InvalidArgument("--offset must not be negative");
    if (csv_layout != "hwc" && csv_layout != "chw") throw InvalidArgument("--csv-layout must be hwc or chw");
    cnncert::LoadOptions o;
    o.offset = offset;
    o.limit = count;
    o.labels_path = labels;
    o.csv_hwc = csv_layout == "hwc";
    return cnncert::load_images(images, o);
  }
};

void print_notes(const cnncert::Network& net) {
  for (const auto& n : net.notes()) std::cerr << "note: " << n << "\n";
}

void write_json(const json& j, const std::string& path) {
  if (path == "-") {
    std::cout << j.dump(2) << "\n";
    return;
  }
  std::ofstream f(path);
  if (!f) throw InvalidArgument(path + ": cannot write the JSON output");
  f << j.dump(2) << "\n";
}

std::string node_details(const cnncert::Node& n) {
  std::ostringstream os;
  switch (n.op) {
    case cnncert::OpKind::Conv: {
      const auto& a = n.as<cnncert::ConvAttr>();
      os << a.kernel_h << "x" << a.kernel_w << " s" << a.stride_h << "," << a.stride_w << " p" << a.pad_top << ","
         << a.pad_left << "," << a.pad_bottom << "," << a.pad_right;
      if (a.dilation_h != 1 || a.dilation_w != 1) os << " d" << a.dilation_h << "," << a.dilation_w;
      if (a.groups != 1) os << " g" << a.groups;
      break;
    }
    case cnncert::OpKind::Dense: {
      const auto& a = n.as<cnncert::DenseAttr>();
      os << a.in_features << "->" << a.out_features;
      break;
    }
    case cnncert::OpKind::Activation: os << cnncert::act_name(n.as<cnncert::ActAttr>().kind); break;
    case cnncert::OpKind::MaxPool:
    case cnncert::OpKind::AvgPool: {
      const auto& a = n.as<cnncert::PoolAttr>();
      os << a.kernel_h << "x" << a.kernel_w << " s" << a.stride_h << "," << a.stride_w << " p" << a.pad_top << ","
         << a.pad_left << "," << a.pad_bottom << "," << a.pad_right;
      if (n.op == cnncert::OpKind::AvgPool && a.count_include_pad) os << " incl-pad";
      break;
    }
    default: break;
  }
  return os.str();
}

int run_info(const std::string& model, const std::string& json_path) {
  const cnncert::Network net = cnncert::import_onnx(model);
  print_notes(net);
  json j;
  j["model"] = model;
  j["input_shape"] = net.input_shape();
  j["output_shape"] = net.output_shape();
  j["activation_neurons"] = net.activation_neurons();
  json layers = json::array();
  int64_t params = 0;
  std::cout << "model: " << model << "\n";
  std::cout << std::left << std::setw(4) << "#" << std::setw(28) << "name" << std::setw(26) << "op" << std::setw(18)
            << "output shape" << std::setw(10) << "params" << std::setw(10) << "neurons" << "details\n";
  for (size_t i = 0; i < net.nodes().size(); ++i) {
    const cnncert::Node& n = net.nodes()[i];
    const int64_t neurons = n.op == cnncert::OpKind::Activation ? n.size() : 0;
    params += n.parameter_count();
    std::string name = n.name.size() > 26 ? n.name.substr(0, 23) + "..." : n.name;
    std::string op = n.onnx_op.size() > 24 ? n.onnx_op.substr(0, 21) + "..." : n.onnx_op;
    std::cout << std::left << std::setw(4) << i << std::setw(28) << name << std::setw(26) << op << std::setw(18)
              << cnncert::shape_str(n.shape) << std::setw(10) << n.parameter_count() << std::setw(10) << neurons
              << node_details(n) << "\n";
    json l;
    l["index"] = i;
    l["name"] = n.name;
    l["kind"] = cnncert::op_name(n.op);
    l["onnx_op"] = n.onnx_op;
    l["shape"] = n.shape;
    l["inputs"] = n.inputs;
    l["parameters"] = n.parameter_count();
    l["neurons"] = neurons;
    l["details"] = node_details(n);
    layers.push_back(l);
  }
  std::cout << "input " << cnncert::shape_str(net.input_shape()) << ", output " << cnncert::shape_str(net.output_shape())
            << ", " << params << " parameters, " << net.activation_neurons() << " activation neurons\n";
  j["parameters"] = params;
  j["layers"] = layers;
  j["notes"] = net.notes();
  if (!json_path.empty()) write_json(j, json_path);
  return 0;
}

int run_predict(const InputOptions& in, const std::string& json_path, bool quiet) {
  const cnncert::Network net = cnncert::import_onnx(in.model);
  print_notes(net);
  const cnncert::Preprocess pre = in.preprocess();
  const cnncert::ImageSet set = in.load();
  const std::vector<double> x = cnncert::preprocess(set, pre, net);
  const int64_t classes = net.output_size();
  std::vector<double> logits;
  constexpr int64_t kChunk = 256;  // bound the memory of intermediate activations
  for (int64_t first = 0; first < set.count; first += kChunk) {
    const int64_t n = std::min(kChunk, set.count - first);
    auto part = net.forward(x.data() + first * net.input_size(), n);
    logits.insert(logits.end(), part.begin(), part.end());
  }
  int64_t labelled = 0, correct = 0;
  json images = json::array();
  for (int64_t i = 0; i < set.count; ++i) {
    const double* l = logits.data() + i * classes;
    for (int64_t k = 0; k < classes; ++k)
      if (!std::isfinite(l[k])) throw InvalidArgument(set.source + ": image " + std::to_string(in.offset + i) + " gives a non-finite logit");
    const int64_t pred = std::max_element(l, l + classes) - l;
    const int64_t label = set.labels.empty() ? -1 : set.labels[static_cast<size_t>(i)];
    if (label >= 0) {
      ++labelled;
      correct += pred == label;
    }
    if (!quiet)
      std::cout << "image " << in.offset + i << ": predicted " << pred
                << (label >= 0 ? (" label " + std::to_string(label) + (pred == label ? "" : "  (misclassified)")) : "")
                << "\n";
    json j;
    j["image"] = in.offset + i;
    j["label"] = label;
    j["predicted"] = pred;
    j["logits"] = std::vector<double>(l, l + classes);
    images.push_back(j);
  }
  if (labelled > 0)
    std::cout << "accuracy: " << correct << "/" << labelled << " (" << std::fixed << std::setprecision(2)
              << 100.0 * static_cast<double>(correct) / static_cast<double>(labelled) << "%)\n";
  else
    std::cout << set.count << " images classified (no labels)\n";
  if (!json_path.empty()) {
    json j;
    j["model"] = in.model;
    j["images_file"] = in.images;
    j["count"] = set.count;
    j["labelled"] = labelled;
    j["correct"] = correct;
    j["accuracy"] = labelled ? static_cast<double>(correct) / static_cast<double>(labelled) : 0.0;
    j["images"] = images;
    write_json(j, json_path);
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"cnncert: certified robustness bounds for convolutional neural networks (CNN-Cert, Fast-Lin, CROWN, "
               "DeepCert, PROVEN)"};
  app.set_version_flag("--version", std::string("cnncert ") + cnncert::version());
  app.require_subcommand(1);

  std::string json_path;
  bool quiet = false;

  CLI::App* info = app.add_subcommand("info", "print the layer table of an ONNX model");
  std::string info_model;
  info->add_option("MODEL", info_model, "ONNX model file")->required();
  info->add_option("--json", json_path, "also write the table as JSON to this file ('-' = stdout)");

  CLI::App* predict = app.add_subcommand("predict", "classify images and report the accuracy");
  InputOptions pin;
  pin.add(*predict);
  predict->add_option("--json", json_path, "write per-image results as JSON to this file ('-' = stdout)");
  predict->add_flag("-q,--quiet", quiet, "print only the summary");

  CLI::App* gpu = app.add_subcommand("gpu", "report whether a usable GPU is present");

  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForVersion& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    app.exit(e);
    return kExitBadInput;
  }

  try {
    if (*info) return run_info(info_model, json_path);
    if (*predict) return run_predict(pin, json_path, quiet);
    if (*gpu) {
      std::cout << cnncert::cuda_device_info() << "\n";
      return cnncert::cuda_available() ? 0 : 1;
    }
  } catch (const cnncert::InternalError& e) {
    std::cerr << "cnncert: internal error (please report): " << e.what() << "\n";
    return 3;
  } catch (const cnncert::Error& e) {
    std::cerr << "cnncert: error: " << e.what() << "\n";
    return kExitBadInput;
  } catch (const std::bad_alloc&) {
    std::cerr << "cnncert: error: out of memory\n";
    return kExitBadInput;
  } catch (const std::exception& e) {
    std::cerr << "cnncert: error: " << e.what() << "\n";
    return kExitBadInput;
  }
  return 0;
}
