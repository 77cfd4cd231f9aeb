"""What every method's inference shares: the decoder adapter (`decoders`: every decoder export, PyTorch or ONNX
Runtime, with precision and image layout) and the scoring of decoded bits into detection and attribution rows
(`scoring`)."""
