"""Prometheus metrics of the scraper (the default registry; `run` serves it on /metrics)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram, start_http_server

THREADS_FETCHED = Counter(
    "dvach_scraper_threads_fetched_total", "Threads fetched and stored (200 responses).", ["board"]
)
THREADS_UNCHANGED = Counter(
    "dvach_scraper_threads_unchanged_total",
    "Threads not fetched or not re-stored because nothing changed (listing or 304).",
    ["board", "why"],
)
POSTS_ADDED = Counter("dvach_scraper_posts_added_total", "New posts stored.", ["board"])
DIALOGS_ADDED = Counter("dvach_scraper_dialogs_added_total", "New dialogs stored.", ["board"])
DIALOGS_SCORED = Counter("dvach_scraper_dialogs_scored_total", "Dialogs given a toxicity score.")
ERRORS = Counter(
    "dvach_scraper_errors_total",
    "Errors by kind: http, network, malformed, post (a post skipped), database.",
    ["kind"],
)
HTTP_REQUESTS = Counter(
    "dvach_scraper_http_requests_total", "HTTP requests to the site by status code ('error': no response).", ["status"]
)
HTTP_SECONDS = Histogram(
    "dvach_scraper_http_request_duration_seconds",
    "Time of one HTTP request to the site.",
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)
RUNS = Counter("dvach_scraper_runs_total", "Crawl runs by outcome.", ["status"])
LAST_RUN = Gauge("dvach_scraper_last_run_timestamp_seconds", "Unix time the last crawl run ended.")
LAST_SUCCESS = Gauge(
    "dvach_scraper_last_success_timestamp_seconds", "Unix time the last crawl run ended without failing."
)


def serve(host: str, port: int) -> None:
    """Serve /metrics from a background thread."""
    start_http_server(port, addr=host)
