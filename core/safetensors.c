/* safetensors.c: see safetensors.h (being written) */
#include "safetensors.h"
