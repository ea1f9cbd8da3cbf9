"""Entry point of `controller` and `python -m controller`.

The HTTP server runs on gevent, and gevent must patch the standard library
before anything imports sockets, threads or ssl; every other command (above
all `consumer`, whose supervisor spawns processes) must run unpatched. So the
decision is taken here, from the first argument, before the CLI is imported.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> None:
    """Run the `controller` command line; gevent patches only for `server`."""
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] == ["server"]:
        from gevent import monkey

        monkey.patch_all()
    from controller.cli import cli  # only now: it imports redis, hence socket and ssl

    cli.main(args=args, prog_name="controller")


if __name__ == "__main__":
    main()
