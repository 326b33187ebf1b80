"""How long work tells people where it is, without knowing who listens.

Every layer takes a `progress` callable: `progress("loading ...")` announces a phase. A progress object may
also count: `with counting(progress, "timing runs", 6) as count: ... count()` shows done / total with an ETA
when the caller's progress can (the CLI's rich bars, compressor/cli/output.py); otherwise the count is silent.
"""

from contextlib import contextmanager
from typing import Callable, Iterator


def quiet(message: str) -> None:
    pass


@contextmanager
def counting(progress, label: str, total: int | None, unit: str = "") -> Iterator[Callable[[int], None]]:
    """A function `advance(n=1)` for `total` steps of `label`, shown by `progress` if it counts."""
    make = getattr(progress, "counter", None)
    if make is None:  # a plain callable hears of the step, not of each count
        progress(f"{label} ({total:g} {unit})" if total is not None and unit else label)
        yield lambda n=1: None
        return
    with make(label, total, unit) as advance:
        yield advance


class CountingBar:
    """A stand-in for tqdm that a library creates on its own: its updates go to `counting(progress, ...)`.

    Supports what lm-eval uses: `tqdm(iterable)`, `tqdm(total=...)`, `.update(n)`, `.close()`, `disable=`.
    """

    def __init__(self, progress, label: str, iterable=None, total=None, disable: bool = False, desc=None, **_):
        self.iterable = iterable
        if total is None and iterable is not None and hasattr(iterable, "__len__"):
            total = len(iterable)
        self.closed = disable
        if not disable:
            self.context = counting(progress, f"{label}{': ' + desc if desc else ''}", total, "requests")
            self.advance = self.context.__enter__()

    def update(self, n: int = 1) -> None:
        if not self.closed:
            self.advance(n)

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.context.__exit__(None, None, None)

    def __iter__(self):
        try:
            for item in self.iterable:
                yield item
                self.update(1)
        finally:
            self.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def set_description(self, *args, **kwargs) -> None:
        pass

    set_postfix = refresh = set_description
