"""What ``tinyexport bench`` will run, checked before any work: options parsed, inputs resolved (through
the one resolver), every candidate described with its capacity, size and shape."""

from __future__ import annotations


def option_message(message: str) -> str:
    """BenchSettings' field names -> the CLI's option names."""
    for field, option in (
        ("prompt_len", "--prompt-len"),
        ("new_tokens", "--new-tokens"),
        ("repeats", "--repeats"),
        ("warmup", "--warmup"),
        ("context fills", "--context values"),
    ):
        message = message.replace(field, option)
    return message


def parse_contexts(text: str | None) -> tuple[int, ...]:
    from tinyexport.errors import UserError

    if text is None:
        return ()
    try:
        values = tuple(sorted({int(part) for part in text.split(",") if part.strip()}))
    except ValueError:
        raise UserError(
            f"--context {text!r} has a non-integer; pass comma-separated cache fills, e.g. 128,512,1024"
        ) from None
    if not values:
        raise UserError(f"--context {text!r} is empty; pass comma-separated cache fills, e.g. 128,512,1024")
    return values


def plan(artefacts, torch_attentions, hf, checkpoint, random_weights, seed, settings, transforms=()):
    """Check every input (exit 2 before any work) and describe each candidate.

    Returns (candidates, model name, checkpoint dir or None). The checkpoint is resolved only when a
    --torch/--hf candidate needs it, so an artefacts-only bench never imports torch.
    """
    from tinyexport.bench.harness import BenchCandidate
    from tinyexport.errors import UserError
    from tinyexport.resolve import Candidate, resolve, transform

    inputs = resolve(
        artefacts,
        checkpoint=checkpoint,
        random_weights=random_weights,
        seed=seed,
        need_checkpoint=bool(torch_attentions or hf),
    )
    candidates = [
        BenchCandidate(
            c,
            c.label,
            c.format,
            c.recipe,
            c.artefact.size_bytes(),
            c.artefact.kv_cache_max_len,
            c.artefact.config,
            int(c.artefact.manifest.get("weight_bytes", c.artefact.size_bytes())),
            tuple(
                w
                for w in c.artefact.manifest.get("tflite", {}).get("attention_spans", [])
                if w < c.artefact.kv_cache_max_len
            ),
        )
        for c in inputs.candidates
    ]
    for cand in candidates:
        _check_capacity(cand.name, cand.capacity, settings)
    model_name, checkpoint_dir = inputs.name, None
    if torch_attentions or hf:
        from tinyexport.models.weights import weight_files

        ckpt = inputs.checkpoint
        checkpoint_dir = str(ckpt.directory)
        size = sum(f.stat().st_size for f in weight_files(ckpt.directory))
        capacity = settings.tokens_needed
        _check_capacity(ckpt.name, ckpt.config.max_position_embeddings, settings, what="max_position_embeddings")
        too_long = [c for c in settings.contexts if c > ckpt.config.max_position_embeddings]
        if too_long:
            raise UserError(
                f"--context {too_long} exceeds the max_position_embeddings of {ckpt.name} "
                f"({ckpt.config.max_position_embeddings}); use smaller fills"
            )
        tckpt = transform(ckpt, tuple(transforms), seed)
        tsize = _state_bytes(tckpt) if transforms else size  # the transformed weights as our model holds them
        ours = [Candidate("torch", a, transforms=tckpt.transforms) for a in dict.fromkeys(torch_attentions)]
        reference = [Candidate("hf")] if hf else []
        candidates = (
            [BenchCandidate(c, c.label, c.format, c.recipe, tsize, capacity, tckpt.config, tsize) for c in ours]
            + [BenchCandidate(c, c.label, c.format, c.recipe, size, capacity, ckpt.config, size) for c in reference]
            + candidates
        )
    unheld = [c for c in settings.contexts if all(c > cand.capacity for cand in candidates)]
    if unheld:
        raise UserError(
            f"--context {unheld} exceeds the KV cache of every candidate (largest "
            f"{max(c.capacity for c in candidates)}); use smaller fills"
        )
    return candidates, model_name, checkpoint_dir


def _check_capacity(name: str, capacity: int, settings, what: str = "KV cache") -> None:
    """The prompt and new tokens must fit every candidate (--context fills that don't fit are skipped)."""
    from tinyexport.errors import UserError

    if settings.prompt_len + settings.new_tokens > capacity:
        raise UserError(
            f"--prompt-len {settings.prompt_len} + --new-tokens {settings.new_tokens} exceeds the "
            f"{what} of {name} ({capacity}); lower --new-tokens or --prompt-len"
        )


def _state_bytes(checkpoint) -> int:
    """Bytes of a transformed checkpoint's weights as our model holds them (tied embeddings once)."""
    from tinyexport.models.loading import load_state

    _, state = load_state(checkpoint)
    return sum(t.numel() * t.element_size() for t in state.values())
