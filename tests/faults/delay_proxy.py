"""A TCP proxy that delays every chunk it forwards, in both directions.

The partition tests run it inside the Redis host's namespace to put latency
between the worker hosts and Redis: netem is what one would use, but not
every kernel has it. Each chunk read from one side is written to the other
`delay` ± `jitter` seconds later (uniformly drawn), and never before the chunk
read ahead of it, so each direction keeps its order, as a TCP stream must.

    python -m tests.faults.delay_proxy LISTEN_HOST LISTEN_PORT TARGET_HOST TARGET_PORT \
        [--delay 0.010] [--jitter 0.005]

It prints `listening` once it accepts connections, then runs until SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import random
import signal


async def _pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                delay: float, jitter: float, rng: random.Random) -> None:
    """Forward `reader` to `writer`, each chunk held back by its own delay."""
    loop = asyncio.get_running_loop()
    chunks: asyncio.Queue[tuple[float, bytes] | None] = asyncio.Queue()

    async def send() -> None:
        while (item := await chunks.get()) is not None:
            due, data = item
            if due > loop.time():
                await asyncio.sleep(due - loop.time())
            writer.write(data)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()

    sender = asyncio.create_task(send())
    last_due = 0.0
    try:
        while data := await reader.read(65536):
            # later than the chunk before it: a slower draw must not be overtaken
            last_due = max(loop.time() + rng.uniform(delay - jitter, delay + jitter), last_due)
            chunks.put_nowait((last_due, data))
    finally:
        chunks.put_nowait(None)
        await sender


async def _connection(client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter,
                      target: tuple[str, int], delay: float, jitter: float,
                      rng: random.Random) -> None:
    try:
        server_reader, server_writer = await asyncio.open_connection(*target)
    except OSError:
        client_writer.close()
        return
    pumps = [asyncio.create_task(_pump(client_reader, server_writer, delay, jitter, rng)),
             asyncio.create_task(_pump(server_reader, client_writer, delay, jitter, rng))]
    try:
        # one side failing (a reset) ends the connection for both
        await asyncio.wait(pumps, return_when=asyncio.FIRST_EXCEPTION)
    finally:
        for pump in pumps:
            pump.cancel()
        for writer in (client_writer, server_writer):
            writer.close()
        with contextlib.suppress(Exception):
            await asyncio.gather(*pumps, return_exceptions=True)


async def serve(listen: tuple[str, int], target: tuple[str, int], delay: float,
                jitter: float) -> None:
    rng = random.Random()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    server = await asyncio.start_server(
        lambda r, w: _connection(r, w, target, delay, jitter, rng), *listen)
    print("listening", flush=True)
    async with server:
        await stop.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("listen_host")
    parser.add_argument("listen_port", type=int)
    parser.add_argument("target_host")
    parser.add_argument("target_port", type=int)
    parser.add_argument("--delay", type=float, default=0.010, help="seconds, each direction")
    parser.add_argument("--jitter", type=float, default=0.005, help="seconds either way")
    args = parser.parse_args()
    if not 0 <= args.jitter <= args.delay:
        parser.error("--jitter must be between 0 and --delay")
    asyncio.run(serve((args.listen_host, args.listen_port), (args.target_host, args.target_port),
                      args.delay, args.jitter))


if __name__ == "__main__":
    main()
