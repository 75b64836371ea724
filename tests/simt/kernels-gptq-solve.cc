/* kernels/gptq-solve.cu compiled for the SIMT emulator (simt-device.h). */
#include "gptq-solve.cu"
