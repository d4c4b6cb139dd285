"""The documentation's examples run: every ```python block of README.md and docs/*.md, as a user would paste it.

Each block runs in a fresh temporary working directory (what it writes, e.g. ``runs/moons``, lands there) and a fresh
namespace, so a renamed function, a changed signature or a wrong keyword in the docs fails here. An HTML comment on
the line right before a block changes how it runs:

- ``<!-- docs-test: continue -->``: the block continues the previous block of the same page (a fragment that uses its
  names), in that block's namespace and directory; the two run as one test.
- ``<!-- docs-test: skip (REASON) -->``: the block is not run (it needs a GPU, the network, a Hub account, a user's own
  files, or it is a reference listing of signatures, not code), and the test reports a skip with REASON. Its
  ``from straightflow... import ...`` lines still run, so a listing cannot name something that does not exist.
- ``<!-- docs-test: slow (REASON) -->``: the block trains at the size a user would (minutes on a shared CPU); it is
  skipped like ``skip``, with REASON, unless ``STRAIGHTFLOW_DOCS_SLOW=1``, which runs it as written.

The docs call a user's own modules ``MyNet``, ``MyEncoder`` and ``MyDataset``; a block that uses them without
defining them gets the small stand-ins below, as a user would bring their own.

The ``straightflow ...`` command lines of the ```bash blocks are run by test_docs_commands.py (with ``--dry-run``),
which reads them with ``fenced_blocks(page, "bash")``.

Cost: about 25 s on 2 shared cores, most of it the getting-started block (a 300-step run, evaluated and exported);
the blocks marked slow, with STRAIGHTFLOW_DOCS_SLOW=1, add several minutes (three 3000-step runs in the README alone).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]

FENCE = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>```+|~~~+)[ \t]*(?P<info>[^`\n]*)$")
MARKER = re.compile(r"^\s*<!--\s*docs-test:\s*(?P<what>continue|(?:skip|slow)\s*\((?P<reason>.*)\))\s*-->\s*$")
RUN_SLOW = os.environ.get("STRAIGHTFLOW_DOCS_SLOW") == "1"
STRAIGHTFLOW_IMPORT = re.compile(r"^[ \t]*(?:from[ \t]+straightflow[\w.]*[ \t]+import[ \t]+(?:\([^)]*\)|[^\n]*)"
                                 r"|import[ \t]+straightflow[^\n]*)", re.M)


@dataclass(frozen=True)
class Block:
    """One fenced code block of a page: its language, its code and the docs-test marker right before it."""

    page: Path
    line: int  # 1-based line of the opening fence
    lang: str
    code: str
    marker: str = ""  # "", "continue", "skip" or "slow"
    reason: str = ""  # the skip's reason

    @property
    def where(self) -> str:
        return f"{self.page.relative_to(ROOT)}:{self.line}"


def fenced_blocks(page: Path, lang: str) -> list[Block]:
    """The fenced blocks of ``page`` whose info string starts with ``lang``, in page order, with their markers."""
    lines = page.read_text(encoding="utf-8").splitlines()
    blocks, i = [], 0
    while i < len(lines):
        opening = FENCE.match(lines[i])
        if not opening:
            i += 1
            continue
        fence, indent, info = opening["fence"], opening["indent"], opening["info"].strip()
        end = i + 1
        while end < len(lines) and not re.match(rf"^[ \t]*{re.escape(fence)}[ \t]*$", lines[end]):
            end += 1
        if info.split(" ")[0] == lang:
            before = next((lines[j] for j in range(i - 1, -1, -1) if lines[j].strip()), "")
            marker = MARKER.match(before)
            code = "\n".join(line[len(indent):] if line.startswith(indent) else line for line in lines[i + 1 : end])
            blocks.append(Block(page, i + 1, lang, code + "\n",
                                marker["what"].split("(")[0].strip() if marker else "",
                                (marker["reason"] or "").strip() if marker else ""))
        i = end + 1
    return blocks


def chains(blocks: list[Block]) -> list[list[Block]]:
    """Blocks grouped as they run: each block with the ``continue`` blocks after it."""
    out: list[list[Block]] = []
    for block in blocks:
        if block.marker == "continue" and out and out[-1][0].page == block.page:
            out[-1].append(block)
        else:
            out.append([block])
    return out


PYTHON_CHAINS = [chain for page in PAGES for chain in chains(fenced_blocks(page, "python"))]


# --- stand-ins for the user's own modules the docs name --------------------------------------------------------------

class MyNet(torch.nn.Module):
    """A user's velocity network for 2D data: forward(x, t) -> a velocity of x's shape; its output layer is ``.out``."""

    def __init__(self, dim: int = 2, width: int = 32, out_mult: int = 1):
        super().__init__()
        self.body = torch.nn.Sequential(torch.nn.Linear(dim + 1, width), torch.nn.SiLU())
        self.out = torch.nn.Linear(width, dim * out_mult)

    def forward(self, x, t):
        return self.out(self.body(torch.cat([x, t.reshape(-1, 1).to(x)], 1)))


class MyEncoder(MyNet):
    """A user's encoder for the curvature method: twice the channels (mean, log-variance)."""

    def __init__(self):
        super().__init__(width=16, out_mult=2)


class MyDataset(torch.utils.data.Dataset):
    """A user's map-style Dataset of 2D points (two rings)."""

    def __len__(self):
        return 512

    def __getitem__(self, i):
        angle = torch.tensor(i * 2.399)
        return torch.stack([angle.cos(), angle.sin()]) * (1 + i % 2)


USER_MODULES = {"MyNet": MyNet, "MyEncoder": MyEncoder, "MyDataset": MyDataset}


def run_block(block: Block, namespace: dict) -> None:
    for name, module in USER_MODULES.items():
        if re.search(rf"\b{name}\(", block.code) and not re.search(rf"^\s*class {name}\b", block.code, re.M):
            namespace.setdefault(name, module)
    # blank lines first, so a traceback names the line of the page
    exec(compile("\n" * block.line + block.code, str(block.page), "exec"), namespace)


def check_imports(block: Block) -> None:
    """A skipped block's ``straightflow`` imports still import: a listing names only what exists."""
    for statement in STRAIGHTFLOW_IMPORT.findall(block.code):
        code = statement.split("#")[0] if "(" not in statement else statement
        try:
            exec(compile(code.strip(), block.where, "exec"), {})
        except ImportError as err:
            pytest.fail(f"{block.where}: {code.strip()!r} fails: {err}")


@pytest.mark.parametrize("chain", PYTHON_CHAINS, ids=[chain[0].where for chain in PYTHON_CHAINS])
def test_python_block_runs(chain: list[Block], tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    namespace: dict = {"__name__": "__docs__"}
    for block in chain:
        skipped = next((b for b in chain[: chain.index(block) + 1]
                        if b.marker == "skip" or (b.marker == "slow" and not RUN_SLOW)), None)
        if skipped is not None:
            for rest in chain[chain.index(block):]:
                check_imports(rest)
            hint = " (STRAIGHTFLOW_DOCS_SLOW=1 runs it)" if skipped.marker == "slow" else ""
            pytest.skip(f"{block.where}: {skipped.reason or 'marked ' + skipped.marker}{hint}")
        run_block(block, namespace)


def test_every_page_is_read():
    """The parser finds blocks on the pages that have them, and a marker names what it does."""
    found = {chain[0].page.name for chain in PYTHON_CHAINS}
    assert {"README.md", "api.md", "getting-started.md", "data.md"} <= found
    for page in PAGES:
        for number, line in enumerate(page.read_text(encoding="utf-8").splitlines(), 1):
            if "docs-test" in line:
                assert MARKER.match(line), f"{page.relative_to(ROOT)}:{number}: not a docs-test marker: {line.strip()}"


def test_the_readme_is_a_front_page():
    """README.md stays a front page (what, install, two short examples, links), at most 200 lines; the manual is the
    docs site."""
    lines = (ROOT / "README.md").read_text().splitlines()
    assert len(lines) <= 200, len(lines)
    for page in ("docs/getting-started.md", "docs/guide.md", "docs/api.md", "docs/architecture.md"):
        assert f"]({page})" in "\n".join(lines), page
