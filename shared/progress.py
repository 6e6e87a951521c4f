"""Progress of long jobs (model download, conversion, demo-model build, scraping, scoring, training).

`LoggedProgress` is a tqdm bar: on a terminal it draws as tqdm does; elsewhere (containers, CI,
log collectors) it draws nothing and writes a structured log line at most every `log_every_s`
seconds and once at the end, so that progress is visible without filling the log. It takes
tqdm's arguments, so it can be handed to libraries that accept a `tqdm_class`
(huggingface_hub's `snapshot_download`).
"""

from __future__ import annotations

import logging
import sys
import time

from tqdm.asyncio import tqdm_asyncio

log = logging.getLogger("progress")


# tqdm_asyncio (tqdm with async iteration) is the class huggingface_hub's `tqdm_class` is typed as.
class LoggedProgress(tqdm_asyncio):
    log_every_s = 10.0

    def __init__(self, *args, **kwargs):
        self._to_log = not sys.stderr.isatty() and not kwargs.get("disable")
        if self._to_log:
            kwargs["disable"] = False  # tqdm still counts; it just never draws
            kwargs["file"] = _Discard()
        kwargs.pop("name", None)  # huggingface_hub passes a logger name for its own bars
        super().__init__(*args, **kwargs)
        self._logged_at = time.monotonic()

    def update(self, n: float | None = 1) -> bool | None:
        shown = super().update(n)
        if self._to_log and time.monotonic() - self._logged_at >= self.log_every_s:
            self._log("in progress")
        return shown

    def close(self) -> None:
        if self._to_log and not getattr(self, "_closed_logged", False) and self.n:
            self._closed_logged = True
            self._log("done")
        super().close()

    def _log(self, state: str) -> None:
        self._logged_at = time.monotonic()
        fields: dict[str, object] = {"task": self.desc or "work", "done": _amount(self.n, self.unit)}
        if self.total:
            fields["total"] = _amount(self.total, self.unit)
            fields["percent"] = round(100 * self.n / self.total, 1)
        elapsed = self.format_dict.get("elapsed") or 0
        if elapsed:
            fields["rate"] = _amount(self.n / elapsed, self.unit) + "/s"
        log.info(state, extra=fields)


def _amount(value: float, unit: str) -> str:
    if unit == "B":
        return tqdm_asyncio.format_sizeof(value, "B", 1024)
    # counts are whole; a slow rate keeps two significant digits ("0.3 dialog/s", not "0 dialog/s")
    text = f"{value:.0f}" if value >= 10 or value == int(value) else f"{value:.2g}"
    return f"{text} {unit}" if unit else text


class _Discard:
    def write(self, _text: str) -> None:
        pass

    def flush(self) -> None:
        pass
