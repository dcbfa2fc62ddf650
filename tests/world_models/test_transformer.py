"""The causal transformer: masking, the KV cache, and second derivatives through attention."""

import torch

from mbrl_sam.world_models.transformer import CausalTransformer, empty_cache, segment_mask


def model(dropout: float = 0.0) -> CausalTransformer:
    torch.manual_seed(0)
    return CausalTransformer(dim=16, layers=2, heads=4, ffn=32, dropout=dropout, max_len=12).eval()


def causal(length: int) -> torch.Tensor:
    return torch.ones(1, length, length, dtype=torch.bool).tril()


def test_a_later_token_cannot_change_an_earlier_output():
    net = model()
    x = torch.randn(3, 10, 16)
    out, _, _ = net(x, causal(10))
    changed = x.clone()
    changed[:, 6:] += torch.randn(3, 4, 16) * 5
    out2, _, _ = net(changed, causal(10))
    torch.testing.assert_close(out2[:, :6], out[:, :6], rtol=0, atol=0)
    assert (out2[:, 6:] - out[:, 6:]).abs().amax() > 0.1


def test_attention_never_crosses_an_episode_start():
    is_first = torch.zeros(2, 10, dtype=torch.bool)
    is_first[:, 0] = True
    is_first[0, 4] = True  # sequence 0: a new episode from step 4
    mask = segment_mask(is_first)
    assert mask[0, 4].tolist() == [False] * 4 + [True] + [False] * 5
    assert mask[1].equal(causal(10)[0])
    net = model()
    x = torch.randn(2, 10, 16)
    out, _, _ = net(x, mask)
    changed = x.clone()
    changed[0, :4] += 3.0  # the first episode of sequence 0
    out2, _, _ = net(changed, mask)
    torch.testing.assert_close(out2[0, 4:], out[0, 4:], rtol=0, atol=0)
    # The same tokens alone at positions 0..5 differ: a position is where a token sits.
    alone, _, _ = net(x[:1, 4:], causal(6))
    assert (alone[0] - out[0, 4:]).abs().amax() > 1e-3


def test_cached_steps_equal_the_whole_sequence_at_once():
    net = model()
    x = torch.randn(2, 9, 16)
    full, _, _ = net(x, causal(9))
    context = 4
    _, keys, values = net(x[:, :context], causal(context))
    # Three rollouts per sequence, each seeing the whole context (S = 3 share its keys).
    rollouts = 3
    mask = torch.ones(2 * rollouts, context, dtype=torch.bool)
    pos = torch.full((2 * rollouts,), context)
    cache = empty_cache(keys, values, mask, pos)
    for t in range(context, 9):
        h, cache = net.step(x[:, t].repeat_interleave(rollouts, 0), cache)
        torch.testing.assert_close(h, full[:, t].repeat_interleave(rollouts, 0), atol=1e-5, rtol=0)
    assert cache["own_k1"].shape == (2 * rollouts, 4, 9 - context, 4)
    assert cache["pos"].tolist() == [9] * 6


def test_a_context_mask_hides_keys_as_a_shorter_sequence_would():
    net = model()
    x = torch.randn(1, 7, 16)
    _, keys, values = net(x[:, :5], causal(5))
    # Two rollouts share the context: the first sees keys 0..4, the second none of them.
    mask = torch.tensor([[True] * 5, [False] * 5])
    cache = empty_cache(keys, values, mask, torch.tensor([5, 5]))
    h, _ = net.step(x[0, 5:6].expand(2, -1), cache)
    full, _, _ = net(x[:, :6], causal(6))
    torch.testing.assert_close(h[0], full[0, 5], atol=1e-5, rtol=0)
    only_itself = torch.eye(6, dtype=torch.bool)[None] | torch.zeros(1, 6, 6, dtype=torch.bool)
    alone, _, _ = net(x[:, :6], only_itself)
    torch.testing.assert_close(h[1], alone[0, 5], atol=1e-5, rtol=0)


def test_attention_has_second_derivatives():
    """Hessian-vector products through attention (the sharpness tools need them) match a
    central difference of gradients (in float64, where the difference is accurate)."""
    net = model().double()
    x = torch.randn(2, 6, 16, dtype=torch.float64)
    params = list(net.parameters())

    def grads(create_graph=False):
        out, _, _ = net(x, causal(6))
        return torch.autograd.grad(out.pow(2).sum(), params, create_graph=create_graph)

    v = [torch.randn_like(p) for p in params]
    g = grads(create_graph=True)
    hv = torch.autograd.grad(sum((a * b).sum() for a, b in zip(g, v)), params)
    eps = 1e-6
    with torch.no_grad():
        for p, d in zip(params, v):
            p.add_(eps * d)
    plus = grads()
    with torch.no_grad():
        for p, d in zip(params, v):
            p.sub_(2 * eps * d)
    minus = grads()
    for h, a, b in zip(hv, plus, minus):
        torch.testing.assert_close(h, (a - b) / (2 * eps), atol=1e-6, rtol=1e-5)
