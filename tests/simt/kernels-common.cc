/* kernels/common.cu compiled for the SIMT emulator (simt-device.h). */
#include "common.cu"
