"""Every number the README's Results section quotes, each with the table it comes from.

Each notebook records the numbers it reports in its own section of ``runs/<profile>/findings.md``
(``Findings(cfg.table_path("findings.md"), "04_correlate")``, ``.add(...)``, ``.save()``); the
other sections are kept, so the series builds the file notebook by notebook. A test checks that
every number in the README's Results section appears in ``runs/cpu/findings.md``, so a rerun that
changes a number fails until the README says the new one. No torch import.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Sequence
from pathlib import Path

from linguistic_collapse.core.paths import atomic_write_text, lock_for

TITLE = "# Findings"
INTRO = ("Every number the README's Results section quotes, with the table it comes from "
         "(written by the notebooks; do not edit).")
HEADER = ("| finding | value | source |", "| --- | --- | --- |")
SECTION_RE = re.compile(r"^## (?P<name>\S+)\s*$", re.M)
# A number as prose writes it: optional sign (ASCII or Unicode minus), digits with optional
# thousands commas, optional decimals; not part of a word such as "L4" or "d128".
NUMBER_RE = re.compile(r"(?<![\w.])[+\-−]?\d{1,3}(?:,\d{3})+(?:\.\d+)?(?![\w])"
                       r"|(?<![\w.])[+\-−]?\d+(?:\.\d+)?(?![\w])")


def format_value(value: float | int | str, fmt: str = "{:.2f}") -> str:
    """The text of one finding: strings as given, numbers through ``fmt`` ("n/a" if not finite)."""
    if isinstance(value, str):
        return value
    if isinstance(value, float) and not math.isfinite(value):
        return "n/a"
    return fmt.format(value)


def _cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


class Findings:
    """The numbers one notebook reports, saved as its section of a findings file."""

    def __init__(self, path: str | os.PathLike, section: str) -> None:
        self.path, self.section = Path(path), section
        self.rows: list[tuple[str, str, str]] = []

    def add(self, key: str, value: float | int | str, source: str, fmt: str = "{:.2f}") -> str:
        """Record ``key`` = ``value`` (formatted with ``fmt``) from ``source`` (a table and its
        row/column, e.g. "claims.csv: NC1 strong, all"); returns the text, to print it."""
        if any(k == key for k, _, _ in self.rows):
            raise ValueError(f"finding {key!r} recorded twice in section {self.section}")
        text = format_value(value, fmt)
        self.rows.append((key, text, source))
        return text

    def markdown(self) -> str:
        """This section as Markdown: a heading and a table of (finding, value, source)."""
        lines = [f"## {self.section}", "", *HEADER]
        lines += [f"| {_cell(k)} | {_cell(v)} | {_cell(s)} |" for k, v, s in self.rows]
        return "\n".join(lines)

    def save(self) -> Path:
        """Write this section into the findings file (other sections kept, sections sorted)."""
        with lock_for(self.path):
            sections = read_sections(self.path) if self.path.is_file() else {}
            sections[self.section] = self.markdown()
            body = "\n\n".join(sections[name] for name in sorted(sections))
            return atomic_write_text(self.path, f"{TITLE}\n\n{INTRO}\n\n{body}\n")


def read_sections(path: str | os.PathLike) -> dict[str, str]:
    """{section name: its Markdown} of a findings file."""
    text = Path(path).read_text(encoding="utf-8")
    starts = list(SECTION_RE.finditer(text))
    out = {}
    for i, m in enumerate(starts):
        end = starts[i + 1].start() if i + 1 < len(starts) else len(text)
        out[m["name"]] = text[m.start():end].strip()
    return out


def numbers(text: str) -> list[str]:
    """The numbers written in ``text``, normalised (Unicode minus as "-", no leading "+")."""
    return [normalise(m.group()) for m in NUMBER_RE.finditer(text)]


def normalise(number: str) -> str:
    """One spelling of a number: "−0.5", "+0.5" and "1,607" as "-0.5", "0.5" and "1607"."""
    return number.replace("−", "-").lstrip("+").replace(",", "")


def values(path: str | os.PathLike) -> set[str]:
    """Every number in the value column of a findings file (normalised; a value cell may hold
    several, e.g. an interval "0.83 [0.78, 0.89]")."""
    found: set[str] = set()
    for section in read_sections(path).values():
        for line in section.splitlines()[2 + len(HEADER):]:
            cells = [c.strip() for c in re.split(r"(?<!\\)\|", line)[1:-1]]
            if len(cells) == 3:
                found.update(numbers(cells[1]))
    return found


def missing_numbers(text: str, findings: set[str], ignore: Sequence[str] = ()) -> list[str]:
    """Numbers of ``text`` that are not among ``findings`` nor in ``ignore`` (in order)."""
    allowed = set(findings) | {normalise(i) for i in ignore}
    return [n for n in numbers(text) if n not in allowed and n.lstrip("-") not in allowed]
