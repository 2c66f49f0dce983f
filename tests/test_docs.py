"""The documentation's relative links resolve: every linked file exists, and every #anchor names a heading there."""

import re

import pytest

from conftest import REPO_ROOT


DOCUMENTS = sorted(
    [REPO_ROOT / "README.md", REPO_ROOT / "data" / "README.md", REPO_ROOT / "benchmarks" / "RESULTS.md"]
    + list((REPO_ROOT / "docs").glob("*.md"))
)
LINK = re.compile(r"\]\(([^)\s]+)\)")


def anchors(path):
    """GitHub's anchors of a Markdown file's headings: lower case, punctuation dropped, spaces as hyphens."""
    headings = re.findall(r"^#+ (.+)$", path.read_text(encoding="utf-8"), re.MULTILINE)
    return {re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-") for h in headings}


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda p: str(p.relative_to(REPO_ROOT)))
def test_relative_links_resolve(document):
    for target in LINK.findall(document.read_text(encoding="utf-8")):
        if re.match(r"[a-z]+:", target):
            continue  # https:, mailto:
        path, _, anchor = target.partition("#")
        linked = (document.parent / path).resolve() if path else document
        assert linked.exists(), f"{document.name}: {target} does not exist"
        if anchor:
            assert anchor in anchors(linked), f"{document.name}: {target} names no heading of {linked.name}"


def test_the_readme_is_short_and_every_docs_page_opens_with_a_command():
    assert len((REPO_ROOT / "README.md").read_text(encoding="utf-8").splitlines()) <= 150
    for page in (REPO_ROOT / "docs").glob("*.md"):
        lines = page.read_text(encoding="utf-8").splitlines()
        assert lines[0].startswith("# ") and lines[2] == "```bash", f"{page.name} opens with a command"
