/* kernels/attention.cu compiled for the SIMT emulator (simt-device.h). */
#include "attention.cu"
