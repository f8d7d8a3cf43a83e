#include "cnncert/error.hpp"
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

TEST_F(GpuTest, SelectingADeviceChecksItsOrdinal) {
  // cnncert certify --devices gpu under MPI selects local rank mod device count.
  const int n = cuda_device_count();
  ASSERT_GE(n, 1);
  EXPECT_NO_THROW(cuda_use_device(n - 1));
  EXPECT_NO_THROW(cuda_use_device(0));
  EXPECT_THROW(cuda_use_device(n), InvalidArgument);
  EXPECT_THROW(cuda_use_device(-1), InvalidArgument);
  // a refused ordinal leaves no error behind for the next launch
  EXPECT_EQ(cuda_smoke_test(), "");
}

TEST(GpuBuild, StateIsConsistent) {
  // Without the CUDA engine compiled in, no GPU can be reported usable.
  if (!cuda_compiled()) EXPECT_FALSE(cuda_available());
  EXPECT_FALSE(cuda_device_info().empty());
}

}  // namespace cnncert::test
