"""rocobench: benchmark harness for compressed radiology vision-language models."""

__version__ = "0.1.0"
