"""wsesim: a wafer-scale dataflow simulator for quantized LLaMA-family models."""
__version__ = "0.1.0"
