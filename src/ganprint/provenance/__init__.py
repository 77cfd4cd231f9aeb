"""Provenance records outside ganprint's own files: C2PA manifests whose soft binding is a ganprint fingerprint.

- `softbinding`: the soft-binding algorithm identifiers, how a fingerprint is written as a binding value, and the
  rule that decides whether a decoded value matches a registered record.
- `c2pa`: signing the images that `ganprint generate` (an issued model) or `ganprint embed` wrote with a C2PA
  manifest carrying that soft binding, and keeping each manifest store in the registry (the `c2pa` extra).
"""
