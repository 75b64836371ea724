/* kernels/calib.cu compiled for the SIMT emulator (simt-device.h). */
#include "calib.cu"
