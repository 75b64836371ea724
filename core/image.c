/* image.c: see image.h (being written) */
#include "image.h"
