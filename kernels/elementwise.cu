extern "C" int sam2_stub_elementwise (void) { return 0; }
