extern "C" int sam2_stub_attention (void) { return 0; }
