// CudaError and the status of each CUDA error (ERR3, R3): the sticky errors, which leave the
// context corrupt, map to VG_ERR_CUDA_STICKY; the others keep their statuses. No GPU needed.
#include "vramguard/error.hpp"

#include <cuda_runtime_api.h>
#include <gtest/gtest.h>

#include <string>

#include "vramguard.h"

using namespace vramguard;

namespace {

// Written out here, not taken from the product: the list the documentation gives (driver_types.h,
// "the process must be terminated and relaunched"), plus cudaErrorECCUncorrectable.
constexpr cudaError_t kSticky[] = {
    cudaErrorECCUncorrectable,
    cudaErrorContained,
    cudaErrorIllegalAddress,
    cudaErrorLaunchTimeout,
    cudaErrorAssert,
    cudaErrorHardwareStackError,
    cudaErrorIllegalInstruction,
    cudaErrorMisalignedAddress,
    cudaErrorInvalidAddressSpace,
    cudaErrorInvalidPc,
    cudaErrorLaunchFailure,
    cudaErrorTensorMemoryLeak,
    cudaErrorMpsClientTerminated,
    cudaErrorExternalDevice,
};

}  // namespace

TEST(CudaErrorStatus, StickyErrorsMapToStickyStatus) {
  for (const cudaError_t code : kSticky) {
    const int value = static_cast<int>(code);
    EXPECT_TRUE(is_sticky_cuda_error(value)) << cudaGetErrorName(code);
    EXPECT_EQ(status_for_cuda_error(value), VG_ERR_CUDA_STICKY) << cudaGetErrorName(code);
    const CudaError error(value, "cudaDeviceSynchronize()");
    EXPECT_TRUE(error.is_sticky()) << cudaGetErrorName(code);
    EXPECT_EQ(error.status(), VG_ERR_CUDA_STICKY);
    EXPECT_EQ(error.cuda_code(), value);
    EXPECT_NE(std::string(error.what()).find(cudaGetErrorName(code)), std::string::npos)
        << error.what();
  }
}

TEST(CudaErrorStatus, EveryOtherErrorIsNotSticky) {
  // Every code the runtime knows, 1..1000, outside the list: not sticky, and mapped as before.
  for (int value = 1; value <= 1000; ++value) {
    bool listed = false;
    for (const cudaError_t code : kSticky) listed = listed || static_cast<int>(code) == value;
    if (listed) continue;
    EXPECT_FALSE(is_sticky_cuda_error(value)) << value;
    EXPECT_NE(status_for_cuda_error(value), VG_ERR_CUDA_STICKY) << value;
    EXPECT_FALSE(CudaError(value, "call").is_sticky()) << value;
  }
  EXPECT_EQ(status_for_cuda_error(cudaErrorUnknown), VG_ERR_CUDA);
  EXPECT_EQ(status_for_cuda_error(cudaErrorNvlinkUncorrectable), VG_ERR_CUDA);
  EXPECT_EQ(status_for_cuda_error(cudaErrorInvalidValue), VG_ERR_CUDA);
  EXPECT_EQ(status_for_cuda_error(cudaErrorMemoryAllocation), VG_ERR_OUT_OF_MEMORY);
  EXPECT_EQ(status_for_cuda_error(cudaErrorInsufficientDriver), VG_ERR_NO_DEVICE);
  EXPECT_EQ(status_for_cuda_error(cudaErrorNoDevice), VG_ERR_NO_DEVICE);
  EXPECT_EQ(status_for_cuda_error(cudaErrorInvalidDevice), VG_ERR_INVALID_DEVICE);
  EXPECT_EQ(status_for_cuda_error(cudaSuccess), VG_OK);
}

TEST(CudaErrorStatus, NewStatusesHaveNamesAndStableValues) {
  EXPECT_EQ(VG_ERR_TIMEOUT, 15);
  EXPECT_EQ(VG_ERR_CUDA_STICKY, 16);
  EXPECT_STREQ(vg_status_name(VG_ERR_TIMEOUT), "VG_ERR_TIMEOUT");
  EXPECT_STREQ(vg_status_name(VG_ERR_CUDA_STICKY), "VG_ERR_CUDA_STICKY");
  EXPECT_EQ(VG_ERR_IO, 17);
  EXPECT_EQ(VG_ERR_FILE_CHANGED, 18);
  EXPECT_EQ(VG_ERR_WEIGHTS_CORRUPTED, 19);
  EXPECT_STREQ(vg_status_name(VG_ERR_IO), "VG_ERR_IO");
  EXPECT_STREQ(vg_status_name(VG_ERR_FILE_CHANGED), "VG_ERR_FILE_CHANGED");
  EXPECT_STREQ(vg_status_name(VG_ERR_WEIGHTS_CORRUPTED), "VG_ERR_WEIGHTS_CORRUPTED");
  EXPECT_EQ(VG_ERR_NOT_READABLE, 20);
  EXPECT_STREQ(vg_status_name(VG_ERR_NOT_READABLE), "VG_ERR_NOT_READABLE");
  EXPECT_STREQ(vg_status_name(21), "VG_STATUS_UNKNOWN");
}
