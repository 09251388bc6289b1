"""List the figures in README.md, MODEL_CARD.md and BENCHMARKS.md that no file under reports/ contains.

    python tools/unbacked_figures.py [--docs README.md MODEL_CARD.md BENCHMARKS.md] [--reports reports]

A figure is a number written with a decimal point in the documents' prose and tables (`0.674`, `-0.85`, `18.8x`,
`41.2 ms`); integers are left out (counts, sizes, years and settings are mostly integers, and a check that matched
every "2" would back nothing). Code (fenced blocks and `inline code`), link targets and URLs are left out:
commands, paths and identifiers, not measurements.
A report backs a figure when one of its numbers, rounded to the figure's decimals, reads the same (`0.7503` backs
`0.75`; `0.754` does not back `0.76`); a minus sign written as U+2212 counts as "-". Every text file under the
reports folder is read (JSON, JSON lines, CSV, Markdown, ...).

Prints one line per unbacked figure (`document:line: figure  | the line`) and exits 1 when there is any, 0 otherwise.
tests/test_figures.py runs it on the repository.
"""

from __future__ import annotations

import argparse
import re
import sys
from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, ROUND_HALF_UP, Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOCS = ("README.md", "MODEL_CARD.md", "BENCHMARKS.md")
NUMBER = re.compile(r"(?<![\w.])[-\u2212]?\d+\.\d+(?![\d])")
REPORT_NUMBER = re.compile(r"-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?")
TEXT_SUFFIXES = {".json", ".jsonl", ".csv", ".md", ".txt", ".tsv", ".log"}


@dataclass(frozen=True)
class Figure:
    document: str
    line: int
    text: str  # as written, minus sign normalised
    context: str


def prose_lines(text: str):
    """(line number, line) outside fenced code blocks, with inline code (also when it runs over a line break), link
    targets and bare URLs blanked: they hold commands, paths and identifiers, not measurements."""
    kept, fenced = [], False
    for line in text.splitlines():
        if line.lstrip().startswith("```"):
            fenced = not fenced
            kept.append("")
            continue
        kept.append("" if fenced else line)
    body = "\n".join(kept)
    blank = lambda m: re.sub(r"[^\n]", " ", m.group())  # noqa: E731  (keeps the line breaks, so the numbering)
    body = re.sub(r"`[^`]*`", blank, body)
    body = re.sub(r"\]\([^)]*\)|https?://\S+", blank, body)
    for number, line in enumerate(body.split("\n"), 1):
        if line.strip():
            yield number, line


def figures(path: Path) -> list[Figure]:
    found = []
    for number, line in prose_lines(path.read_text()):
        for match in NUMBER.finditer(line):
            found.append(Figure(path.name, number, match.group().replace("\u2212", "-"), line.strip()))
    return found


def _decimals(text: str) -> int:
    return len(text.split(".", 1)[1]) if "." in text else 0


def report_values(folder: Path) -> set[str]:
    """Every number in the reports, written at each precision from its own down to 0 decimals (both roundings of a
    half, since tools print with either)."""
    values: set[str] = set()
    for path in sorted(folder.rglob("*")):
        if not path.is_file() or path.suffix.lower() not in TEXT_SUFFIXES:
            continue
        for token in REPORT_NUMBER.findall(path.read_text(errors="replace")):
            try:
                value = Decimal(token)
                places = max(_decimals(format(value, "f")), 0)
                for d in range(min(places, 6) + 1):
                    quantum = Decimal(1).scaleb(-d)
                    for rounding in (ROUND_HALF_EVEN, ROUND_HALF_UP):
                        values.add(_canonical(value.quantize(quantum, rounding=rounding)))
            except ArithmeticError:  # not a number a document quotes: a digit run of a hash longer than 28 digits
                continue
    return values


def _canonical(value: Decimal) -> str:
    text = format(value, "f")
    return "0" + text[1:] if text.startswith("-0") and set(text[2:]) <= {".", "0"} else text  # -0.0 reads 0.0


def unbacked(docs: list[Path], reports: Path) -> list[Figure]:
    values = report_values(reports)
    out = []
    for doc in docs:
        for figure in figures(doc):
            if _canonical(Decimal(figure.text)) not in values:
                out.append(figure)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--docs", nargs="+", type=Path, default=[ROOT / d for d in DOCS])
    parser.add_argument("--reports", type=Path, default=ROOT / "reports")
    args = parser.parse_args(argv)
    missing = [str(p) for p in [*args.docs, args.reports] if not p.exists()]
    if missing:
        print(f"unbacked_figures: error: {', '.join(missing)} not found", file=sys.stderr)
        return 2
    found = unbacked(args.docs, args.reports)
    for figure in found:
        print(f"{figure.document}:{figure.line}: {figure.text}  | {figure.context[:160]}")
    total = sum(len(figures(d)) for d in args.docs)
    print(f"{len(found)} of {total} figures have no report under {args.reports} that contains them", file=sys.stderr)
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
