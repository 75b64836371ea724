/* config.c: see config.h (being written) */
#include "config.h"
