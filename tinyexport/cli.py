"""The ``tinyexport`` command line: a thin click layer. Heavy backends are imported inside commands,
so ``tinyexport --help`` never imports torch.

Exit codes: 0 success, 1 a check failed (parity, quality) or the environment failed the operation
(disk full, not writable, out of memory, a killed child: one line saying what to do), 2 bad input
(one line on stderr), 130 interrupted.
"""

from __future__ import annotations

import importlib
import os
import sys
from typing import Any

import click

from tinyexport import __version__
from tinyexport.errors import CheckError, OperationError, UserError
from tinyexport.records.sink import RunSink

# command name -> "module:attribute"; modules define click commands and import nothing heavy.
COMMANDS: dict[str, str] = {
    "bundle": "tinyexport.commands.bundle:bundle",
    "convert": "tinyexport.commands.convert:convert",
    "eval": "tinyexport.commands.eval:eval_group",
    "generate": "tinyexport.commands.generate:generate",
    "chat": "tinyexport.commands.chat:chat",
    "verify": "tinyexport.commands.verify:verify",
    "bench": "tinyexport.commands.bench:bench",
    "flops": "tinyexport.commands.flops:flops",
    "report": "tinyexport.commands.report:report",
    "runs": "tinyexport.commands.runs:runs",
    "sweep": "tinyexport.commands.sweep:sweep",
    "scaling": "tinyexport.commands.scaling:scaling",
    "finetune": "tinyexport.commands.finetune:finetune",
}

# Commands whose every run appends one record to the run store (docs/runs.md).
RECORDED_COMMANDS = ("convert", "verify", "eval", "bench")


# optional top-level modules -> the install extra that provides them
OPTIONAL_MODULES: dict[str, str] = {
    "torch": "export",
    "transformers": "export",
    "safetensors": "export",
    "gguf": "export",
    "accelerate": "export",
    "litert_torch": "export",
    "ai_edge_quantizer": "export",
    "onnx": "export",
    "onnxscript": "export",
    "optimum": "export",
    "matplotlib": "export",
    "ai_edge_litert": "runtime",
    "onnxruntime": "runtime",
    "llama_cpp": "runtime-gguf",
    "executorch": "executorch",
    "ruamel": "executorch",
    "onnxruntime_genai": "test",
    "litert_lm_builder": "litertlm",
    "litert_lm": "litertlm",
    "peft": "finetune",
}
# packages an extra cannot carry (installed without their declared dependencies): the second install step
EXTRA_STEPS: dict[str, str] = {"executorch": " && pip install --no-deps executorch==1.5.1"}


def fail(message: str, code: int = 2) -> None:
    """Print one line on stderr and exit (no traceback)."""
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


class TinyexportGroup(click.Group):
    """Lazy subcommands, and every failure mapped to one line and an exit code."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        target = COMMANDS.get(name)
        if target is None:
            return None
        module, _, attr = target.partition(":")
        return getattr(importlib.import_module(module), attr)

    def main(
        self,
        args: Any = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        **extra: Any,
    ) -> Any:
        from tinyexport.records.capture import utc_now

        argv = list(sys.argv[1:] if args is None else args)
        sink = extra.setdefault("obj", RunSink())
        started = utc_now()
        try:
            self._main_mapped(argv, prog_name, complete_var, **extra)
        except SystemExit as done:
            _record_run(sink, argv, started, done.code if isinstance(done.code, int) else 1)
            raise
        except Exception:  # a bug: recorded as exit 1, then the traceback
            _record_run(sink, argv, started, 1)
            raise

    def resolve_command(self, ctx: click.Context, args: list[str]) -> tuple:
        name, cmd, rest = super().resolve_command(ctx, args)
        sink = ctx.find_object(RunSink)
        if sink is not None and cmd is not None:
            sub = next((a for a in rest if not a.startswith("-")), None) if isinstance(cmd, click.Group) else None
            sink.command = f"{cmd.name} {sub}" if sub in getattr(cmd, "commands", {}) else cmd.name
            if cmd.name in RECORDED_COMMANDS and not ctx.params.get("no_record"):
                from tinyexport.records.capture import RunContext

                sink.context = RunContext()  # versions, machine, git: gathered while the command runs
        return name, cmd, rest

    def _main_mapped(self, args: list[str], prog_name: str | None, complete_var: str | None, **extra: Any) -> None:
        try:
            result = super().main(args, prog_name or "tinyexport", complete_var, standalone_mode=False, **extra)
        except click.UsageError as err:
            hint = f" (see '{err.ctx.command_path} --help')" if err.ctx else ""
            fail(f"{err.format_message()}{hint}")
        except click.ClickException as err:
            fail(err.format_message())
        except (click.Abort, KeyboardInterrupt):  # click turns Ctrl-C and EOF into Abort; a bare one is a fallback
            fail("interrupted", 130)
        except ModuleNotFoundError as err:
            top = (err.name or "").split(".")[0]
            if top not in OPTIONAL_MODULES:
                raise
            fail(
                f"this needs the '{top}' package, which is not installed; "
                f"install it with: pip install 'tinyexport[{OPTIONAL_MODULES[top]}]'{EXTRA_STEPS.get(top, '')}"
            )
        except UserError as err:
            fail(str(err).splitlines()[0] if str(err) else type(err).__name__)
        except (CheckError, OperationError) as err:
            fail(str(err).splitlines()[0] if str(err) else type(err).__name__, 1)
        except MemoryError:
            from tinyexport.faults import memory_fault

            fail(str(memory_fault(f"running `{_command_name(args)}`")), 1)
        except OSError as err:  # an environment fault no library code wrapped: still one line
            from tinyexport.faults import from_os_error

            fault = from_os_error(err, None)
            if fault is None:
                raise
            fail(str(fault), 1)
        sys.exit(result if isinstance(result, int) else 0)


def _command_name(args: Any) -> str:
    words = [a for a in (sys.argv[1:] if args is None else list(args)) if not a.startswith("-")]
    return f"tinyexport {words[0]}" if words else "tinyexport"


@click.group(cls=TinyexportGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
@click.version_option(__version__, "--version", prog_name="tinyexport")
@click.option(
    "--no-record",
    is_flag=True,
    envvar="TINYEXPORT_NO_RECORD",
    help="Do not append this run to the run store (<cache>/runs.sqlite; env TINYEXPORT_NO_RECORD=1).",
)
@click.pass_context
def cli(ctx: click.Context, no_record: bool) -> None:
    """Export Llama-family models to TFLite, ONNX and GGUF, and prove every file matches the original.

    \b
    Typical flow:
      tinyexport verify                                   # re-implementation vs transformers
      tinyexport convert --format tflite --quantize       # int8 LiteRT artefact of the default model
      tinyexport verify out/smollm2-135m_q8_ekv1024       # the file vs transformers
      tinyexport runs list                                # every recorded convert/verify/eval/bench
    """
    sink = ctx.find_object(RunSink)
    if sink is not None and no_record:
        sink.record = False


def _record_run(sink: RunSink, argv: list[str], started: str, exit_status: int) -> None:
    """Append the finished command's record to the run store; a store problem is a warning, never a
    changed exit status (the command's own outcome stands)."""
    top = (sink.command or "").split(" ")[0]
    if not sink.record or top not in RECORDED_COMMANDS:
        return
    if exit_status == 0 and sink.result is None:  # --help, or nothing ran: not a run
        return
    from tinyexport.records.capture import build_record
    from tinyexport.records.store import default_store

    try:
        store = default_store()
        store.append(build_record(sink, argv, started, exit_status, store))
    except (UserError, OSError) as err:
        click.echo(f"warning: run not recorded: {str(err).splitlines()[0]}", err=True)


def main() -> None:
    from tinyexport.console import quiet_third_party_logs

    quiet_third_party_logs()
    try:
        cli.main()
    except SystemExit:  # every handled outcome ends here, its output already written
        _hold_back_native_exit_logs()
        raise


def _hold_back_native_exit_logs() -> None:
    """LiteRT's native destructors log INFO lines to fd 2 as the process exits (after our output, e.g.
    ``DestroyAccelerator``); point fd 2 at /dev/null once the command is done so they don't follow
    every table. Only when LiteRT was loaded; an uncaught exception's traceback never passes here."""
    if "ai_edge_litert" not in sys.modules and "litert_lm" not in sys.modules:
        return
    sys.stderr.flush()
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    os.close(devnull)


if __name__ == "__main__":
    main()
