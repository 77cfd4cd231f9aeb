"""What every method runs its trained networks with: decoder adapters, the image stream, the batch writer, the
process supervisor, and the scoring of decoded bits (floor 2, below the method packages)."""
