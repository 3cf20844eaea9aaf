"""Export: torch → ONNX, simplification, precision conversion of ONNX graphs."""
