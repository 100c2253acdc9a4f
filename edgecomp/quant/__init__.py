"""Quantization algorithm cores: grids and packing, activation fake-quant, GPTQ, compensation, reconstruction."""
