"""The `slum` command. Commands are registered directly (not as lazy "module:func" strings, whose
help a frozen binary cannot read); heavy imports stay inside command bodies so `slum ps` is fast."""

from __future__ import annotations

import sys

from slum.cli.output import error
from slum.errors import SlumError


def main(argv: list[str] | None = None) -> None:
    from slum.cli.commands import app

    try:
        code = app(argv if argv is not None else sys.argv[1:])
    except SlumError as e:
        error(e.message)
        sys.exit(e.exit_code)
    except KeyboardInterrupt:
        sys.exit(130)
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
    sys.exit(code if isinstance(code, int) else 0)


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
