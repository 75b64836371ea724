extern "C" int sam2_stub_gemm_float (void) { return 0; }
