#include "backend.h"
int sam2_backend_cuda_stub (void);
int sam2_backend_cuda_stub (void) { return 0; }
