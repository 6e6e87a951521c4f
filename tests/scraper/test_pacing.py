"""Politeness where the site sees it: the pause between two requests is counted from the moment
the earlier one was sent, so a request that was held up never lands right behind the next one.

The client and the 2ch stand-in share a virtual clock: time moves only when the client sleeps, and
some sleeps end late, as they do on a loaded machine. So the test holds whatever the load of the
machine running it, and it reproduces the case that once failed on a loaded machine (one request
0.37 s late, the next on its booked slot 9 ms after it).
"""

from __future__ import annotations

import asyncio
from itertools import pairwise

import httpx

from services.scraper.client import DvachClient, Pacer
from tests.scraper.conftest import make_config
from tests.scraper.dvach_server import DvachServer
from tests.scraper.fixtures import post, thread_json

DELAY = 0.1


class CountingTransport(httpx.AsyncBaseTransport):
    """The real network, counting the requests handed to it."""

    def __init__(self) -> None:
        self.inner = httpx.AsyncHTTPTransport()
        self.handed = 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.handed += 1
        return await self.inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self.inner.aclose()


class LoadedClock:
    """Virtual time shared by the client and the site. It moves only when a task sleeps, and the
    n-th sleep ends `lateness[n]` seconds late. Before it moves it waits until the site has
    received every request handed to the network, so the site stamps each arrival with the
    virtual moment the request was sent."""

    def __init__(self, site: DvachServer, network: CountingTransport, lateness: list[float]):
        self.now = 1000.0
        self.site = site
        self.network = network
        self.lateness = list(lateness)
        self.sleeps = 0

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        await asyncio.to_thread(self.site.wait_for_requests, self.network.handed, 30)
        late = self.lateness[self.sleeps % len(self.lateness)]
        self.sleeps += 1
        self.now += max(seconds, 0.0) + late
        await asyncio.sleep(0)  # let the other tasks run, as a real sleep does


def serve_threads(site: DvachServer, count: int) -> list[int]:
    nums = []
    for t in range(count):
        num = 7000 + 100 * t
        posts = [post(num, num, f"тред {t}")] + [post(num + i, num, f"ответ {i}") for i in range(1, 4)]
        nums.append(site.serve_thread("po", thread_json("po", posts), posts_count=30))
    return nums


async def test_the_pause_holds_between_sends_on_a_loaded_machine(dvach: DvachServer):
    nums = serve_threads(dvach, 6)
    dvach.fail(f"/po/res/{nums[2]}.json", "500")  # a retried request keeps the pause too
    network = CountingTransport()
    clock = LoadedClock(dvach, network, lateness=[0.0, 0.37, 0.0, 0.004, 0.21, 0.0, 0.0, 0.5])
    dvach.clock = clock
    config = make_config(dvach, boards=("po",), delay_s=DELAY, concurrency=4)
    async with DvachClient(config, clock=clock, sleep=clock.sleep, transport=network) as client:
        listing = await client.listing("po")
        fetched = await asyncio.gather(*(client.thread("po", t.num) for t in listing.threads))

    assert sorted(t.num for t in listing.threads) == nums
    assert [f.status for f in fetched] == ["ok"] * 6
    assert len(dvach.arrivals) == network.handed == 1 + 6 + 1  # the listing, the threads, one retry
    assert clock.sleeps > 2  # pauses were slept (some of them ending late)
    gaps = [round(b - a, 6) for a, b in pairwise(dvach.arrivals)]
    assert min(gaps) >= DELAY, gaps
    assert max(gaps) > DELAY  # late wakes made some gaps longer: the lateness reached the site


async def test_a_request_sent_late_pushes_the_next_one_back():
    """A turn that is taken and sent late (a slow connect) counts the pause from its real send."""
    now = [0.0]
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(round(seconds, 6))
        now[0] += seconds

    pacer = Pacer(DELAY, clock=lambda: now[0], sleep=sleep)
    async with pacer.turn() as sent:  # the first request: no pause before it
        now[0] += 0.3  # connecting took 0.3 s
        sent()
    async with pacer.turn():  # the next one waits the full pause after that send
        pass
    now[0] += 0.5
    async with pacer.turn():  # long after: no wait
        pass
    assert slept == [DELAY]


async def test_no_delay_means_no_waiting():
    pacer = Pacer(0.0, clock=lambda: 0.0, sleep=None)  # type: ignore[arg-type]  # never called
    for _ in range(3):
        async with pacer.turn() as sent:
            sent()
