"""Metrics: bits and p-values (`bits`), attribution, image quality."""
