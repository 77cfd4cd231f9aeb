"""What every method runs its trained networks with (floor 2, below the method packages): one decoder adapter for
every decoder export, PyTorch or ONNX Runtime (`decoders`), device, precision and layout (`layout`), the image
stream (`stream`), the batch writer (`writer`), the process supervisor (`jobs`), seeds to images (`generation`)
and the scoring of decoded bits into detection and attribution rows (`scoring`)."""
