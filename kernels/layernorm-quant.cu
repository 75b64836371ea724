extern "C" int sam2_stub_layernorm_quant (void) { return 0; }
