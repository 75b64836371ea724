extern "C" int sam2_stub_window (void) { return 0; }
