"""The `slum` command. Commands are registered directly (not as lazy "module:func" strings, whose
help a frozen binary cannot read); heavy imports stay inside command bodies so `slum ps` is fast."""

from __future__ import annotations

import sys

from slum.cli.output import error
from slum.errors import SlumError

FAST_PS_FLAGS = {"--json", "--all", "-a"}


def main(argv: list[str] | None = None) -> None:
    args = _global_options(list(argv if argv is not None else sys.argv[1:]))
    code: int | None = None
    if args == ["_watchdog"]:
        from slum.supervisor.watchdog import run

        run()
        return
    try:
        if args[:1] in (["ps"], ["ls"]):
            # The command people run in loops: socket + json on the control socket, no parser.
            from slum.cli.fast import ps

            code = ps(args)
        if code is None and args[:1] in (["ps"], ["ls"]) and set(args[1:]) <= FAST_PS_FLAGS:
            # Over HTTP: still without the argument parser's import (~70 ms).
            from slum.cli.output import ps_command
            from slum.client import Client

            code = ps_command(Client(), all=bool({"--all", "-a"} & set(args)), json="--json" in args)
        elif code is None:
            from slum.cli.commands import app

            code = app(args)
    except SlumError as e:
        error(e.message)
        sys.exit(e.exit_code)
    except KeyboardInterrupt:
        sys.exit(130)
    except BrokenPipeError:
        # `slum logs | head`: the reader left; that is not an error worth a message.
        _quiet_stdout()
        sys.exit(0)
    except BaseExceptionGroup as group:
        leaf = _single_leaf(group)
        if isinstance(leaf, SlumError):
            error(leaf.message)
            sys.exit(leaf.exit_code)
        if isinstance(leaf, OSError):
            error(str(leaf))
            sys.exit(1)
        raise
    except OSError as e:
        error(str(e))
        sys.exit(1)
    except Exception as e:
        if type(e).__module__ != "apsw":
            raise
        # SQLite said no where a command opened --database itself: one line, never a traceback.
        error(f"database: {e}")
        sys.exit(1)
    sys.exit(code if isinstance(code, int) else 0)


GLOBAL_OPTIONS = {"--server": "SLUM_SERVER", "--token": "SLUM_TOKEN", "--data-dir": "SLUM_DATA_DIR"}


def _global_options(args: list[str]) -> list[str]:
    """`slum --server URL ps`, as tenement's CLI takes it: options before the subcommand apply
    to it (through the environment every command already reads)."""
    import os

    while args and args[0].split("=", 1)[0] in GLOBAL_OPTIONS:
        name, eq, value = args[0].partition("=")
        if eq:
            args = args[1:]
        elif len(args) > 1:
            value, args = args[1], args[2:]
        else:
            break
        os.environ[GLOBAL_OPTIONS[name]] = value
    return args


def _quiet_stdout() -> None:
    import os

    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)


def _single_leaf(group: BaseExceptionGroup[BaseException]) -> BaseException | None:
    leaves: list[BaseException] = []

    def walk(e: BaseException) -> None:
        if isinstance(e, BaseExceptionGroup):
            for sub in e.exceptions:
                walk(sub)
        else:
            leaves.append(e)

    walk(group)
    for leaf in leaves:
        if isinstance(leaf, SlumError | OSError):
            return leaf
    return leaves[0] if len(leaves) == 1 else None
