/* hub.c: see hub.h (being written) */
#include "hub.h"
