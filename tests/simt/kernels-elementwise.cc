/* kernels/elementwise.cu compiled for the SIMT emulator (simt-device.h). */
#include "elementwise.cu"
