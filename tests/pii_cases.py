"""A generated test set for ``transcriber.pii``: call snippets with known truth, the numbers said as callers say them.

``cases(n, seed)`` is deterministic. Each case is 1-3 segments (a number is often cut between them, as Whisper cuts
a long one) holding one item in a sentence of a call, sometimes beside a sentence with ordinary numbers:
  card      13-19 digits that pass Luhn (Visa, Mastercard, Amex, Discover), written ``4111 1111 ...``/``4111-1111-...``
            or said digit by digit, in pairs (``forty one eleven``), with ``double``/``triple``, ``oh``/``zero``/``o``,
            groups parted by nothing, commas, ``uh``, ``um``, ``and``, ``and then``
  phone     US numbers ``phonenumbers`` calls valid: ``(813) 555-1212``, ``+1 813 ...``, ``plus one ...``,
            ``one eight hundred ...``, ``area code eight one three, and the number is ...``, said as above
  ssn       ``123-45-6789`` or said in 3-2-4 groups; ``account``: 6-12 digits after ``account number``, ``member ID``
  email     (level ``all``) written, said (``john dot smith at gmail dot com``), or half and half
  code      (level ``all``) a PIN, security code, ZIP code, the last four
  negative  amounts, prices, times, dates, years, counts, street numbers, ``one two three`` in a phrase, flights
  luhn_fail a card-like 16 digits that fail Luhn: must never be called a card (masked as ``[number]`` or not at all)
Truth is per word: an item is *fully masked* when every character of its words (trailing punctuation aside) lies in
a finding; a negative is *wrongly masked* when any finding touches it.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

import phonenumbers

POSITIVE = ("card", "phone", "ssn", "account", "email", "code")
LEVEL_OF = {"email": "all", "code": "all"}  # the rest are masked from "numbers"

ONES = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
TEENS = ["ten", "eleven", "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen", "nineteen"]
TENS = ["", "", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety"]
AREA_CODES = ["201", "212", "305", "312", "347", "404", "415", "512", "617", "702", "718", "813", "917", "972"]
FIRST = ["john", "mary", "james", "linda", "robert", "susan", "michael", "karen", "david", "lisa", "j", "m"]
LAST = ["smith", "jones", "garcia", "miller", "davis", "lopez", "wilson", "anderson", "taylor", "moore"]
DOMAINS = [["gmail", "com"], ["yahoo", "com"], ["outlook", "com"], ["comcast", "net"], ["aol", "com"],
           ["smith", "plumbing", "co", "uk"], ["acme", "org"]]  # fmt: skip

Word = tuple[str, bool]  # text as written (maybe with trailing punctuation), part of the item?


@dataclass(frozen=True)
class Truth:
    kind: str  # one of POSITIVE, "negative", "luhn_fail"
    style: str  # how it was said
    value: str  # the digits (or the address)
    pieces: tuple[tuple[int, int, int], ...]  # (segment, start, end) of each of its words


@dataclass(frozen=True)
class Case:
    texts: tuple[str, ...]
    truths: tuple[Truth, ...]


# ---------------------------------------------------------------- saying digits


def zero(rng: random.Random) -> str:
    return rng.choice(["zero", "oh", "oh", "o"])


def say_digit(d: str, rng: random.Random) -> str:
    return zero(rng) if d == "0" else ONES[int(d)]


def say_pair(pair: str, rng: random.Random) -> list[str]:
    """Two digits as a caller says them in a group: ``forty five``, ``forty-five``, ``eleven``, ``oh five``."""
    a, b = int(pair[0]), int(pair[1])
    if a == 0:
        return [zero(rng), say_digit(pair[1], rng)]
    if a == 1:
        return [TEENS[b]]
    if b == 0:
        return [TENS[a]]
    return [f"{TENS[a]}-{ONES[b]}"] if rng.random() < 0.3 else [TENS[a], ONES[b]]


def say_group(group: str, style: str, rng: random.Random) -> list[str]:
    if style == "written":
        return [group]
    if style == "pairs" and len(group) >= 2:
        words = []
        if len(group) % 2:
            head = group if len(group) == 3 and group[1:] == "00" else group[0]  # 800: "eight hundred"
            words += [ONES[int(head[0])], "hundred"] if head.endswith("00") else [say_digit(head, rng)]
            group = group[len(head) :]
        for k in range(0, len(group), 2):
            words += say_pair(group[k : k + 2], rng)
        return words
    if style == "repeats":
        words, k = [], 0
        while k < len(group):
            run = len(group[k:]) - len(group[k:].lstrip(group[k]))
            if run >= 3:
                words += ["triple", say_digit(group[k], rng)]
                k += 3
            elif run == 2:
                words += ["double", say_digit(group[k], rng)]
                k += 2
            else:
                words.append(say_digit(group[k], rng))
                k += 1
        return words
    return [say_digit(d, rng) for d in group]


SEPARATORS = ["", "", ",", ", uh,", ", um,", " and", ", and then", "."]


def say_groups(groups: list[str], rng: random.Random, written_joiner: str | None = None) -> tuple[list[str], str]:
    """Groups said one after another in one style (or mixed), with the pauses callers make between them."""
    style = rng.choice(["digits", "digits", "pairs", "repeats", "written", "mixed"])
    if style == "written" and written_joiner is not None:
        return [written_joiner.join(groups)], "written" + (written_joiner or "-solid")
    separator = rng.choice(SEPARATORS)
    words: list[str] = []
    for k, group in enumerate(groups):
        chosen = rng.choice(["digits", "pairs", "repeats", "written"]) if style == "mixed" else style
        said = say_group(group, chosen, rng)
        if k and separator:
            if separator[0] in ",.":
                words[-1] += separator[0]
                words += separator[1:].split()
            else:
                words += separator.split()
        words += said
    return words, f"{style}/{separator.strip() or 'blank'}"


# ---------------------------------------------------------------- items


def luhn_digit(body: str) -> str:
    total = 0
    for position, char in enumerate(reversed(body)):
        value = int(char) * (1 if position % 2 else 2)
        total += value - 9 if value > 9 else value
    return str((10 - total % 10) % 10)


def card_number(rng: random.Random, valid: bool = True) -> tuple[str, list[int]]:
    prefix, length, grouping = rng.choice(
        [("4", 16, [4, 4, 4, 4]), ("4", 16, [4, 4, 4, 4]), ("5" + str(rng.randint(1, 5)), 16, [4, 4, 4, 4]),
         ("3" + rng.choice("47"), 15, [4, 6, 5]), ("6011", 16, [4, 4, 4, 4]), ("4", 13, [4, 4, 5])]
    )  # fmt: skip
    body = prefix + "".join(rng.choice("0123456789") for _ in range(length - len(prefix) - 1))
    check = luhn_digit(body)
    if not valid:
        check = str((int(check) + rng.randint(1, 9)) % 10)
    return body + check, grouping


def split(digits: str, grouping: list[int]) -> list[str]:
    out, at = [], 0
    for size in grouping:
        out.append(digits[at : at + size])
        at += size
    return out


def us_phone(rng: random.Random, toll_free: bool = False) -> str:
    while True:
        area = rng.choice(["800", "888", "877", "866"]) if toll_free else rng.choice(AREA_CODES)
        number = area + str(rng.randint(2, 9)) + "".join(rng.choice("0123456789") for _ in range(6))
        if phonenumbers.is_valid_number(phonenumbers.parse(number, "US")):
            return number


def card_item(rng: random.Random, valid: bool = True) -> tuple[list[Word], str, str]:
    digits, grouping = card_number(rng, valid)
    words, style = say_groups(split(digits, grouping), rng, written_joiner=rng.choice([" ", "-", ""]))
    lead = rng.choice(["My card number is", "It's a Visa,", "The card is", "Sure, it's", "Okay so the number is",
                       "I'll pay with"])  # fmt: skip
    tail = rng.choice(["and it expires next year.", "", "did you get that?", "thanks."])
    return sentence(lead, words, tail), style, digits


def phone_item(rng: random.Random) -> tuple[list[Word], str, str]:
    form = rng.choice(["written", "plus", "spoken", "spoken", "toll_free", "area_code"])
    digits = us_phone(rng, toll_free=form == "toll_free")
    area, exchange, line = digits[:3], digits[3:6], digits[6:]
    lead = rng.choice(["You can reach me at", "My number is", "Call me back on", "It's", "My cell is"])
    tail = rng.choice(["", "anytime after five.", "thank you."])
    if form == "written":
        text = rng.choice([f"({area}) {exchange}-{line}", f"{area}-{exchange}-{line}", f"{area}.{exchange}.{line}",
                           f"+1 {area} {exchange} {line}", f"+1{digits}", f"1-{area}-{exchange}-{line}"])  # fmt: skip
        return sentence(lead, [text], tail), "written", digits
    if form == "area_code":
        said_area, _ = say_groups([area], rng)
        rest, style = say_groups([exchange, line], rng)
        words = [("area code", False)] + [(w, True) for w in said_area]
        words[-1] = (words[-1][0] + ",", True)
        words += [(w, False) for w in rng.choice(["and the number is", "then", "and it's"]).split()]
        words += [(w, True) for w in rest]
        return (
            [(w, False) for w in lead.split()] + words + [(w, False) for w in tail.split()],
            f"area_code/{style}",
            digits,
        )
    groups = [area, exchange, line]
    if form == "plus":
        words, style = say_groups(groups, rng)
        prefix = rng.choice([["plus", "one"], ["+1"], ["plus", "one,"]])
        return sentence(lead, prefix + words, tail), f"plus/{style}", digits
    if form == "toll_free":
        words, style = say_groups([exchange, line], rng)
        head = rng.choice([["one", ONES[int(area[0])], "hundred"], ["one", *say_group(area, "digits", rng)],
                           [ONES[int(area[0])], "hundred"]])  # fmt: skip
        return sentence(lead, head + words, tail), f"toll_free/{style}", digits
    words, style = say_groups(groups, rng)
    return sentence(lead, words, tail), style, digits


def ssn_item(rng: random.Random) -> tuple[list[Word], str, str]:
    while True:
        digits = f"{rng.randint(1, 899):03d}{rng.randint(1, 99):02d}{rng.randint(1, 9999):04d}"
        if not digits.startswith("666"):
            break
    words, style = say_groups(split(digits, [3, 2, 4]), rng, written_joiner="-")
    lead = rng.choice(["My social is", "Social security number", "The SSN on file should be", "It's"])
    return sentence(lead, words, rng.choice(["", "I think."])), style, digits


def account_item(rng: random.Random) -> tuple[list[Word], str, str]:
    length = rng.randint(6, 12)
    digits = str(rng.randint(1, 9)) + "".join(rng.choice("0123456789") for _ in range(length - 1))
    sizes = [length] if rng.random() < 0.4 else [length // 2, length - length // 2]
    words, style = say_groups(split(digits, sizes), rng, written_joiner="")
    lead = rng.choice(["My account number is", "The member ID is", "Policy number", "The confirmation code is",
                       "Reference", "It's account"])  # fmt: skip
    return sentence(lead, words, rng.choice(["", "on the letter.", "I believe."])), style, digits


def email_item(rng: random.Random) -> tuple[list[Word], str, str]:
    first, last, domain = rng.choice(FIRST), rng.choice(LAST), rng.choice(DOMAINS)
    number = rng.choice(["", "", str(rng.randint(1, 99))])
    join = rng.choice([".", "_", ""])
    written = f"{first}{join}{last}{number}@{'.'.join(domain)}"
    form = rng.choice(["written", "spoken", "spoken", "half"])
    lead = rng.choice(["My email is", "Send it to", "You can email me at", "It's"])
    if form == "written":
        return sentence(lead, [written], rng.choice(["", "please."])), "written", written
    say_join = {".": ["dot"], "_": ["underscore"], "": []}[join]
    said_number = say_group(number, rng.choice(["digits", "pairs"]), rng) if number else []
    if form == "half":
        words = [f"{first}{join}{last}{number}", "at", ".".join(domain)]
    else:
        words = [first, *say_join, last, *said_number, "at", *" dot ".join(domain).split()]
    return sentence(lead, words, rng.choice(["", "thanks."])), form, written


def code_item(rng: random.Random) -> tuple[list[Word], str, str]:
    kind = rng.choice(["pin", "security", "zip", "last four"])
    size = {"pin": 4, "security": 3, "zip": 5, "last four": 4}[kind]
    digits = "".join(rng.choice("0123456789") for _ in range(size))
    words, style = say_groups([digits], rng)
    lead = {"pin": "My pin is", "security": "The security code is", "zip": "The zip code is",
            "last four": "The last four are"}[kind]  # fmt: skip
    return sentence(lead, words, ""), f"{kind}/{style}", digits


# ---------------------------------------------------------------- negatives: numbers that are no one's


YEARS = ["nineteen ninety nine", "two thousand twenty", "twenty twenty four", "2019", "two thousand and five",
         "nineteen eighty seven"]  # fmt: skip
# style: (leads, what is said (the negative), tail)
NEGATIVES: dict[str, tuple[list[str], list[str], str]] = {
    "amount": (["It was"], ["twenty dollars", "five bucks", "a hundred and twenty dollars"], "."),
    "big_amount": (["We paid"], ["one hundred fifty thousand dollars", "twelve hundred dollars", "$1,250", "$49.99",
                                 "two thousand five hundred dollars", "250,000"], "for it."),
    "price": (["It's"], ["forty nine ninety nine", "nineteen ninety five", "nine ninety nine"], "a month."),
    "time": (["Call me at"], ["three o'clock", "eleven o'clock", "three thirty", "ten forty five", "3:30",
                              "twelve fifteen", "quarter past four"], "tomorrow."),
    "year": (["Back in"], YEARS, "we moved."),
    "date": (["On March"], [f"{day}, {year}" for day in ("fifth", "twenty first", "third") for year in YEARS],
             "I called."),
    "count": (["I have", "We need", "There were"], ["two kids", "one or two things", "five minutes", "twelve boxes",
              "two or three times", "three hundred units", "about forty five minutes", "six or seven people"], "."),
    "list": (["I ordered"], ["twelve, fifteen and twenty units", "twenty, thirty, forty", "two, three and four boxes",
                             "2019, 2020, 2021 and 2022"], "over time."),
    "street": (["I live at"], ["twelve thirty four Oak Street", "1234 Elm Street", "four fifty Main Street",
                               "suite two oh five"], "."),
    "phrase": (["It's easy as"], ["one two three"], "really."),
    "flight": (["I'm on flight"], ["two forty seven", "UA 1123", "eleven twenty"], "tonight."),
    "at_word": (["I'm"], ["at work dot dot dot", "at home right now", "at the bank"], "sorry."),
    "after_id_word": (["The account has about", "My card was charged", "The number of people was",
                       "Policy? I've had it for", "Reference the letter from"],
                      ["twenty five hundred dollars", "twelve ninety nine, twice", "twelve, fifteen, twenty",
                       "ten, twelve years", "two weeks ago", "nineteen ninety nine, and two thousand"], "."),
    "version": (["It says version"], ["two point oh", "10.4.1", "three point five"], "on the screen."),
}  # fmt: skip


def negative_item(rng: random.Random) -> tuple[list[Word], str, str]:
    style = rng.choice(sorted(NEGATIVES))
    leads, saids, tail = NEGATIVES[style]
    said = rng.choice(saids)
    return sentence(rng.choice(leads), said.split(), tail), style, said


def sentence(lead: str, words: list[str], tail: str) -> list[Word]:
    return [(w, False) for w in lead.split()] + [(w, True) for w in words] + [(w, False) for w in tail.split()]


ITEMS = {"card": card_item, "phone": phone_item, "ssn": ssn_item, "account": account_item, "email": email_item,
         "code": code_item, "negative": negative_item,
         "luhn_fail": lambda rng: card_item(rng, valid=False)}  # fmt: skip
WEIGHTS = {"card": 22, "phone": 22, "ssn": 7, "account": 10, "email": 10, "code": 5, "negative": 20, "luhn_fail": 4}


def cases(n: int, seed: int = 14) -> list[Case]:
    """``n`` cases, the same for the same ``seed``."""
    rng = random.Random(seed)
    kinds = list(WEIGHTS)
    return [one_case(rng, rng.choices(kinds, weights=[WEIGHTS[k] for k in kinds])[0]) for _ in range(n)]


def one_case(rng: random.Random, kind: str) -> Case:
    words, style, value = ITEMS[kind](rng)
    items = [(kind, style, value, words)]
    if kind != "negative" and rng.random() < 0.4:  # an ordinary number beside it
        extra = negative_item(rng)
        items.insert(rng.randint(0, 1), ("negative", extra[1], extra[2], extra[0]))
    flat: list[tuple[str, int | None]] = []
    for k, (_, _, _, item_words) in enumerate(items):
        flat += [(w, k if mine else None) for w, mine in item_words]
    cuts = cut_points(flat, rng)
    texts, pieces = segments_of(flat, cuts)
    truths = tuple(Truth(k_, s, v, tuple(pieces.get(k, []))) for k, (k_, s, v, _) in enumerate(items))
    return Case(tuple(texts), truths)


def cut_points(flat: list[tuple[str, int | None]], rng: random.Random) -> list[int]:
    """0-2 places to start a new segment, often inside an item (Whisper cuts a long number)."""
    count = rng.choice([0, 1, 1, 2])
    inside = [i for i in range(1, len(flat)) if flat[i][1] is not None and flat[i - 1][1] == flat[i][1]]
    anywhere = list(range(1, len(flat)))
    cuts = set()
    for _ in range(count):
        pool = inside if inside and rng.random() < 0.6 else anywhere
        cuts.add(rng.choice(pool))
    return sorted(cuts)


def segments_of(flat: list[tuple[str, int | None]], cuts: list[int]) -> tuple[list[str], dict[int, list]]:
    texts: list[str] = []
    pieces: dict[int, list[tuple[int, int, int]]] = {}
    bounds = [0, *cuts, len(flat)]
    for segment, (a, b) in enumerate(zip(bounds, bounds[1:], strict=False)):
        text = ""
        for word, owner in flat[a:b]:
            start = len(text) + (1 if text else 0)
            text = f"{text} {word}" if text else word
            if owner is not None:
                core = word.rstrip(",.?!")
                if core:
                    pieces.setdefault(owner, []).append((segment, start, start + len(core)))
        texts.append(text)
    return texts, pieces


# ---------------------------------------------------------------- scoring


def score(all_cases: list[Case], level: str, region: str = "") -> dict[str, Any]:
    """Recall per kind (items fully masked), negatives wrongly masked, cards called cards; the misses, a few."""
    from transcriber.pii import CARD, find_segments
    from transcriber.segments import Segment

    expected = [k for k in POSITIVE if LEVEL_OF.get(k, "numbers") == "numbers" or level == "all"]
    rows: dict[str, dict[str, Any]] = {k: {"items": 0, "masked": 0, "named_right": 0, "missed": []} for k in expected}
    negatives = {"items": 0, "wrongly_masked": 0, "by_style": {}, "examples": []}
    fails = {"items": 0, "called_card": 0, "masked": 0}
    for case in all_cases:
        segments = [Segment(float(i), float(i + 1), text) for i, text in enumerate(case.texts)]
        found = find_segments(segments, level, region)
        for truth in case.truths:
            covered = [_covered(found[s], a, b) for s, a, b in truth.pieces]
            touched = [f for s, a, b in truth.pieces for f in found[s] if f.start < b and f.end > a]
            if truth.kind == "negative":
                negatives["items"] += 1
                style = negatives["by_style"].setdefault(truth.style, [0, 0])
                style[0] += 1
                if touched:
                    negatives["wrongly_masked"] += 1
                    style[1] += 1
                    if len(negatives["examples"]) < 20:
                        negatives["examples"].append(case.texts)
            elif truth.kind == "luhn_fail":
                fails["items"] += 1
                fails["called_card"] += any(f.kind == CARD for f in touched)
                fails["masked"] += all(covered)
            elif truth.kind in rows:
                row = rows[truth.kind]
                row["items"] += 1
                row["masked"] += all(covered)
                row["named_right"] += bool(touched) and all(f.kind == truth.kind for f in touched)
                if not all(covered) and len(row["missed"]) < 15:
                    row["missed"].append({"style": truth.style, "texts": case.texts})
    for row in rows.values():
        row["recall"] = round(row["masked"] / row["items"], 4) if row["items"] else None
    negatives["share"] = round(negatives["wrongly_masked"] / negatives["items"], 4) if negatives["items"] else None
    return {"level": level, "recall": rows, "negatives": negatives, "luhn_fail": fails}


def _covered(found: list[Any], start: int, end: int) -> bool:
    at = start
    for f in sorted(found, key=lambda f: f.start):
        if f.start <= at < f.end:
            at = f.end
    return at >= end
