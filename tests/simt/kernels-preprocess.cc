/* kernels/preprocess.cu compiled for the SIMT emulator (simt-device.h). */
#include "preprocess.cu"
