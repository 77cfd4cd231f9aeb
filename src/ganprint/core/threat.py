"""What a p-value of `detect` and `attribute` covers, in the words every answer carries (CLI summary, service JSON).

The binomial p-value is exact for an image nobody tampered with; against an adversary who pastes or removes a
fingerprint it promises nothing (measured in docs/threat-model.md), so every reported decision says so.
"""

from __future__ import annotations

P_VALUE_COVERS = ("an untampered image: the chance that an image without this fingerprint matches as many bits "
                  "by luck; it does not bound forgery or removal by an adversary, see docs/threat-model.md")
