"""Crawl requests from the admin API to a running scraper, through a Redis list.

The gateway pushes a request; the scraper's `run` loop waits on the list between scheduled
crawls (BLPOP with the interval as timeout), so a request starts a crawl at once.
"""

CRAWL_REQUESTS_KEY = "dvach:scraper:crawl-requests"
