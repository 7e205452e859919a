"""The repository's docs stand alone: no pointer outside it, and every relative link lands somewhere."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from django.conf import settings

ROOT = Path(settings.BASE_DIR)
DOCS = sorted([ROOT / "README.md", *ROOT.glob("docs/*.md"), *ROOT.glob("bench/README.md"), *ROOT.glob("*/README.md")])
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


def _anchors(markdown: str) -> set[str]:
    """GitHub's heading slugs: lower case, punctuation dropped, spaces to hyphens."""
    slugs = set()
    for heading in re.findall(r"^#+ (.+)$", markdown, flags=re.MULTILINE):
        slug = re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
        slugs.add(slug)
    return slugs


@pytest.mark.parametrize("doc", DOCS, ids=lambda path: str(path.relative_to(ROOT)))
def test_no_pointer_outside_the_repository(doc: Path) -> None:
    text = doc.read_text()
    assert "../shared" not in text
    for target in LINK.findall(text):
        if target.startswith(("http://", "https://", "mailto:", "#")):
            continue
        path = (doc.parent / target.split("#")[0]).resolve()
        assert path.is_relative_to(ROOT), f"{doc.name} links outside the repository: {target}"


@pytest.mark.parametrize("doc", DOCS, ids=lambda path: str(path.relative_to(ROOT)))
def test_every_relative_link_and_anchor_resolves(doc: Path) -> None:
    for target in LINK.findall(doc.read_text()):
        if target.startswith(("http://", "https://", "mailto:")):
            continue
        file_part, _, anchor = target.partition("#")
        path = (doc.parent / file_part).resolve() if file_part else doc
        assert path.exists(), f"{doc.name}: {target} does not exist"
        if anchor and path.suffix == ".md":
            assert anchor in _anchors(path.read_text()), f"{doc.name}: no heading for #{anchor} in {path.name}"


def test_the_contract_the_code_cites_is_in_the_repository() -> None:
    """Code and docs cite "CONTRACT §n": docs/contract.md has every section they cite."""
    contract = (ROOT / "docs" / "contract.md").read_text()
    sections = set(re.findall(r"^#+ (\d+b?)\. ", contract, flags=re.MULTILINE))
    cited = set()
    for path in [*ROOT.glob("*/**/*.py"), *DOCS]:
        if ".venv" in path.parts:
            continue
        for group in re.findall(r"CONTRACT\s+((?:§\s*\d+b?(?:[,\s]|and|–)*)+)", path.read_text()):
            cited |= set(re.findall(r"§\s*(\d+b?)", group))
    assert cited, "no citation found: the pattern is wrong"
    assert cited <= sections, f"cited but not in docs/contract.md: {sorted(cited - sections)}"
