"""The 2ch JSON API client: async httpx, polite and stubborn.

- Polite: an honest User-Agent, at most `concurrency` requests in flight, a pause of `delay_s`
  between the moment one request has been written to the network and the moment the next one
  starts (shared by every task; see `Pacer`), conditional requests (ETag / Last-Modified) so that
  an unchanged thread costs a 304, not its whole JSON.
- Stubborn: 429, 5xx, network errors, timeouts and bodies that are cut short (invalid JSON) are
  retried (tenacity) with exponential backoff and jitter; a Retry-After from the server wins.
  Other statuses fail at once; 404/410 mean the thread is gone (deleted or archived), which is no
  error.
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import logging
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, Literal

import httpx
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception_type, stop_after_attempt

from services.scraper import metrics
from services.scraper.api_models import MalformedResponse, ParsedListing, parse_listing
from shared.settings import ScraperSettings

log = logging.getLogger(__name__)

# A /b/ thread of a thousand posts is a few MB; far bigger is not a thread.
MAX_BODY_BYTES = 64 * 1024 * 1024
_RETRY_STATUSES = {429, 500, 502, 503, 504, 507, 520, 521, 522, 523, 524}


class FetchError(Exception):
    """A request that failed for good; `kind` is http, network or malformed."""

    def __init__(self, kind: str, message: str):
        super().__init__(message)
        self.kind = kind


class _WorthRetrying(Exception):
    """One attempt failed in a way another attempt may not (the last one's error is raised)."""

    def __init__(self, error: FetchError, retry_after: float | None = None):
        super().__init__(str(error))
        self.error = error
        self.retry_after = retry_after


@dataclass
class Fetched:
    status: Literal["ok", "not_modified", "gone"]
    data: Any = None
    etag: str | None = None
    last_modified: str | None = None


def _retry_after(value: str | None) -> float | None:
    """Seconds to wait from a Retry-After header (seconds or an HTTP date)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]


class Pacer:
    """At least `delay_s` between the moment one request has been sent and the moment the next
    one starts, measured when they actually happen rather than on slots booked in advance.

    Booked slots let a request that was held up (a busy event loop, a wait for a connection)
    arrive right behind the next one, which kept its slot: the site then sees two requests a few
    milliseconds apart. Here a request takes the turn once it holds a connection slot, waits out
    the pause counted from when the previous request was sent, and keeps the turn until its own
    bytes are on the wire (connecting included); only then may the next one start. A held-up
    request only makes the gap longer.

    `clock` (a `time.monotonic`-like callable) and `sleep` can be replaced, so that tests drive
    the pacing on a clock of their own.
    """

    def __init__(self, delay_s: float, clock: Clock = time.monotonic, sleep: Sleep = asyncio.sleep):
        self.delay_s = delay_s
        self._clock = clock
        self._sleep = sleep
        self._lock = asyncio.Lock()
        self._last_sent: float | None = None

    @asynccontextmanager
    async def turn(self) -> AsyncIterator[Callable[[], None]]:
        """Wait for the pause, then hold the turn; call the yielded function once the request is
        sent (it is also called on leaving, for a request that failed before it was sent)."""
        if self.delay_s <= 0:
            yield lambda: None
            return
        await self._lock.acquire()
        held = True

        def sent() -> None:
            nonlocal held
            if held:
                held = False
                self._last_sent = self._clock()
                self._lock.release()

        try:
            if self._last_sent is not None:
                wait = self._last_sent + self.delay_s - self._clock()
                if wait > 0:
                    await self._sleep(wait)
            yield sent
        finally:
            sent()


class DvachClient:
    """One client per process (or crawl); use as `async with DvachClient(settings) as client`.

    `clock` and `sleep` pace the requests and time the retries (tests pass their own clock);
    `transport` is httpx's (default: the network)."""

    def __init__(
        self,
        settings: ScraperSettings,
        *,
        clock: Clock = time.monotonic,
        sleep: Sleep = asyncio.sleep,
        transport: httpx.AsyncBaseTransport | None = None,
    ):
        self.settings = settings
        in_flight = settings.scraper_concurrency
        self._http = httpx.AsyncClient(
            base_url=settings.dvach_base_url,
            timeout=httpx.Timeout(settings.scraper_timeout_s),
            headers={"User-Agent": settings.scraper_user_agent, "Accept": "application/json"},
            follow_redirects=True,
            limits=httpx.Limits(max_connections=in_flight, max_keepalive_connections=in_flight),
            transport=transport,
        )
        self._slots = asyncio.Semaphore(in_flight)
        self._pacer = Pacer(settings.scraper_delay_s, clock, sleep)
        self._sleep = sleep
        # Listings are asked for every run: remember the last one to make use of a 304.
        self._listings: dict[str, tuple[str | None, str | None, ParsedListing]] = {}

    async def __aenter__(self) -> DvachClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    def _backoff(self, state: RetryCallState) -> float:
        """The wait before the next attempt: the server's Retry-After, else doubling with jitter."""
        failure = state.outcome.exception() if state.outcome else None
        retry_after = failure.retry_after if isinstance(failure, _WorthRetrying) else None
        longest = self.settings.scraper_backoff_max_s
        if retry_after is not None:
            return min(retry_after, longest)
        wait = min(self.settings.scraper_backoff_s * 2 ** (state.attempt_number - 1), longest)
        return wait * (0.5 + random.random() / 2)  # jitter: retries of parallel tasks spread out

    def _log_retry(self, state: RetryCallState) -> None:
        failure = state.outcome.exception() if state.outcome else None
        log.info(
            "retrying request",
            extra={
                "path": state.args[0] if state.args else None,
                "error": str(failure),
                "attempt": state.attempt_number,
                "wait_s": round(state.next_action.sleep, 3) if state.next_action else None,
            },
        )

    async def _get_once(self, path: str, headers: dict[str, str]) -> tuple[httpx.Response, bytes]:
        # The connection slot first, then the pacer's turn: a request that waited for a slot must
        # still keep the pause after the one sent before it.
        async with self._slots, self._pacer.turn() as sent:

            async def trace(event: str, _info: dict) -> None:
                # httpcore's trace: the request is written (or failed to be) and the answer is awaited.
                if event.endswith("receive_response_headers.started"):
                    sent()

            started = time.perf_counter()
            try:
                async with self._http.stream("GET", path, headers=headers, extensions={"trace": trace}) as response:
                    chunks, size = [], 0
                    async for chunk in response.aiter_bytes():
                        size += len(chunk)
                        if size > MAX_BODY_BYTES:
                            raise FetchError("malformed", f"{path}: body larger than {MAX_BODY_BYTES} bytes")
                        chunks.append(chunk)
            finally:
                metrics.HTTP_SECONDS.observe(time.perf_counter() - started)
        metrics.HTTP_REQUESTS.labels(status=str(response.status_code)).inc()
        return response, b"".join(chunks)

    async def _attempt(self, path: str, headers: dict[str, str]) -> Fetched:
        """One GET of `path`: the answer, or FetchError (for good) or _WorthRetrying."""
        try:
            response, body = await self._get_once(path, headers)
        except httpx.TransportError as exc:  # connect/read errors, timeouts, a body cut short
            metrics.HTTP_REQUESTS.labels(status="error").inc()
            raise _WorthRetrying(FetchError("network", f"{path}: {type(exc).__name__}: {exc}")) from exc
        status = response.status_code
        if status == 200:
            try:
                data = json.loads(body)
            except ValueError as exc:
                # A 200 whose JSON stops halfway is a transport accident more often than not.
                raise _WorthRetrying(
                    FetchError("malformed", f"{path}: invalid JSON ({exc}; {len(body)} bytes)")
                ) from exc
            return Fetched("ok", data, response.headers.get("ETag"), response.headers.get("Last-Modified"))
        if status == 304:
            return Fetched(
                "not_modified", etag=headers.get("If-None-Match"), last_modified=headers.get("If-Modified-Since")
            )
        if status in (404, 410):
            return Fetched("gone")
        if status in _RETRY_STATUSES:
            retry_after = _retry_after(response.headers.get("Retry-After"))
            raise _WorthRetrying(FetchError("http", f"{path}: HTTP {status}"), retry_after)
        raise FetchError("http", f"{path}: HTTP {status}")

    async def get_json(self, path: str, *, etag: str | None = None, last_modified: str | None = None) -> Fetched:
        """GET `path` as JSON, retrying what is worth retrying; raise FetchError when it fails for good."""
        headers = {}
        if etag:
            headers["If-None-Match"] = etag
        if last_modified:
            headers["If-Modified-Since"] = last_modified
        retrying = AsyncRetrying(
            retry=retry_if_exception_type(_WorthRetrying),
            stop=stop_after_attempt(self.settings.scraper_max_retries + 1),
            wait=self._backoff,
            sleep=self._sleep,
            before_sleep=self._log_retry,
            reraise=True,
        )
        try:
            return await retrying(self._attempt, path, headers)
        except _WorthRetrying as exc:
            raise exc.error from None

    async def listing(self, board: str) -> ParsedListing:
        """The threads of `board` from `catalog.json`, or `threads.json` where there is no catalog."""
        for name in ("catalog.json", "threads.json"):
            path = f"/{board}/{name}"
            etag, last_modified, cached = self._listings.get(path, (None, None, None))
            fetched = await self.get_json(path, etag=etag, last_modified=last_modified)
            if fetched.status == "gone":
                continue
            if fetched.status == "not_modified" and cached is not None:
                return cached
            try:
                parsed = parse_listing(fetched.data)
            except MalformedResponse as exc:
                raise FetchError("malformed", f"{path}: {exc}") from None
            self._listings[path] = (fetched.etag, fetched.last_modified, parsed)
            return parsed
        raise FetchError("http", f"/{board}/: neither catalog.json nor threads.json exists")

    async def thread(
        self, board: str, num: int, *, etag: str | None = None, last_modified: str | None = None
    ) -> Fetched:
        """The JSON of thread `num` (not validated here: the crawler parses it off the event loop)."""
        return await self.get_json(f"/{board}/res/{num}.json", etag=etag, last_modified=last_modified)
