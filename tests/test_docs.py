"""The README stays true to the code: every setting is in its table, and the two commands and
the test command .ci/run uses are the ones it documents."""

from pathlib import Path

from shared.settings import Settings

REPO = Path(__file__).resolve().parent.parent
README = (REPO / "README.md").read_text()


def test_every_setting_is_documented():
    missing = [name.upper() for name in Settings.model_fields if f"`{name.upper()}`" not in README]
    assert not missing, f"settings missing from README's table (python -m shared.settings prints it): {missing}"


def test_readme_commands_are_the_ones_ci_and_make_run():
    assert "make run" in README and "make test" in README
    assert "make test" in (REPO / ".ci/run").read_text()
    makefile = (REPO / "Makefile").read_text()
    assert "\nrun:" in makefile and "\ntest:" in makefile
