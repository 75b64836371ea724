/* errors.c: the library's GError domain. */
#include "sam2.h"

G_DEFINE_QUARK (sam2-error-quark, sam2_error)
