"""The one decode loop. Every caller that feeds a runner token by token goes through ``decode_steps``:
verify (the reference's greedy trace, candidates teacher-forced on it), eval (last-position-only
runners scored token by token), bench (timed steps), generate/chat (sampling, streaming) and
speculative decoding (draft proposals).

``decode_steps`` prefills the prompt, then yields one ``Step`` per new token: the logits it was chosen
from, the token, and how long the call that produced those logits took. Step 0's logits come from the
prefill (its time is the prefill's); every later step's from one ``decode`` call. The token of each
step is picked by ``choose`` (greedy by default) or taken from ``forced`` (teacher forcing); the loop
stops after ``max_new_tokens`` steps or after yielding a stop id. The last step's token is never
decoded: the caller has what it asked for. Nothing here imports torch.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from .base import Runner

Chooser = Callable[[np.ndarray], int]


def greedy(logits: np.ndarray) -> int:
    return int(np.argmax(logits))


@dataclass(frozen=True)
class Step:
    index: int  # 0: chosen from the prefill's last-position logits
    token: int  # the token this step emits (chosen, or forced)
    logits: np.ndarray  # (V,) the logits that token was chosen from (for forced tokens: the runner's own)
    seconds: float  # wall time of the prefill (step 0) or of the decode call (later steps)

    @property
    def own_choice(self) -> int:
        """What greedy decoding would have picked here (differs from ``token`` only under forcing)."""
        return int(np.argmax(self.logits))


def decode_steps(
    runner: Runner,
    prompt: np.ndarray,
    max_new_tokens: int,
    choose: Chooser = greedy,
    *,
    forced: Sequence[int] | None = None,
    stop_ids: Iterable[int] = (),
    reset: bool = True,
    on_prefill: Callable[[np.ndarray, float], None] | None = None,
) -> Iterator[Step]:
    """Prefill ``prompt`` (after ``runner.reset()`` unless ``reset=False``) and yield up to
    ``max_new_tokens`` steps. ``on_prefill(logits, seconds)`` sees the prefill's whole logits array."""
    if forced is not None and len(forced) < max_new_tokens:
        raise ValueError(f"forced has {len(forced)} tokens, fewer than max_new_tokens={max_new_tokens}")
    stops = frozenset(stop_ids)
    if reset:
        runner.reset()
    start = time.perf_counter()
    prefill_logits = runner.prefill(prompt)
    seconds = time.perf_counter() - start
    if on_prefill is not None:
        on_prefill(prefill_logits, seconds)
    logits = prefill_logits[-1]
    for i in range(max_new_tokens):
        token = int(forced[i]) if forced is not None else choose(logits)
        yield Step(i, token, logits, seconds)
        if token in stops or i + 1 == max_new_tokens:
            return
        start = time.perf_counter()
        logits = runner.decode(token)
        seconds = time.perf_counter() - start


@dataclass(frozen=True)
class Generation:
    tokens: list[int]  # generated ids (prompt excluded)
    step_logits: np.ndarray  # (n, V): logits that chose each generated token


def collect(steps: Iterable[Step], vocab_size: int) -> Generation:
    """Gather a run of steps into tokens and their logits."""
    done = list(steps)
    logits = np.stack([s.logits for s in done]) if done else np.zeros((0, vocab_size), np.float32)
    return Generation([s.token for s in done], logits)


def greedy_generate(
    runner: Runner, prompt: np.ndarray, max_new_tokens: int, eos_token_id: int | None = None
) -> Generation:
    """Reset, prefill ``prompt``, then greedily decode up to ``max_new_tokens`` tokens (EOS included)."""
    stops = () if eos_token_id is None else (eos_token_id,)
    return collect(decode_steps(runner, prompt, max_new_tokens, stop_ids=stops), runner.config.vocab_size)


def teacher_forced(runner: Runner, prompt: np.ndarray, tokens: Sequence[int], **options) -> Generation:
    """The runner's logits at every position of ``tokens`` when fed exactly those tokens."""
    return collect(decode_steps(runner, prompt, len(tokens), forced=tokens, **options), runner.config.vocab_size)
