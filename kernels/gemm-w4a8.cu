extern "C" int sam2_stub_gemm_w4a8 (void) { return 0; }
