#include "gpu_test_util.hpp"

namespace cnncert::test {

TEST_F(GpuTest, DeviceIsReported) {
  const std::string info = cuda_device_info();
  EXPECT_EQ(info.find("no usable GPU"), std::string::npos) << info;
  EXPECT_TRUE(cuda_compiled());
}

TEST_F(GpuTest, SmokeKernelMatchesCpu) {
  EXPECT_EQ(cuda_smoke_test(), "");
}

TEST(GpuBuild, StateIsConsistent) {
  // Without the CUDA engine compiled in, no GPU can be reported usable.
  if (!cuda_compiled()) EXPECT_FALSE(cuda_available());
  EXPECT_FALSE(cuda_device_info().empty());
}

}  // namespace cnncert::test
