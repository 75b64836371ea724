/* kernels/gptq.cu compiled for the SIMT emulator (simt-device.h). */
#include "gptq.cu"
