// A downstream program that links the installed library through find_package(cnncert).
#include <cnncert/cnncert.hpp>
#include <iostream>

int main() {
  cnncert::NetworkBuilder b;
  const int x = b.input({2});
  cnncert::DenseAttr d;
  d.in_features = 2;
  d.out_features = 1;
  d.weight = {1.0, -2.0};
  d.bias = {0.5};
  const int y = b.activation(b.dense(x, d), cnncert::ActKind::Relu);
  const cnncert::Network net = b.build(y);
  const double in[2] = {3.0, 1.0};
  const double out = net.forward(in, 1).at(0);  // relu(3 - 2 + 0.5) = 1.5
  std::cout << "cnncert " << cnncert::version() << " consumer: " << out << "\n";
  // The CUDA plugin, when installed, is found beside the installed library.
  std::cout << "cuda engine: " << cnncert::cuda_compiled() << " (" << cnncert::cuda_device_info() << ")\n";
  return out == 1.5 ? 0 : 1;
}
