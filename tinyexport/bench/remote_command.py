"""The ``bench --on`` flow: check the inputs here, run the bench there, print and record its document."""

from __future__ import annotations

from pathlib import Path

from .transports import AdbTransport, parse_target


def bench_on(
    on: str,
    artefacts: tuple[Path, ...],
    forwarded: list[str],
    *,
    remote_python: str | None,
    remote_dir: str | None,
    identity: Path | None,
    ssh_options: tuple[str, ...],
    connect_timeout: int,
    json_path: Path | None,
    log_csv: Path | None,
) -> dict:
    from tinyexport.artefact import load_artefact
    from tinyexport.atomic import write_json_atomic
    from tinyexport.console import make_console
    from tinyexport.errors import UserError

    from .csvlog import append_rows, csv_rows
    from .remote import RemoteSettings, remote_bench
    from .table import print_bench

    if identity is not None and not Path(identity).is_file():
        raise UserError(f"--identity {identity} does not exist; pass the private key file for the target")
    transport = parse_target(on, identity, ssh_options, connect_timeout)
    if isinstance(transport, AdbTransport):
        transport.check_device()
    arts = [load_artefact(p) for p in artefacts]  # refuses missing/tampered dirs before anything is copied
    names = [a.name for a in arts]
    if len(set(names)) != len(names):
        raise UserError("artefact names repeat; each is copied to the target under its directory name")
    status = make_console(stderr=True)
    document = remote_bench(
        arts,
        transport,
        RemoteSettings(remote_python=remote_python, remote_dir=remote_dir),
        forwarded,
        progress=lambda line: status.print(line, highlight=False),
    )
    document["machine"]["via"] = transport.label
    remote = document["remote"]
    status.print(
        f"copied {len(remote['copied'])} file(s) ({remote['bytes_copied'] / 1e6:.1f} MB) in "
        f"{remote['copy_seconds']:.1f} s, skipped {len(remote['skipped'])}; bench there "
        f"{remote['bench_command_seconds']:.1f} s; total {remote['total_seconds']:.1f} s",
        highlight=False,
    )
    console = make_console()
    machine = document.get("machine", {})
    console.print(
        f"[bold]remote[/] {remote['transport']}: {machine.get('host')} — {machine.get('cpu_model')}, "
        f"{machine.get('cores')} cores, {machine.get('ram_gb')} GB, {machine.get('os')}",
        highlight=False,
    )
    print_bench(console, document)
    if document.get("litertlm_benchmark"):
        from .litertlm_bench import print_litertlm

        print_litertlm(console, document["litertlm_benchmark"], document["candidates"])
    if json_path is not None:
        write_json_atomic(json_path, document)
    if log_csv is not None:
        append_rows(log_csv, csv_rows(document))
    failed = [r["name"] for r in document["candidates"] if r.get("error")]
    if failed:
        raise SystemExit(1)
    return document


def forwarded_args(
    prompt_len: int,
    new_tokens: int,
    warmup: int,
    repeats: int,
    threads: int | None,
    contexts: str | None,
    seed: int,
    reprobe: bool,
    litertlm: bool,
) -> list[str]:
    """The bench options the remote run gets (checked here first, so bad values fail before any copy)."""
    args = ["--prompt-len", str(prompt_len), "--new-tokens", str(new_tokens), "--warmup", str(warmup)]
    args += ["--repeats", str(repeats), "--seed", str(seed)]
    args += ["--threads", str(threads)] if threads else []
    args += ["--context", contexts] if contexts else []
    args += ["--reprobe"] if reprobe else []
    args += ["--litertlm"] if litertlm else []
    return args
