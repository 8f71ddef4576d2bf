"""The evaluated data: the split as an `EvalSet`, ROCOv2's concept vocabulary, synthetic images."""
