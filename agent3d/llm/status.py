"""A live line on stderr while the model works: prompt tokens read, tokens generated, tokens per second, elapsed.

The CLI opens :func:`live_status` around a command (off with ``--quiet`` and when stderr is not a terminal);
backends report through :func:`report`, which does nothing when no status is open, so library use and tests
are silent.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

_CURRENT: list = []  # the open status line, if any
_LOCK = threading.Lock()


class _Line:
    """What the status line shows; rendered afresh at every refresh, so the elapsed time runs."""

    def __init__(self):
        self.start = time.perf_counter()
        self.prompt, self.generated, self.since = 0, 0, time.perf_counter()

    def render(self) -> str:
        elapsed = time.perf_counter() - self.start
        rate = (self.generated - 1) / max(time.perf_counter() - self.since, 1e-9)  # since the first token
        if self.prompt == 0:
            return f"model: loading, {elapsed:.1f} s"
        state = f"generating: {self.generated} tokens, {rate:.1f} tokens/s" if self.generated else "reading the prompt"
        return f"model: {self.prompt:,} prompt tokens, {state}, {elapsed:.1f} s"


def status_open() -> bool:
    """True while a status line is shown."""
    return bool(_CURRENT)


def current() -> str | None:
    """The text of the open status line, or None."""
    return _CURRENT[-1].render() if _CURRENT else None


def report(prompt_tokens: int | None = None, generated: int | None = None) -> None:
    """Update the open status line (no-op without one).

    Parameters
    ----------
    prompt_tokens : int, optional
        Tokens of the request being read (resets the generated count).
    generated : int, optional
        Tokens generated so far for that request.
    """
    with _LOCK:
        if not _CURRENT:
            return
        line = _CURRENT[-1]
        if prompt_tokens is not None:
            line.prompt, line.generated, line.since = prompt_tokens, 0, time.perf_counter()
        if generated is not None:
            if line.generated == 0:
                line.since = time.perf_counter()  # the rate counts generation only
            line.generated = generated


@contextmanager
def live_status(enabled: bool, console=None) -> Iterator[None]:
    """Show the status line on stderr (or ``console``, a rich Console) while the block runs, when ``enabled`` and
    it is a terminal."""
    from rich.console import Console
    from rich.live import Live

    console = console or Console(stderr=True)
    if not enabled or not console.is_terminal:
        yield
        return
    line = _Line()
    with Live(console=console, transient=True, refresh_per_second=8, get_renderable=line.render):
        _CURRENT.append(line)
        try:
            yield
        finally:
            _CURRENT.remove(line)
