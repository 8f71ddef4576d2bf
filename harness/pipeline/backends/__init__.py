"""Generation backends: transformers in this process (`harness.pipeline.generate`), vLLM in a
worker process (`vllm`)."""
