"""Settings from the environment (and an optional `.env`), one class per service.

Each service reads its own class and nothing else:

| service | class |
|---|---|
| gateway | `GatewaySettings` |
| inference worker | `WorkerSettings` |
| bot | `BotSettings` |
| scraper | `ScraperSettings` |
| trainer | `TrainerSettings`; `train` also `TrainOptions` |
| local stack (`make run`) | `ServiceSettings`, and the classes of the services it starts |

They share groups declared once in base.py (Redis, database, data folder and logging; the queue's
timing; torch threads; the model store). `python -m shared.settings` lists every variable;
`python -m shared.settings --markdown` writes docs/settings.md.
"""

from shared.settings.base import (
    DEFAULT_BASE_MODEL,
    DEFAULT_MODEL,
    REPO_ROOT,
    CliOption,
    ComputeSettings,
    ModelStoreSettings,
    QueueSettings,
    ServiceSettings,
    get_settings,
)
from shared.settings.bot import BotSettings
from shared.settings.gateway import GatewaySettings
from shared.settings.scraper import ScraperSettings, parse_boards
from shared.settings.trainer import TrainConfig, TrainerSettings, TrainOptions
from shared.settings.worker import WorkerSettings

__all__ = [
    "DEFAULT_BASE_MODEL",
    "DEFAULT_MODEL",
    "REPO_ROOT",
    "BotSettings",
    "CliOption",
    "ComputeSettings",
    "GatewaySettings",
    "ModelStoreSettings",
    "QueueSettings",
    "ScraperSettings",
    "ServiceSettings",
    "TrainConfig",
    "TrainOptions",
    "TrainerSettings",
    "WorkerSettings",
    "get_settings",
    "parse_boards",
]
