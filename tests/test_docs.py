"""The documentation stays in step with what it documents: the configuration page quotes
config.example.toml whole (which test_config checks names every key), README's test command is the
one .ci/run runs, every docs page is in the MkDocs navigation, and README links only to pages that
exist."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
TEST_COMMAND = ".venv/bin/python -m pytest -q -n 2"


def test_the_configuration_page_quotes_config_example_toml_exactly():
    page = (DOCS / "configuration.md").read_text()
    blocks = re.findall(r"```toml\n(.*?)```", page, re.S)
    assert len(blocks) == 1, "one toml block: the example file"
    assert blocks[0] == (ROOT / "config.example.toml").read_text(), (
        "docs/configuration.md's copy of config.example.toml differs from the file: paste the file again")


def test_the_readme_gives_the_test_command_ci_runs():
    readme = (ROOT / "README.md").read_text()
    tests = readme[readme.index("## Tests"):]
    assert re.search(r"```sh\n(.*?)\n```", tests, re.S).group(1) == TEST_COMMAND
    ci = [line.strip() for line in (ROOT / ".ci" / "run").read_text().splitlines()]
    assert TEST_COMMAND in ci


def test_every_docs_page_is_in_the_navigation():
    config = (ROOT / "mkdocs.yml").read_text()
    nav = set(re.findall(r"^\s+- [^:]+: (\S+\.md)$", config, re.M))
    assert nav == {page.name for page in DOCS.glob("*.md")}


@pytest.mark.parametrize("link", sorted(set(re.findall(r"\]\((docs/[^)#]+)", (ROOT / "README.md").read_text()))))
def test_the_readme_links_to_pages_that_exist(link):
    assert (ROOT / link).is_file()
