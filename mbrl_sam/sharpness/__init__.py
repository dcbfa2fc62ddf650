"""Sharpness of any loss closure: Hessian-vector products, spectra, SAM and Adam sharpness."""

from mbrl_sam.sharpness.hessian import LossProbe, flatten, unflatten
from mbrl_sam.sharpness.measures import (
    preconditioned_sharpness,
    sam_sharpness,
    top_eigenvalue,
)
from mbrl_sam.sharpness.spectrum import hutchinson_trace, lanczos, power_iteration

__all__ = [
    "LossProbe",
    "flatten",
    "hutchinson_trace",
    "lanczos",
    "power_iteration",
    "preconditioned_sharpness",
    "sam_sharpness",
    "top_eigenvalue",
    "unflatten",
]
