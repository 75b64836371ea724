extern "C" int sam2_stub_common (void) { return 0; }
