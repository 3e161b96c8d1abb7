"""Compression stages: prune, quantize (AWQ/GPTQ), gguf export + llama.cpp quant types, zstd pack."""
