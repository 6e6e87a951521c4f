"""The scraper: 2ch threads -> Postgres -> reply-chain dialogs -> toxicity scores -> a training set.

Its settings are `shared.settings.ScraperSettings`, read once by the command and passed down.
Modules, one job each:
- api_models.py: pydantic models of the 2ch JSON API (what a response must look like).
- client.py: the async HTTP client (polite, retrying, conditional requests).
- cleaning.py: post HTML -> plain text + the posts it replies to.
- dialogs.py: reply chains -> dialogs (newest first), hashed for de-duplication.
- store/: every read and write of the scraper's tables (runs, threads and posts, scores, stats).
- crawler.py: one crawl run (listing -> threads -> store), recorded in scrape_runs.
- toxicity.py: the resumable batch job that scores dialogs.
- export.py: the training set (JSONL + a `datasets` dataset) above a toxicity quantile.
- metrics.py: Prometheus metrics.
- bench.py: figures measured on the recorded 2ch JSON.
- cli.py: the typer commands (`python -m services.scraper --help`).
"""
