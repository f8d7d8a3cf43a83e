// The subcommands that look at a model or rewrite it: info, predict, convert, gpu.
#include <algorithm>
#include <cmath>
#include <iomanip>
#include <iostream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "cli/commands.hpp"
#include "cnncert/cnncert.hpp"
#include "cnncert/convert.hpp"
#include "cnncert/cuda.hpp"
#include "io/output_file.hpp"

namespace cnncert::cli {

using json = nlohmann::json;
using detail::OutputFile;

namespace {

std::string node_details(const Node& n) {
  std::ostringstream os;
  switch (n.op) {
    case OpKind::Conv: {
      const auto& a = n.as<ConvAttr>();
      os << a.kernel_h << "x" << a.kernel_w << " s" << a.stride_h << "," << a.stride_w << " p" << a.pad_top << ","
         << a.pad_left << "," << a.pad_bottom << "," << a.pad_right;
      if (a.dilation_h != 1 || a.dilation_w != 1) os << " d" << a.dilation_h << "," << a.dilation_w;
      if (a.groups != 1) os << " g" << a.groups;
      break;
    }
    case OpKind::Dense: {
      const auto& a = n.as<DenseAttr>();
      os << a.in_features << "->" << a.out_features;
      break;
    }
    case OpKind::Activation: os << act_name(n.as<ActAttr>().kind); break;
    case OpKind::MaxPool:
    case OpKind::AvgPool: {
      const auto& a = n.as<PoolAttr>();
      os << a.kernel_h << "x" << a.kernel_w << " s" << a.stride_h << "," << a.stride_w << " p" << a.pad_top << ","
         << a.pad_left << "," << a.pad_bottom << "," << a.pad_right;
      if (n.op == OpKind::AvgPool && a.count_include_pad) os << " incl-pad";
      break;
    }
    default: break;
  }
  return os.str();
}

}  // namespace

int run_info(const std::string& model, const std::string& json_path) {
  OutputFile json_out(json_path, "--json");
  const Network net = import_onnx(model);
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
            << "output shape" << std::setw(10) << "params" << std::setw(10) << "neurons"
            << "details\n";
  for (size_t i = 0; i < net.nodes().size(); ++i) {
    const Node& n = net.nodes()[i];
    const int64_t neurons = n.op == OpKind::Activation ? n.size() : 0;
    params += n.parameter_count();
    std::string name = n.name.size() > 26 ? n.name.substr(0, 23) + "..." : n.name;
    std::string op = n.onnx_op.size() > 24 ? n.onnx_op.substr(0, 21) + "..." : n.onnx_op;
    std::cout << std::left << std::setw(4) << i << std::setw(28) << name << std::setw(26) << op << std::setw(18)
              << shape_str(n.shape) << std::setw(10) << n.parameter_count() << std::setw(10) << neurons
              << node_details(n) << "\n";
    json l;
    l["index"] = i;
    l["name"] = n.name;
    l["kind"] = op_name(n.op);
    l["onnx_op"] = n.onnx_op;
    l["shape"] = n.shape;
    l["inputs"] = n.inputs;
    l["parameters"] = n.parameter_count();
    l["neurons"] = neurons;
    l["details"] = node_details(n);
    layers.push_back(l);
  }
  std::cout << "input " << shape_str(net.input_shape()) << ", output " << shape_str(net.output_shape()) << ", "
            << params << " parameters, " << net.activation_neurons() << " activation neurons\n";
  j["parameters"] = params;
  j["layers"] = layers;
  j["notes"] = net.notes();
  if (json_out.enabled()) write_json(j, json_out);
  return 0;
}

int run_predict(const InputOptions& in, const std::string& json_path, bool quiet) {
  OutputFile json_out(json_path, "--json");
  const Network net = import_onnx(in.model);
  print_notes(net);
  const Preprocess pre = in.preprocess();
  const ImageSet set = in.load(net);
  const std::vector<double> x = preprocess(set, pre, net);
  const int64_t classes = net.output_size();
  check_classes(set.labels, classes, in.offset, "label");
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
      if (!std::isfinite(l[k]))
        throw InvalidArgument(set.source + ": image " + std::to_string(in.offset + i) + " gives a non-finite logit");
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
  // "Near chance": within a tenth of the way from chance to perfect (19 % for 10 classes, 55 % for 2).
  const double chance = 1.0 / static_cast<double>(std::max<int64_t>(classes, 1));
  if (classes >= 2 && labelled >= 20 &&
      static_cast<double>(correct) < (chance + 0.1 * (1 - chance)) * static_cast<double>(labelled))
    std::cerr << "cnncert: warning: the accuracy is near chance (" << classes
              << " classes): is the input convention right? "
              << "(--scale/--mean/--std/--layout, a sidecar; CSV pixel order: --csv-layout)\n";
  if (!json_path.empty()) {
    json j;
    j["model"] = in.model;
    j["images_file"] = in.images;
    j["count"] = set.count;
    j["labelled"] = labelled;
    j["correct"] = correct;
    j["accuracy"] = labelled ? static_cast<double>(correct) / static_cast<double>(labelled) : 0.0;
    j["images"] = images;
    write_json(j, json_out);
  }
  return 0;
}

int run_convert(const std::string& model, const std::string& out_path, bool to_dense) {
  if (!to_dense) throw InvalidArgument("convert: nothing to do (use --to-dense)");
  if (out_path == "-" || out_path == "/dev/stdout") throw InvalidArgument("-o needs a file (the model is binary)");
  OutputFile out(out_path, "-o");
  const Network net = import_onnx(model);
  const Network dense = convert_to_dense(net);
  out.stream() << export_onnx_bytes(dense);
  out.commit();
  int64_t weights = 0;
  for (const auto& n : dense.nodes()) weights += n.parameter_count();
  std::cout << "wrote " << out_path << ": " << dense.nodes().size() << " nodes, " << weights << " parameters\n";
  return 0;
}

/// `gpu`: exit code 0 when a usable GPU is present, else 1.
int run_gpu() {
  std::cout << cuda_device_info() << "\n";
  return cuda_available() ? 0 : 1;
}

}  // namespace cnncert::cli
