"""`python -m shared.settings [--markdown]`: every setting, as `.env` lines or as docs/settings.md."""

import argparse

from shared.settings.docs import listing, markdown

parser = argparse.ArgumentParser(prog="python -m shared.settings", description=__doc__)
parser.add_argument("--markdown", action="store_true", help="print docs/settings.md")
print(markdown() if parser.parse_args().markdown else listing(), end="")
