"""Command-line options made from settings fields, so that a command's options and its
environment variables are one declaration (default, bounds, meaning) in shared/settings/.

    @app.command()
    @settings_options(ScraperSettings, "toxicity_model", "toxicity_batch_size")
    def score(settings: ScraperSettings, limit: int | None = None) -> None: ...

makes `score` take `--model` and `--batch-size` (the fields' `CliOption` names) besides its own
`limit`. An option that is given wins over the environment; one that is not leaves the variable
or the default in place. Values are checked by the settings class, and a bad one is reported as
`error: --batch-size: ...` (exit code 2).
"""

from __future__ import annotations

import functools
import inspect
import types
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from pydantic import ValidationError
from pydantic_settings import BaseSettings

from shared.settings.docs import env_name, option_names, shown_default

S = TypeVar("S", bound=BaseSettings)


def _option_type(annotation: Any) -> Any:
    """The type click parses an option as: the field's type without None; text for anything else
    (comma-separated lists, Literal choices), which the settings class then validates."""
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    if typing.get_origin(annotation) in (typing.Union, types.UnionType) and len(args) == 1:
        annotation = args[0]
    if annotation in (bool, int, float, str) or (isinstance(annotation, type) and issubclass(annotation, Path)):
        return annotation
    return str


def _where(model: type[BaseSettings], loc: tuple[Any, ...], given: dict, options: dict) -> str:
    """What a validation error is about: the option when it was given, else the variable."""
    by_alias = {field.validation_alias: name for name, field in model.model_fields.items() if field.validation_alias}
    name = by_alias.get(loc[0], loc[0]) if loc else None
    if name in given:
        return options[name][0].split("/")[0]
    return env_name(model, name) if name in model.model_fields else "settings"


def settings_options(model: type[S], *fields: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """A typer command decorator: the command's first parameter receives `model` built from the
    environment and the given options; `fields` names the fields offered as options (none: the
    command only reads the environment). The command's other parameters stay typer parameters."""
    import typer

    names = list(fields)
    options: dict[str, tuple[str, ...]] = {}
    parameters = []
    for name in names:
        field = model.model_fields[name]
        decls = option_names(name, field)
        options[name] = decls
        help_text = f"{field.description} (env {env_name(model, name)}, default {shown_default(field)})"
        parameters.append(
            inspect.Parameter(
                name,
                inspect.Parameter.KEYWORD_ONLY,
                default=typer.Option(None, *decls, help=help_text, show_default=False),
                annotation=_option_type(field.annotation) | None,
            )
        )

    def decorate(command: Callable[..., Any]) -> Callable[..., Any]:
        own = list(inspect.signature(command, eval_str=True).parameters.values())[1:]

        @functools.wraps(command)
        def run(**kwargs: Any) -> Any:
            given = {name: kwargs.pop(name) for name in names}
            given = {name: value for name, value in given.items() if value is not None}
            try:
                settings = model(**given)
            except ValidationError as exc:
                for error in exc.errors():
                    typer.echo(f"error: {_where(model, error['loc'], given, options)}: {error['msg']}", err=True)
                raise typer.Exit(2) from None
            return command(settings, **kwargs)

        signature = inspect.Signature([*own, *parameters])
        run.__signature__ = signature  # type: ignore[attr-defined]
        run.__annotations__ = {p.name: p.annotation for p in signature.parameters.values()}
        del run.__wrapped__  # typer must read the signature above, not the command's
        return run

    return decorate
