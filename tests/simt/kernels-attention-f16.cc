/* kernels/attention-f16.cu compiled for the SIMT emulator (simt-device.h). */
#include "attention-f16.cu"
