/* kernels/window.cu compiled for the SIMT emulator (simt-device.h). */
#include "window.cu"
