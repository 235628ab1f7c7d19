"""Flash attention's memory-saving eager path (in-place tiles, output written over the query rows)
gives the standard attention's values, and the exported graph stays free of in-place ops."""

from __future__ import annotations

import torch

from tinyexport.models.llama import attend_standard, make_attend_flash

from .bounds import FLASH_VS_STANDARD_DECODE_MAX_ABS


def _inputs(rows: int = 10, keys: int = 10):
    torch.manual_seed(0)
    q, k, v = torch.randn(1, 2, rows, 8), torch.randn(1, 2, keys, 8), torch.randn(1, 2, keys, 8)
    mask = torch.arange(keys)[None, :] <= torch.arange(rows)[:, None]
    return q, k, v, mask


def test_eager_flash_writes_over_q_and_equals_standard():
    q, k, v, mask = _inputs()
    expected = attend_standard(q, k, v, mask, 0.25)
    query = q.clone()
    out = make_attend_flash(4)(query, k, v, mask, 0.25)
    assert out.data_ptr() == query.data_ptr()  # no full-size output allocated
    assert (out - expected).abs().max().item() <= FLASH_VS_STANDARD_DECODE_MAX_ABS


def test_flash_falls_back_when_q_cannot_hold_the_output():
    q, k, v, mask = _inputs()
    expected = attend_standard(q, k, v, mask, 0.25)
    wide = q.transpose(-1, -2).contiguous().transpose(-1, -2)  # same values, not contiguous
    out = make_attend_flash(4)(wide, k, v, mask, 0.25)
    assert out.data_ptr() != wide.data_ptr() and torch.equal(wide, q)  # the input is left alone
    assert (out - expected).abs().max().item() <= FLASH_VS_STANDARD_DECODE_MAX_ABS


def test_exported_flash_has_no_in_place_ops_and_equals_standard():
    attend = make_attend_flash(4)

    class Attend(torch.nn.Module):
        def forward(self, q, k, v, mask):
            return attend(q, k, v, mask, 0.25)

    q, k, v, mask = _inputs()
    program = torch.export.export(Attend(), (q.clone(), k, v, mask))
    targets = [str(n.target) for n in program.graph.nodes if n.op == "call_function"]
    assert not [t for t in targets if t.split(".")[-2].endswith("_")], targets
    query = q.clone()
    out = program.module()(query, k, v, mask)
    assert torch.equal(query, q)  # the exported graph does not write into its input
    assert (out - attend_standard(q, k, v, mask, 0.25)).abs().max().item() <= FLASH_VS_STANDARD_DECODE_MAX_ABS
