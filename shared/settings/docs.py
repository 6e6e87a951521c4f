"""The settings as people read them: every variable with its default and meaning, per service.

`python -m shared.settings` prints them in the `.env` style; `--markdown` prints docs/settings.md
(tests/test_docs.py fails when the file differs from what the code says).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings

from shared.settings.base import (
    REPO_ROOT,
    CliOption,
    ComputeSettings,
    ModelStoreSettings,
    QueueSettings,
    ServiceSettings,
)
from shared.settings.bot import BotSettings
from shared.settings.gateway import GatewaySettings
from shared.settings.scraper import ScraperSettings
from shared.settings.trainer import TrainerSettings, TrainOptions
from shared.settings.worker import WorkerSettings


@dataclass(frozen=True)
class Group:
    """A class of settings as one section: the fields it declares itself (not those of its bases)."""

    cls: type[BaseSettings]
    title: str
    read_by: str
    every_field_is_an_option: bool = False  # `train`'s options: each field is also a command-line option

    def fields(self) -> dict[str, FieldInfo]:
        inherited = {name for base in self.cls.__mro__[1:] if base in _GROUP_CLASSES for name in base.model_fields}
        return {name: field for name, field in self.cls.model_fields.items() if name not in inherited}


GROUPS: tuple[Group, ...] = (
    Group(ServiceSettings, "Common", "every service"),
    Group(QueueSettings, "Generation queue", "the gateway, the bot and the inference workers"),
    Group(ComputeSettings, "Torch", "the inference workers, the scraper's `score` and the trainer"),
    Group(ModelStoreSettings, "Model store", "the inference workers and the trainer"),
    Group(GatewaySettings, "Gateway", "`python -m services.gateway`"),
    Group(WorkerSettings, "Inference worker", "`python -m services.inference_worker`"),
    Group(BotSettings, "Bot", "`python -m services.bot`"),
    Group(ScraperSettings, "Scraper", "`python -m services.scraper`"),
    Group(TrainerSettings, "Trainer", "`python -m services.trainer`"),
    Group(TrainOptions, "A training run", "`python -m services.trainer train`", every_field_is_an_option=True),
)
_GROUP_CLASSES = {group.cls for group in GROUPS}
S = TypeVar("S", bound=BaseSettings)


def env_name(cls: type[BaseSettings], name: str) -> str:
    """The environment variable a field of `cls` is read from."""
    alias = cls.model_fields[name].validation_alias
    if isinstance(alias, str):
        return alias.upper()
    return (cls.model_config.get("env_prefix", "") + name).upper()


def env_names(cls: type[BaseSettings]) -> set[str]:
    """Every variable `cls` reads."""
    return {env_name(cls, name) for name in cls.model_fields}


def all_env_names() -> set[str]:
    return {name for group in GROUPS for name in env_names(group.cls)}


def from_variables(cls: type[S], variables: Mapping[str, str | None]) -> S:
    """`cls` built from a mapping of environment names (a ConfigMap, an env file), the process's
    environment filling in the rest; raises pydantic's ValidationError for a bad value."""
    given: dict[str, Any] = {
        name: variables[env_name(cls, name)] for name in cls.model_fields if variables.get(env_name(cls, name))
    }
    return cls.model_validate(given)


def shown_default(field: FieldInfo) -> str:
    """A field's default as one writes it in the environment (`unset` for None)."""
    default: Any = field.default
    if default is None:
        return "unset"
    if isinstance(default, bool):
        return str(default).lower()
    if isinstance(default, Path):
        return str(default.relative_to(REPO_ROOT)) if default.is_relative_to(REPO_ROOT) else str(default)
    if isinstance(default, tuple):
        return ",".join(map(str, default))
    return str(default)


def option_names(name: str, field: FieldInfo) -> tuple[str, ...]:
    """The command-line names of a field: its `CliOption` names, else `--<name>`."""
    marker = next((m for m in field.metadata if isinstance(m, CliOption)), None)
    if marker is not None and marker.names:
        return marker.names
    return ("--" + name.replace("_", "-"),)


def is_option(field: FieldInfo) -> bool:
    return any(isinstance(m, CliOption) for m in field.metadata)


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def markdown() -> str:
    """docs/settings.md."""
    lines = [
        "# Settings",
        "",
        "<!-- Generated from shared/settings/ by `python -m shared.settings --markdown > docs/settings.md`;",
        "     tests/test_docs.py fails when this file and the code differ. Edit the code, not this file. -->",
        "",
        "Every service is configured from the environment (or a `.env` file in its working folder).",
        "Each service reads its own class in `shared/settings/`; the groups at the top are shared by",
        "several services and declared once. Secrets (`SecretStr`) never appear in logs or errors.",
        "`python -m shared.settings` prints the same list in the `.env` style.",
    ]
    for group in GROUPS:
        lines += ["", f"## {group.title}", "", f"Read by {group.read_by} (`{group.cls.__name__}`).", ""]
        fields = group.fields()
        with_options = group.every_field_is_an_option or any(is_option(field) for field in fields.values())
        if with_options:
            lines += ["| variable | option | default | meaning |", "|---|---|---|---|"]
        else:
            lines += ["| variable | default | meaning |", "|---|---|---|"]
        for name, field in fields.items():
            cells = [f"`{env_name(group.cls, name)}`"]
            if with_options:
                shown = group.every_field_is_an_option or is_option(field)
                cells.append(" ".join(f"`{o}`" for o in option_names(name, field)) if shown else "")
            default = shown_default(field)
            cells += ["unset" if default == "unset" else f"`{default}`", field.description or ""]
            lines.append("| " + " | ".join(_cell(c) for c in cells) + " |")
    return "\n".join(lines) + "\n"


def listing() -> str:
    """Every variable in the `.env` style: a comment with its meaning, then NAME=default."""
    lines: list[str] = []
    for group in GROUPS:
        lines += [f"# --- {group.title}: read by {group.read_by}", ""]
        for name, field in group.fields().items():
            default = shown_default(field)
            lines += [f"# {field.description}", f"{env_name(group.cls, name)}={'' if default == 'unset' else default}"]
        lines.append("")
    return "\n".join(lines)
