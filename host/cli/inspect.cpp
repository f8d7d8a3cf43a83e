// The subcommands that look at a model or rewrite it: info, predict, convert, gpu.
#include <algorithm>
#include <cmath>
#include <iomanip>
#include <iostream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "cli/commands.hpp"
#include "cli/report.hpp"
#include "cnncert/cnncert.hpp"
#include "cnncert/convert.hpp"
#include "cnncert/cuda.hpp"

namespace cnncert::cli {

using json = nlohmann::json;

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

/// One layer's row of the table and its JSON entry.
json report_layer(const Node& n, size_t i, std::ostream& text) {
  const int64_t neurons = n.op == OpKind::Activation ? n.size() : 0;
  const std::string name = n.name.size() > 26 ? n.name.substr(0, 23) + "..." : n.name;
  const std::string op = n.onnx_op.size() > 24 ? n.onnx_op.substr(0, 21) + "..." : n.onnx_op;
  text << std::left << std::setw(4) << i << std::setw(28) << name << std::setw(26) << op << std::setw(18)
       << shape_str(n.shape) << std::setw(10) << n.parameter_count() << std::setw(10) << neurons << node_details(n)
       << "\n";
  return {{"index", i},
          {"name", n.name},
          {"kind", op_name(n.op)},
          {"onnx_op", n.onnx_op},
          {"shape", n.shape},
          {"inputs", n.inputs},
          {"parameters", n.parameter_count()},
          {"neurons", neurons},
          {"details", node_details(n)}};
}

/// The logits of every image, in chunks that bound the memory of the intermediate activations.
std::vector<double> forward_all(const Network& net, const std::vector<double>& x, int64_t count) {
  std::vector<double> logits;
  constexpr int64_t kChunk = 256;
  for (int64_t first = 0; first < count; first += kChunk) {
    const int64_t n = std::min(kChunk, count - first);
    auto part = net.forward(x.data() + first * net.input_size(), n);
    logits.insert(logits.end(), part.begin(), part.end());
  }
  return logits;
}

/// The accuracy line (predict's summary), and the warning when it is near chance (within a tenth of the way from
/// chance to perfect: 19 % for 10 classes, 55 % for 2).
void report_accuracy(int64_t correct, int64_t labelled, int64_t count, int64_t classes, Report& report) {
  if (labelled > 0)
    report.summary() << "accuracy: " << correct << "/" << labelled << " (" << std::fixed << std::setprecision(2)
                     << 100.0 * static_cast<double>(correct) / static_cast<double>(labelled) << "%)\n";
  else
    report.summary() << count << " images classified (no labels)\n";
  const double chance = 1.0 / static_cast<double>(std::max<int64_t>(classes, 1));
  if (classes >= 2 && labelled >= 20 &&
      static_cast<double>(correct) < (chance + 0.1 * (1 - chance)) * static_cast<double>(labelled))
    warn("the accuracy is near chance (" + std::to_string(classes) +
         " classes): is the input convention right? (--scale/--mean/--std/--layout, a sidecar; CSV pixel order: "
         "--csv-layout)");
}

}  // namespace

int run_info(const std::string& model, const std::string& json_path, bool quiet) {
  Report report(quiet, json_path);
  const Network net = import_onnx(model);
  report.notes(net);
  std::ostream& text = report.text();
  text << "model: " << model << "\n";
  text << std::left << std::setw(4) << "#" << std::setw(28) << "name" << std::setw(26) << "op" << std::setw(18)
       << "output shape" << std::setw(10) << "params" << std::setw(10) << "neurons"
       << "details\n";
  json layers = json::array();
  int64_t params = 0;
  for (size_t i = 0; i < net.nodes().size(); ++i) {
    params += net.nodes()[i].parameter_count();
    layers.push_back(report_layer(net.nodes()[i], i, text));
  }
  report.summary() << "input " << shape_str(net.input_shape()) << ", output " << shape_str(net.output_shape()) << ", "
                   << params << " parameters, " << net.activation_neurons() << " activation neurons\n";
  report.json({{"model", model},
               {"input_shape", net.input_shape()},
               {"output_shape", net.output_shape()},
               {"activation_neurons", net.activation_neurons()},
               {"parameters", params},
               {"layers", layers},
               {"notes", net.notes()}});
  report.commit();
  return 0;
}

int run_predict(const InputOptions& in, const std::string& json_path, bool quiet) {
  Report report(quiet, json_path);
  const Network net = import_onnx(in.model);
  report.notes(net);
  const Preprocess pre = in.preprocess();
  const ImageSet set = in.load(net);
  const std::vector<double> x = preprocess(set, pre, net);
  const int64_t classes = net.output_size();
  check_classes(set.labels, classes, in.offset, "label");
  const std::vector<double> logits = forward_all(net, x, set.count);
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
    report.text() << "image " << in.offset + i << ": predicted " << pred
                  << (label >= 0 ? (" label " + std::to_string(label) + (pred == label ? "" : "  (misclassified)"))
                                 : "")
                  << "\n";
    images.push_back({{"image", in.offset + i},
                      {"label", label},
                      {"predicted", pred},
                      {"logits", std::vector<double>(l, l + classes)}});
  }
  report_accuracy(correct, labelled, set.count, classes, report);
  report.json({{"model", in.model},
               {"images_file", in.images},
               {"count", set.count},
               {"labelled", labelled},
               {"correct", correct},
               {"accuracy", labelled ? static_cast<double>(correct) / static_cast<double>(labelled) : 0.0},
               {"images", images}});
  report.commit();
  return 0;
}

int run_convert(const std::string& model, const std::string& out_path, bool to_dense, bool quiet) {
  if (!to_dense) throw InvalidArgument("convert: nothing to do (use --to-dense)");
  if (out_path == "-" || out_path == "/dev/stdout") throw InvalidArgument("-o needs a file (the model is binary)");
  Report report(quiet);
  detail::OutputFile& out = report.add_output(out_path, "-o");
  const Network net = import_onnx(model);
  // Said before the unrolling, which can take minutes on such a model: an ONNX file is one
  // protobuf message, at most 2 GiB, and the weights are written as float32.
  double weights_out = 0;
  for (const Node& n : net.nodes()) {
    const bool unrolled = n.op == OpKind::Conv || n.op == OpKind::AvgPool;
    weights_out += unrolled ? static_cast<double>(n.size()) * static_cast<double>(net.node(n.inputs[0]).size() + 1)
                            : static_cast<double>(n.parameter_count());
  }
  if (4 * weights_out > kOnnxMaxBytes)
    throw InvalidArgument(model + ": the dense model would hold " + std::to_string(static_cast<int64_t>(weights_out)) +
                          " weights, " + std::to_string(static_cast<int64_t>(4 * weights_out / (1 << 20))) +
                          " MiB as float32: more than the 2 GiB an ONNX file can hold");
  const Network dense = convert_to_dense(net);
  out.stream() << export_onnx_bytes(dense);
  report.commit();
  int64_t weights = 0;
  for (const auto& n : dense.nodes()) weights += n.parameter_count();
  report.summary() << "wrote " << out_path << ": " << dense.nodes().size() << " nodes, " << weights << " parameters\n";
  return 0;
}

/// `gpu`: exit code 0 when a usable GPU is present, else 1.
int run_gpu(bool quiet) {
  Report report(quiet);
  report.summary() << cuda_device_info() << "\n";
  return cuda_available() ? 0 : 1;
}

}  // namespace cnncert::cli
