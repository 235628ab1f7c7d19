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

# command name -> "module:attribute"; modules define click commands and import nothing heavy.
COMMANDS: dict[str, str] = {
    "bundle": "tinyexport.commands.bundle:bundle",
    "convert": "tinyexport.commands.convert:convert",
    "eval": "tinyexport.commands.eval:eval_group",
    "generate": "tinyexport.commands.generate:generate",
    "verify": "tinyexport.commands.verify:verify",
    "bench": "tinyexport.commands.bench:bench",
    "flops": "tinyexport.commands.flops:flops",
    "report": "tinyexport.commands.report:report",
}


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
    "onnxruntime_genai": "test",
    "litert_lm_builder": "litertlm",
    "litert_lm": "litertlm",
}


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
                f"install it with: pip install 'tinyexport[{OPTIONAL_MODULES[top]}]'"
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
def cli() -> None:
    """Export Llama-family models to TFLite, ONNX and GGUF, and prove every file matches the original.

    \b
    Typical flow:
      tinyexport verify                                   # re-implementation vs transformers
      tinyexport convert --format tflite --quantize       # int8 LiteRT artefact of the default model
      tinyexport verify out/smollm2-135m_q8_ekv1024       # the file vs transformers
    """


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
