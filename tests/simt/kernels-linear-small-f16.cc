/* kernels/linear-small-f16.cu compiled for the SIMT emulator (simt-device.h). */
#include "linear-small-f16.cu"
