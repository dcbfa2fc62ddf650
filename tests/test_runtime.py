"""Run-wide settings: matmul precision switches and restores; bad names fail clearly."""

import pytest
import torch

from mbrl_sam.errors import ConfigError
from mbrl_sam.runtime import matmul_precision


def bf16_products_here() -> bool:
    check = getattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", None)
    return bool(torch.backends.mkldnn.is_available() and check is not None and check())


def test_matmul_precision_is_restored_after_the_block_and_after_an_error():
    before = torch.get_float32_matmul_precision()
    with matmul_precision("medium"):
        assert torch.get_float32_matmul_precision() == "medium"
    assert torch.get_float32_matmul_precision() == before
    with pytest.raises(RuntimeError, match="inside"), matmul_precision("high"):
        raise RuntimeError("inside")
    assert torch.get_float32_matmul_precision() == before


def test_unknown_precision_names_the_value_and_the_choices():
    expected = "matmul_precision='low' is not valid; choose one of: 'highest', 'high', 'medium'"
    with pytest.raises(ConfigError, match=expected), matmul_precision("low"):
        pass


@pytest.mark.skipif(not bf16_products_here(), reason="this CPU has no bfloat16 matmul support")
def test_medium_precision_rounds_products_to_bfloat16_and_highest_does_not():
    a, b = torch.randn(256, 256, dtype=torch.float64), torch.randn(256, 256, dtype=torch.float64)
    exact = a @ b
    errors = {}
    for name in ("highest", "medium"):
        with matmul_precision(name):
            errors[name] = float((a.float() @ b.float() - exact).abs().max())
    # float32 products of 256 terms err by ~1e-5 here; bfloat16 inputs (8-bit mantissa) by ~1e-1.
    assert errors["highest"] < 1e-3 < errors["medium"] < 1.0
