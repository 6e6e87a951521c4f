"""The README stays true to the code: every setting is in its table, and the two commands and
the test command .ci/run uses are the ones it documents."""

import re
from pathlib import Path

from shared.settings import Settings

REPO = Path(__file__).resolve().parent.parent
README = (REPO / "README.md").read_text()


DOCS = "\n".join(path.read_text() for path in sorted((REPO / "docs").glob("*.md")))


def test_every_setting_is_documented():
    missing = [name.upper() for name in Settings.model_fields if f"`{name.upper()}`" not in README + DOCS]
    assert not missing, f"settings in neither README's table (python -m shared.settings) nor docs/: {missing}"


def test_readme_commands_are_the_ones_ci_and_make_run():
    assert "make run" in README and "make test" in README
    ci = (REPO / ".ci/run").read_text()
    makefile = (REPO / "Makefile").read_text()
    ci_commands = re.findall(r"^make ([a-z-]+)$", ci, flags=re.MULTILINE)
    assert "test" in ci_commands and "audit" in ci_commands
    for target in ["run", "test", "test-fast", *ci_commands]:
        assert f"make {target}" in README, f"README does not name make {target}"
        assert f"\n{target}:" in makefile, f"no {target} target in the Makefile"
