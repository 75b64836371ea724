/* kernels/layernorm-quant.cu compiled for the SIMT emulator (simt-device.h). */
#include "layernorm-quant.cu"
