"""ganprint: fingerprint generative models so that their images can be detected and attributed.

Implements Artificial Fingerprinting (Yu et al., ICCV 2021) and Scalable Fingerprinting
(Yu et al., ICLR 2022) in PyTorch.
"""

__version__ = "0.1.0"
