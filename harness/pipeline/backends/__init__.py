"""Generation backends: transformers in this process (harness.generate), vLLM in a worker."""
