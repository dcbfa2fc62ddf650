"""What a planner asks of a latent model: the value of candidate action sequences, and action
sequences proposed by rolling a policy out (both through `imagine`)."""

from __future__ import annotations

from collections.abc import Callable

from torch import Tensor

from mbrl_sam.imagination import LatentModel, Policy, State, discounted_value, expand_state, imagine


def policy_proposals(
    model: LatentModel, start: State, count: int, horizon: int, policy: Policy
) -> Tensor | None:
    """`count` action sequences (count, H, A) from rolling `policy` out from one state; None
    when none are asked for."""
    if count == 0:
        return None
    traj = imagine(model, expand_state(start, count), horizon, policy=policy, outcomes=False)
    return traj.action.transpose(0, 1)


def model_value(
    model: LatentModel,
    start: State,
    actions: Tensor,
    discount: float,
    terminal_value: Callable[[Tensor], Tensor],
    hard_continue: bool = False,
) -> Tensor:
    """The discounted model return (N,) of action sequences (N, H, A) from one state, closed by
    `terminal_value` of the last state's features. `hard_continue`: a step predicted terminal
    (continue < 0.5) ends the return for good, as TD-MPC2 plans."""
    traj = imagine(
        model,
        expand_state(start, actions.shape[0]),
        actions.shape[1],
        actions=actions.transpose(0, 1),
    )
    cont = (traj.cont >= 0.5).float() if hard_continue else traj.cont
    return discounted_value(traj.reward, cont, terminal_value(traj.feat[-1]), discount)
