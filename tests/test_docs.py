"""The docs stay true to the code: every setting is in docs/settings.md as the code declares it,
the README is short and names the commands .ci/run and the Makefile use, and no docstring points
at a file the repository does not have."""

import ast
import re
from pathlib import Path

from shared.settings.docs import all_env_names, markdown

REPO = Path(__file__).resolve().parent.parent
README = (REPO / "README.md").read_text()
SETTINGS_DOC = REPO / "docs" / "settings.md"
README_LIMIT = 8000  # characters: what it is, the commands, the API, the bot, links


def test_settings_doc_is_what_the_code_declares():
    assert SETTINGS_DOC.read_text() == markdown(), (
        "docs/settings.md differs from the settings in the code: "
        "run `python -m shared.settings --markdown > docs/settings.md`"
    )
    missing = [name for name in sorted(all_env_names()) if f"`{name}`" not in SETTINGS_DOC.read_text()]
    assert not missing, missing


def test_readme_is_short_and_links_what_moved_out():
    assert len(README) <= README_LIMIT, f"README.md has {len(README)} characters, at most {README_LIMIT}"
    for doc in re.findall(r"\]\((docs/[^)#]+)", README):
        assert (REPO / doc).exists(), f"README links {doc}, which does not exist"
    assert "docs/settings.md" in README


def test_readme_commands_are_the_ones_ci_and_make_run():
    assert "make run" in README and "make test" in README
    ci = (REPO / ".ci/run").read_text()
    makefile = (REPO / "Makefile").read_text()
    ci_commands = re.findall(r"^make ([a-z-]+)$", ci, flags=re.MULTILINE)
    assert "test" in ci_commands and "audit" in ci_commands
    for target in ["run", "test", "test-fast", *ci_commands]:
        assert f"make {target}" in README, f"README does not name make {target}"
        assert f"\n{target}:" in makefile, f"no {target} target in the Makefile"


def _docstrings(path: Path) -> list[str]:
    tree = ast.parse(path.read_text())
    nodes = [tree, *(n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef))]
    return [doc for node in nodes if (doc := ast.get_docstring(node))]


def test_docstrings_point_at_files_that_exist():
    """A docstring that sends the reader to a document (docs/..., or a document in capitals at the
    top of the repository, a capitalised name ending in .md) sends them somewhere real."""
    missing = []
    for path in sorted(
        p for top in ("shared", "services", "tests", "bench", "tools") for p in (REPO / top).rglob("*.py")
    ):
        for doc in _docstrings(path):
            for ref in re.findall(r"(?<![\w/.-])(docs/[\w-]+\.md|[A-Z][A-Z_]+\.md)\b", doc):
                if not (REPO / ref).exists():
                    missing.append(f"{path.relative_to(REPO)}: {ref}")
    assert not missing, "docstrings point at files that are not in the repository:\n" + "\n".join(missing)
