/* kernels/attention-bf16.cu compiled for the SIMT emulator (simt-device.h). */
#include "attention-bf16.cu"
