"""Bit accuracy and pixel differences of embed/detect in fp32 vs bf16 with a trained model (RESULTS-embed-detect.md).

    python benchmarks/precision_check.py MODEL HELDOUT_DIR WORKDIR
"""

import sys
from pathlib import Path

import numpy as np

from ganprint import api
from ganprint.core.images import read_image

model, data, work = sys.argv[1], sys.argv[2], Path(sys.argv[3])
for prec in ("fp32", "bf16"):
    s = api.embed(model, data, work / prec, identical=True, device="cpu", check=True, precision=prec)
    for dp in ("fp32", "bf16"):
        r = api.detect(model, work / prec / "fingerprinted_images", work / f"det-{prec}-{dp}", device="cpu",
                       embedded=work / prec / "embedded_fingerprints.txt", precision=dp)
        print(f"embedded {prec}, decoded {dp}: bit accuracy {r['mean_bit_accuracy']:.5f}")
names = sorted(p.name for p in (work / "fp32" / "fingerprinted_images").glob("*.png"))
diff = np.stack([np.abs(read_image(work / "fp32" / "fingerprinted_images" / n).astype(int)
                        - read_image(work / "bf16" / "fingerprinted_images" / n).astype(int)) for n in names])
print(f"pixels: max difference {diff.max()} levels, share differing {(diff > 0).mean():.3f}")
