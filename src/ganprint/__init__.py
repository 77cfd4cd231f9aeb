"""ganprint: fingerprint generative models so that their images can be detected and attributed.

Implements Artificial Fingerprinting (Yu et al., ICCV 2021) and Scalable Fingerprinting (Yu et al., ICLR 2022)
in PyTorch. The public API:

    import ganprint
    ganprint.samples(...)                       sample data from photos shipped in installed packages
    ganprint.train(ganprint.config("artificial", "demo-32", data=...), outdir)   -> Path of the export
                                                (also "gan", "scalable", "diffusion")
    ganprint.embed(...), ganprint.detect(...)   artificial fingerprints
    ganprint.generate(...)                      images from any generator export
    ganprint.issue(...), ganprint.attribute(...)   scalable fingerprints
    ganprint.evaluate(...), ganprint.load(path)
    ganprint.load_detector(path, fingerprint=...).detect(images)   check images in memory (also ONNX, without torch)

The names are resolved on first use, so `import ganprint` stays as light as the CLI's help needs; the verifier's
names come from `ganprint.verification.detector`, not from the API module, so that they import no torch.
"""

from ganprint._version import __version__

__all__ = ["AttributeSpec", "DetectSpec", "Detector", "DetectorOptions", "EmbedSpec", "EvaluateSpec", "GenerateSpec",
           "attribute", "config", "detect", "embed", "evaluate", "generate", "issue", "load", "load_detector", "samples",
           "train"]
_VERIFIER = ("Detector", "DetectorOptions", "load_detector")


def __getattr__(name: str):
    if name in _VERIFIER:
        from ganprint.verification import detector

        return getattr(detector, name)
    if name in __all__:
        from ganprint import api

        return getattr(api, name)
    raise AttributeError(f"module 'ganprint' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
