// The C interface's error strings (objaudio.h).
#include <cuda_runtime.h>

#include "objaudio.h"

extern "C" const char* objaudio_kernel_error_string(int code) {
  switch (code) {
    case OBJAUDIO_KERNEL_OK: return "ok";
    case OBJAUDIO_KERNEL_ERR_NULL_POINTER:
      return "a required pointer is NULL (or both/neither of k_vec and weights_in given)";
    case OBJAUDIO_KERNEL_ERR_BAD_SIZE: return "a size is out of range (see params.h)";
    case OBJAUDIO_KERNEL_ERR_BAD_DTYPE: return "unknown objaudio_kernel_dtype";
    default: return code > 0 ? cudaGetErrorString((cudaError_t)code) : "unknown objaudio kernel error";
  }
}
