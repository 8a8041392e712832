"""The documentation's examples run, and its links lead somewhere.

README.md, CONTRIBUTING.md and docs/*.md hold three kinds of fenced examples:

- ```python blocks with ``>>>`` lines: doctests, collected by pytest itself
  (``--doctest-glob`` in pyproject.toml);
- ```console blocks with ``$ zoo ...`` lines: run here through the installed ``zoo`` command
  in a fresh process with fresh caches, their output compared with the block's (``...``
  stands for any text, as in a doctest);
- either kind that cannot run here (it trains for minutes, needs your data or the network)
  carries ``<!-- not run: REASON -->`` directly above it.

Any other shell block (```bash, ```sh) is refused: it would be an example nobody runs.
"""

from __future__ import annotations

import doctest
import os
import re
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import tomllib

ROOT = Path(__file__).resolve().parent.parent
ZOO = str(Path(sys.executable).with_name("zoo"))
SHELL_LANGS = {"bash", "sh", "shell", "zsh", "shell-session"}
NOT_RUN = re.compile(r"^\s*<!--\s*not run:\s*(?P<reason>.*?)\s*-->\s*$")
FENCE = re.compile(r"^\s*(?P<fence>```+)(?P<lang>[\w-]*)\s*$")
LINK = re.compile(r"(?<!\!)\[[^\]\n]*\]\((?P<target>[^)\s]+)\)")
MIN_REASON = 10  # characters: "slow" is not a reason, "trains for minutes" is


def doc_files() -> list[Path]:
    return [ROOT / "README.md", ROOT / "CONTRIBUTING.md", *sorted((ROOT / "docs").glob("*.md"))]


@dataclass(frozen=True)
class Block:
    path: Path
    line: int  # 1-based line of the opening fence
    lang: str
    body: list[str]
    not_run: str | None  # the reason given above it, or None

    @property
    def where(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}"


def parse_blocks(path: Path) -> tuple[list[Block], list[str]]:
    """The fenced blocks of a Markdown file, and the problems found while reading them
    (a ``not run`` comment with no block under it, a fence never closed)."""
    lines = path.read_text(encoding="utf-8").splitlines()
    blocks, problems = [], []
    i = 0
    pending: tuple[int, str] | None = None  # a "not run" comment waiting for its block
    while i < len(lines):
        line = lines[i]
        comment = NOT_RUN.match(line)
        fence = FENCE.match(line)
        if comment:
            if pending:
                problems.append(f"{path.name}:{pending[0]}: 'not run' comment with no block "
                                "under it")
            pending = (i + 1, comment["reason"])
        elif fence:
            end = next((j for j in range(i + 1, len(lines))
                        if lines[j].strip() == fence["fence"]), None)
            if end is None:
                problems.append(f"{path.name}:{i + 1}: code block never closed")
                break
            reason = pending[1] if pending and pending[0] == i else None
            if pending and pending[0] != i:
                problems.append(f"{path.name}:{pending[0]}: 'not run' comment must sit "
                                "directly above its block")
            blocks.append(Block(path, i + 1, fence["lang"], lines[i + 1:end], reason))
            pending = None
            i = end
        elif pending and line.strip():
            problems.append(f"{path.name}:{pending[0]}: 'not run' comment with no block under it")
            pending = None
        i += 1
    if pending:
        problems.append(f"{path.name}:{pending[0]}: 'not run' comment with no block under it")
    return blocks, problems


def block_problems(blocks: list[Block]) -> list[str]:
    """What makes an example neither run nor explained."""
    problems = []
    for b in blocks:
        if b.lang in SHELL_LANGS:
            problems.append(f"{b.where}: a ```{b.lang} block; write shell examples as ```console "
                            "with '$ ' before each command")
        if b.not_run is not None and len(b.not_run) < MIN_REASON:
            problems.append(f"{b.where}: 'not run' needs a reason (what it costs or needs, "
                            f"which test covers it), got {b.not_run!r}")
        if b.lang == "console":
            if not b.body or not b.body[0].startswith("$ "):
                problems.append(f"{b.where}: a console block starts with a '$ ' command")
            if b.not_run is None:
                for cmd in commands(b):
                    if shlex.split(cmd, comments=True)[:1] != ["zoo"]:
                        problems.append(f"{b.where}: only `zoo` commands run here; mark "
                                        f"`{cmd}` with <!-- not run: REASON -->")
        if b.lang == "python" and b.not_run is None and not any(
                line.lstrip().startswith(">>>") for line in b.body):
            problems.append(f"{b.where}: a python block is a >>> doctest, or says why not "
                            "with <!-- not run: REASON -->")
    return problems


def commands(block: Block) -> list[str]:
    return [cmd for cmd, _ in steps(block)]


def steps(block: Block) -> list[tuple[str, str]]:
    """(command, expected output) pairs of a console block; a trailing backslash continues
    a command on the next line."""
    out: list[tuple[str, list[str]]] = []
    lines = iter(block.body)
    for line in lines:
        if line.startswith("$ "):
            cmd = line[2:]
            while cmd.endswith("\\"):
                cmd = cmd[:-1] + " " + next(lines, "").strip()
            out.append((cmd, []))
        elif out:
            out[-1][1].append(line)
    return [(cmd, "".join(e + "\n" for e in expected)) for cmd, expected in out]


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to dashes."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    found, inside = set(), False
    for line in path.read_text(encoding="utf-8").splitlines():
        if FENCE.match(line):
            inside = not inside
        elif not inside and (m := re.match(r"^#{1,6} (.*)$", line)):
            found.add(slug(m[1]))
    return found


def link_problems(path: Path) -> list[str]:
    problems, inside = [], False
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if FENCE.match(line):
            inside = not inside
        if inside:
            continue
        for m in LINK.finditer(line):
            target = m["target"]
            if re.match(r"^[a-z][a-z0-9+.-]*:", target):  # https:, mailto:
                continue
            file_part, _, anchor = target.partition("#")
            dest = (path.parent / file_part).resolve() if file_part else path
            where = f"{path.relative_to(ROOT)}:{number}: link {target!r}"
            if not dest.exists():
                problems.append(f"{where} points to a missing file")
            elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
                problems.append(f"{where} names no heading of {dest.name}")
    return problems


# --- the documents as they are ------------------------------------------------------------

ALL_BLOCKS = [b for path in doc_files() for b in parse_blocks(path)[0]]
RUN_BLOCKS = [b for b in ALL_BLOCKS if b.lang == "console" and b.not_run is None]


def test_every_example_runs_or_says_why():
    problems = [p for path in doc_files() for p in parse_blocks(path)[1]]
    assert problems + block_problems(ALL_BLOCKS) == []
    assert RUN_BLOCKS, "no console block is run: the parser lost them"


def test_every_relative_link_leads_somewhere():
    assert [p for path in doc_files() for p in link_problems(path)] == []


def test_readme_is_short_and_links_every_page():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert len(readme.splitlines()) <= 300
    index = (ROOT / "docs" / "index.md").read_text(encoding="utf-8")
    for page in (ROOT / "docs").glob("*.md"):
        if page.name != "index.md":
            assert f"docs/{page.name})" in readme, f"README.md does not link docs/{page.name}"
            assert f"]({page.name})" in index, f"docs/index.md does not link {page.name}"
    python = next(b for b in ALL_BLOCKS if b.path.name == "README.md" and b.lang == "python")
    console = next(b for b in RUN_BLOCKS if b.path.name == "README.md")
    assert len(python.body) <= 10 and len(console.body) <= 10


def test_pytest_collects_the_doctests_of_every_page():
    options = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["pytest"]["ini_options"]
    assert {"README.md", "docs"} <= set(options["testpaths"])
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider",
         "README.md", "docs"],
        cwd=ROOT, capture_output=True, text=True, timeout=120, env=os.environ.copy())
    assert proc.returncode == 0, proc.stdout + proc.stderr
    collected = {line.split("::")[0] for line in proc.stdout.splitlines() if "::" in line}
    with_doctests = {str(p.relative_to(ROOT)) for p in doc_files()
                     if ">>> " in p.read_text(encoding="utf-8")}
    assert len(with_doctests) >= 2 and with_doctests <= collected


@pytest.fixture(scope="module")
def fresh_env(tmp_path_factory):
    home = tmp_path_factory.mktemp("docs-home")
    env = os.environ.copy()
    env.update(ZOO_CORE_CACHE=str(home / "zoo-cache"), HF_HOME=str(home / "hf"),
               OMP_NUM_THREADS="1", COLUMNS="100")
    for name in ("ZOO_CORE_REGISTRY", "ZOO_CORE_PLUGINS", "ZOO_CORE_BLOCK_PLUGINS",
                 "ZOO_CORE_DISABLE_PLUGIN_AUTOLOAD", "ZOO_CORE_STRICT_PLUGINS"):
        env.pop(name, None)
    return env


@pytest.mark.slow  # a fresh process with a fresh cache: 1-25 s per block
@pytest.mark.parametrize("block", RUN_BLOCKS, ids=lambda b: b.where)
def test_console_example_runs(block, fresh_env):
    checker = doctest.OutputChecker()
    for cmd, expected in steps(block):
        argv = [ZOO, *shlex.split(cmd, comments=True)[1:]]
        start = time.monotonic()
        proc = subprocess.run(argv, cwd=ROOT, env=fresh_env, capture_output=True, text=True,
                              timeout=120)
        assert proc.returncode == 0, f"{block.where}: `{cmd}` failed:\n{proc.stderr}"
        assert checker.check_output(expected, proc.stdout, doctest.ELLIPSIS), (
            f"{block.where}: `{cmd}` printed\n{proc.stdout}\ninstead of\n{expected}")
        assert time.monotonic() - start < 60, f"{block.where}: `{cmd}` is too slow to run here"


# --- the checks themselves catch what they are for -------------------------------------------

BAD_DOC = """\
# A page

See [the API](api.md), [a heading](#a-page), [nowhere](missing.md) and [no such](#nope).

```bash
zoo list
```

<!-- not run: slow -->
```console
$ zoo finetune --data DIR
```

```console
$ python train.py
```

```python
model = build()
```

<!-- not run: needs the network and an account on huggingface.co -->

Some text.
"""


def test_the_checks_catch_unrun_examples_and_broken_links(tmp_path, monkeypatch):
    (tmp_path / "api.md").write_text("# API\n")
    page = tmp_path / "page.md"
    page.write_text(BAD_DOC)
    monkeypatch.setitem(globals(), "ROOT", tmp_path)
    blocks, problems = parse_blocks(page)
    found = problems + block_problems(blocks) + link_problems(page)
    expected = ["page.md:22: 'not run' comment with no block under it",
                "page.md:5: a ```bash block",
                "page.md:10: 'not run' needs a reason",
                "page.md:14: only `zoo` commands run here",
                "page.md:18: a python block is a >>> doctest",
                "page.md:3: link 'missing.md' points to a missing file",
                "page.md:3: link '#nope' names no heading of page.md"]
    assert len(found) == len(expected), found
    for problem, start in zip(found, expected, strict=True):
        assert problem.startswith(start), (problem, start)


def test_console_steps_join_continued_lines_and_keep_output():
    block = Block(ROOT / "x.md", 1, "console",
                  ["$ zoo build a \\", "    --json", '{"a": 1}', "$ zoo list", "x", "y"], None)
    assert steps(block) == [("zoo build a  --json", '{"a": 1}\n'), ("zoo list", "x\ny\n")]
