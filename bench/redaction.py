"""Benchmark: how much of the personal numbers and addresses REDACT masks, and how many ordinary numbers with them.

    .venv/bin/python bench/redaction.py                 # 2,000 generated cases, seed 14, levels numbers and all
    .venv/bin/python bench/redaction.py --cases 200 --seed 3

The cases come from ``tests/pii_cases.py`` (cards, phones, SSNs, account numbers, e-mails, short codes said the
ways callers say them, often cut across 2-3 segments; ordinary numbers as negatives; card-like digits that fail
Luhn). Recall per kind = items whose every word is masked (by any token); named right = items whose findings all
carry its kind; negatives wrongly masked = negatives any finding touches. E-mails and short codes count at ``all``
only. The generator and the detector were written together: figures here are an upper bound for real calls, where
Whisper's mishearings (a wrong digit, a number word heard as another word) come on top.
Writes --out (JSON: machine facts, options, figures per level, the first misses and false positives).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from pii_cases import cases, score  # noqa: E402


def machine() -> dict[str, Any]:
    def git(*args: str) -> str | None:
        try:
            return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True).stdout.strip()
        except OSError:
            return None

    changed = (git("status", "--porcelain", "--untracked-files=no", "src") or "").splitlines()
    return {
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "commit": git("rev-parse", "--short", "HEAD"),
        "uncommitted_in_src": [line[3:] for line in changed],
    }


def table(results: list[dict[str, Any]]) -> str:
    lines = ["| level | kind | items | fully masked | recall | named right |", "|---|---|---:|---:|---:|---:|"]
    for result in results:
        for kind, row in result["recall"].items():
            lines.append(
                f"| {result['level']} | {kind} | {row['items']} | {row['masked']} | {row['recall']:.1%} | {row['named_right']} |"
            )
        neg, fail = result["negatives"], result["luhn_fail"]
        lines.append(
            f"| {result['level']} | negatives wrongly masked | {neg['items']} | {neg['wrongly_masked']} | {neg['share']:.1%} | |"
        )
        lines.append(
            f"| {result['level']} | Luhn-failing card digits called card | {fail['items']} | {fail['called_card']} | (masked as [number]: {fail['masked']}) | |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=14)
    parser.add_argument("--region", default="", help="PHONE_REGION (empty: US)")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "redaction.json")
    args = parser.parse_args()
    started = machine()
    generated = cases(args.cases, args.seed)
    results, seconds = [], {}
    for level in ("numbers", "all"):
        began = time.perf_counter()
        results.append(score(generated, level, args.region))
        seconds[level] = round(time.perf_counter() - began, 3)
    report = {
        "machine": started,
        "options": {"cases": args.cases, "seed": args.seed, "region": args.region or "US"},
        "seconds": seconds,
        "results": results,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1, ensure_ascii=False) + "\n")
    print(table(results))
    print(f"\n{args.cases} cases, seed {args.seed}; seconds per level: {seconds}")


if __name__ == "__main__":
    main()
