"""The documentation holds together: every relative link of README.md and docs/*.md leads to a file
that exists (and, with an anchor, to a heading of that file), the README and docs/interfaces.md link
every page of docs/, and the README stays short enough to read before the commands."""

from __future__ import annotations

import re
import unicodedata
from pathlib import Path
from urllib.parse import unquote

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOCS = ROOT / "docs"
README_MAX_LINES = 250

# [text](target) and ![alt](target); the target ends at whitespace (an optional "title" follows) or ")".
LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
FENCE = re.compile(r"^\s*(```|~~~)")
INLINE_CODE = re.compile(r"(`+).*?\1")
HEADING = re.compile(r"^\s{0,3}(#{1,6})\s+(.*?)\s*#*\s*$")
EXTERNAL = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*:")   # http:, https:, mailto: ...


def markdown_files() -> list[Path]:
    return [README, *sorted(DOCS.glob("*.md"))]


def prose_lines(path: Path) -> list[tuple[int, str]]:
    """The lines outside fenced code blocks, with inline code removed (links there are not links)."""
    lines, in_fence = [], False
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if FENCE.match(line):
            in_fence = not in_fence
            continue
        if not in_fence:
            lines.append((number, INLINE_CODE.sub("", line)))
    return lines


def links(path: Path) -> list[tuple[int, str]]:
    return [(number, match.group(1)) for number, line in prose_lines(path) for match in LINK.finditer(line)]


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: markup dropped, lower case, punctuation removed, spaces to '-'."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)       # a link in a heading keeps its text
    text = text.replace("`", "").strip().lower()
    text = "".join(ch for ch in text
                   if ch in " -_" or unicodedata.category(ch)[0] in "LN")
    return text.replace(" ", "-")


def anchors_of(path: Path) -> set[str]:
    """The anchors of a markdown file's headings (outside code blocks), duplicates numbered as GitHub does."""
    seen: dict[str, int] = {}
    result = set()
    in_fence = False
    for line in path.read_text(encoding="utf-8").splitlines():
        if FENCE.match(line):
            in_fence = not in_fence
            continue
        match = None if in_fence else HEADING.match(line)
        if not match:
            continue
        base = slug(match.group(2))
        count = seen.get(base, 0)
        seen[base] = count + 1
        result.add(base if count == 0 else f"{base}-{count}")
    return result


def relative_links() -> list[tuple[Path, int, str]]:
    return [(path, number, target) for path in markdown_files() for number, target in links(path)
            if not EXTERNAL.match(target)]


@pytest.mark.parametrize("path", markdown_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_resolves(path: Path) -> None:
    broken = []
    for number, target in links(path):
        if EXTERNAL.match(target):
            continue
        file_part, _, anchor = target.partition("#")
        destination = (path.parent / unquote(file_part)).resolve() if file_part else path
        where = f"{path.relative_to(ROOT)}:{number}: {target}"
        if not destination.exists():
            broken.append(f"{where}: no file {destination}")
        elif ROOT not in destination.parents and destination != ROOT:
            broken.append(f"{where}: leads outside the repository")
        elif anchor and destination.is_file() and destination.suffix == ".md" \
                and unquote(anchor) not in anchors_of(destination):
            broken.append(f"{where}: no heading '#{anchor}' in {destination.relative_to(ROOT)}")
        elif anchor and destination.suffix != ".md":
            broken.append(f"{where}: an anchor into a file that has no headings")
    assert not broken, "broken links:\n" + "\n".join(broken)


@pytest.mark.parametrize("index", [README, DOCS / "interfaces.md"], ids=lambda p: str(p.relative_to(ROOT)))
def test_index_links_every_docs_page(index: Path) -> None:
    linked = {(index.parent / unquote(target.partition("#")[0])).resolve()
              for _, target in links(index) if not EXTERNAL.match(target) and target.partition("#")[0]}
    missing = [str(page.relative_to(ROOT)) for page in sorted(DOCS.glob("*.md"))
               if page.resolve() not in linked and page != index]
    assert not missing, f"{index.relative_to(ROOT)} does not link: {', '.join(missing)}"


def test_readme_is_short() -> None:
    lines = len(README.read_text(encoding="utf-8").splitlines())
    assert lines <= README_MAX_LINES, f"README.md has {lines} lines; keep it within {README_MAX_LINES} (move detail to docs/)"


def test_readme_keeps_the_two_commands() -> None:
    text = README.read_text(encoding="utf-8")
    assert "make run" in text
    assert "make test" in text   # CI's .ci/run runs exactly this


def test_slug_follows_github() -> None:
    assert slug("What the CPU suite shows") == "what-the-cpu-suite-shows"
    assert slug("Sizing a CPU suite by time: `--budget`") == "sizing-a-cpu-suite-by-time---budget"
    assert slug("Models — `benchmark/models/`") == "models--benchmarkmodels"
    assert slug("The paper's relatives") == "the-papers-relatives"
    assert slug("Table 6 end to end: ResNet-20 on the paper's whole schedule") == \
        "table-6-end-to-end-resnet-20-on-the-papers-whole-schedule"


def test_the_checker_finds_links() -> None:
    found = relative_links()
    assert any(target.startswith("docs/") for path, _, target in found if path == README)
    sample = "see [a](x.md), ![b](y.png \"t\") and `[not](a link)`"
    assert [m.group(1) for m in LINK.finditer(INLINE_CODE.sub("", sample))] == ["x.md", "y.png"]
