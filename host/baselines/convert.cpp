// Conv/AvgPool → dense rewrite (the Fast-Lin baseline's network).
#include "cnncert/convert.hpp"

#include "cnncert/error.hpp"

namespace cnncert {

Network convert_to_dense(const Network& net, int64_t max_weights) {
  NetworkBuilder b;
  std::vector<int> id(net.nodes().size(), -1);
  for (size_t k = 0; k < net.nodes().size(); ++k) {
    const Node& n = net.nodes()[k];
    const NetworkBuilder::Info info{n.name, n.onnx_op};
    auto in = [&](size_t i) { return id[static_cast<size_t>(n.inputs[i])]; };
    switch (n.op) {
      case OpKind::Input: id[k] = b.input(n.shape, info); break;
      case OpKind::Conv:
      case OpKind::AvgPool: {
        const Node& src = net.node(n.inputs[0]);
        const int64_t rows = n.size(), cols = src.size();
        CNNCERT_CHECK(rows * cols <= max_weights, "node '" << n.name << "': a dense " << rows << " x " << cols
                                                           << " matrix is too large to convert");
        // Column j of the matrix is the (bias-free) response to the unit vector e_j.
        NetworkBuilder one;
        const int x = one.input(src.shape);
        int y;
        std::vector<double> bias(static_cast<size_t>(rows), 0.0);
        if (n.op == OpKind::Conv) {
          ConvAttr c = n.as<ConvAttr>();
          for (int64_t o = 0; o < c.out_channels; ++o)
            for (int64_t p = 0; p < rows / c.out_channels; ++p)
              bias[static_cast<size_t>(o * (rows / c.out_channels) + p)] = c.bias[static_cast<size_t>(o)];
          std::fill(c.bias.begin(), c.bias.end(), 0.0);
          y = one.conv(x, c);
        } else {
          y = one.avg_pool(x, n.as<PoolAttr>());
        }
        const Network unit = one.build(y);
        DenseAttr d;
        d.out_features = rows;
        d.in_features = cols;
        d.weight.assign(static_cast<size_t>(rows * cols), 0.0);
        d.bias = bias;
        std::vector<double> e(static_cast<size_t>(cols), 0.0);
        for (int64_t j = 0; j < cols; ++j) {
          e[static_cast<size_t>(j)] = 1.0;
          const auto col = unit.forward(e.data(), 1);
          for (int64_t r = 0; r < rows; ++r) d.weight[static_cast<size_t>(r * cols + j)] = col[static_cast<size_t>(r)];
          e[static_cast<size_t>(j)] = 0.0;
        }
        const int dense = b.dense(in(0), std::move(d), {n.name + "/dense", n.onnx_op});
        id[k] = b.reshape(dense, n.shape, info);
        break;
      }
      case OpKind::Dense: id[k] = b.dense(in(0), n.as<DenseAttr>(), info); break;
      case OpKind::ScaleShift: id[k] = b.scale_shift(in(0), n.as<ScaleShiftAttr>(), info); break;
      case OpKind::Activation: id[k] = b.activation(in(0), n.as<ActAttr>().kind, n.as<ActAttr>().alpha, info); break;
      case OpKind::MaxPool: id[k] = b.max_pool(in(0), n.as<PoolAttr>(), info); break;
      case OpKind::Add: id[k] = b.add(in(0), in(1), info); break;
      case OpKind::Reshape: id[k] = b.reshape(in(0), n.shape, info); break;
      case OpKind::Transpose: id[k] = b.transpose(in(0), n.as<TransposeAttr>().perm, info); break;
      case OpKind::Pad: id[k] = b.pad(in(0), n.as<PadAttr>().begin, n.as<PadAttr>().end, info); break;
    }
  }
  for (const auto& note : net.notes()) b.note(note);
  b.source(net.source() + " (converted to dense)");
  return b.build(id[static_cast<size_t>(net.output())]);
}

}  // namespace cnncert
