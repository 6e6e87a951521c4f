"""`python -m services.scraper --help`."""

from services.scraper.cli import main

if __name__ == "__main__":
    main()
