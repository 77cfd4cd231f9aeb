"""Moved to `ganprint.perturb.scale_search` (below artificial/, whose detect uses it); this name stays until
the callers import it from there."""

from ganprint.perturb.scale_search import DEFAULT_SCALES, ScaleSearch, choose_scale, confidence, parse_scales, unzoom

__all__ = ["DEFAULT_SCALES", "ScaleSearch", "choose_scale", "confidence", "parse_scales", "unzoom"]
