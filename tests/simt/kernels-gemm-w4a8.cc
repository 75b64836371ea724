/* kernels/gemm-w4a8.cu compiled for the SIMT emulator (simt-device.h). */
#include "gemm-w4a8.cu"
