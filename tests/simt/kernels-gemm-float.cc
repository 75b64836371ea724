/* kernels/gemm-float.cu compiled for the SIMT emulator (simt-device.h). */
#include "gemm-float.cu"
