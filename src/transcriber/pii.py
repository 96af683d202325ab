"""Personal numbers and addresses in a transcript, found and masked (``REDACT``, ``export --redacted``).

Pure: text in, spans out; no I/O. Callers say numbers in many ways and Whisper writes them in as many, so the text
is read as tokens and the numbers in it as *groups* the way they were said: ``4111``, ``four``, ``forty five``,
``double five``, ``triple seven``, ``eight hundred``, ``oh`` (also ``zero``, ``o``). Groups said with nothing but
blanks, hyphens, ``dash``, brackets or fillers (``uh``, ``um``) between them form one *chunk*, and so do digits said
one by one that Whisper writes with a comma after each (``8, 4, 8``, ``three, four, two``, ``double, 0``:
``bench/redaction_heard.py``); chunks apart only by a pause (``,`` ``.`` ``and`` ``then`` ``sorry`` ...) are joined
only when the joined digits pass a check (Luhn for a card, ``phonenumbers`` for a phone, 3-2-4 for a US Social
Security number) or a word before them says an identifier follows (``account``, ``number``, ``card``, ``member``
...). A card number is 13-19 digits that pass Luhn; a phone number is one ``phonenumbers`` calls valid (a
``+``/``plus`` makes it international, else ``region``, ``US`` when empty; seven digits after ``area code`` and its
three digits count too); any other run of ``ACCOUNT_MIN_DIGITS`` (6) or more digits said as a sequence is an account
or ID number. Six because nothing a caller says digit by digit below that is an identifier by itself (times, years,
prices, street numbers and ZIP codes are 1-5 digits), while bank, member and verification codes start at six. A
quantity is never one: a group with ``thousand`` or ``hundred and ...`` (``one hundred fifty thousand``), an amount
written ``$1,250`` or ``1,250``, a decimal, an ordinal, a time ``3:30``.

Levels: ``numbers`` masks cards, phones, SSNs and account/ID numbers; ``all`` also e-mail addresses, written
(``john.smith@gmail.com``) or said (``john dot smith at gmail dot com``), and the short codes a word names
(``pin``, ``cvv``, ``security code``, ``zip code``, ``last four``, ``expiration``); ``off`` masks nothing.
Each masked stretch becomes one token, ``TOKENS``: ``[card]``, ``[phone]``, ``[email]``, ``[number]`` (accounts,
IDs, SSNs and codes alike).

``redact_segments`` reads each speaker's segments as one text, so a number split across segments is caught,
and masks each segment's part of it; the times and the speaker stay, the words of a changed segment go (their
text is the raw number). ``outputs.redacted_document`` does the same for a whole transcript.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace

import phonenumbers

from transcriber.segments import Segment

LEVELS = ("off", "numbers", "all")
CARD, PHONE, EMAIL, SSN, ACCOUNT, CODE = "card", "phone", "email", "ssn", "account", "code"
TOKENS = {CARD: "[card]", PHONE: "[phone]", EMAIL: "[email]", SSN: "[number]", ACCOUNT: "[number]",
          CODE: "[number]"}  # fmt: skip
ACCOUNT_MIN_DIGITS = 6
CARD_DIGITS = range(13, 20)


@dataclass(frozen=True)
class Finding:
    """A stretch ``text[start:end]`` to mask, and what it is (``card``, ``phone``, ``email``, ``ssn``, ``account``,
    ``code``)."""

    start: int
    end: int
    kind: str

    @property
    def token(self) -> str:
        return TOKENS[self.kind]


def check_level(level: str) -> str | None:
    """Why ``level`` cannot be ``REDACT``, in one line; ``None`` when it can."""
    return None if level in LEVELS else f"{level!r} is not one of {', '.join(LEVELS)}"


def find(text: str, level: str, region: str = "") -> list[Finding]:
    """What to mask in ``text`` at ``level`` (``off``, ``numbers``, ``all``), in order, not overlapping.

    ``region`` (``PHONE_REGION``) reads phone numbers said without ``+``; ``US`` when empty.
    """
    if level == "off":
        return []
    if level not in LEVELS:
        raise ValueError(f"REDACT {check_level(level)}")
    tokens = _tokens(text)
    found = _numbers(tokens, region.upper() or "US", short_codes=level == "all")
    if level == "all":
        found += _emails(tokens)
    return _without_overlaps(found)


def mask(text: str, findings: Iterable[Finding]) -> str:
    """``text`` with each finding replaced by its token."""
    out, at = [], 0
    for f in sorted(findings, key=lambda f: f.start):
        out += [text[at : f.start], f.token]
        at = f.end
    return "".join(out) + text[at:]


def redact(text: str, level: str, region: str = "") -> str:
    """``text`` masked at ``level``: ``find`` then ``mask``."""
    return mask(text, find(text, level, region))


def redact_segments(segments: Sequence[Segment], level: str, region: str = "") -> list[Segment]:
    """The segments masked at ``level``, one for one; the input is not changed.

    Each speaker's segments (in the order given) are read as one text joined by blanks, so a card number said
    across two segments is found whole; each segment then masks its own part of it. A changed segment keeps its
    times and speaker and loses its words (a word's text is the raw number); an unchanged one is kept as it is.
    """
    return [
        replace(s, text=mask(s.text, pieces), words=None) if pieces else s
        for s, pieces in zip(segments, find_segments(segments, level, region), strict=True)
    ]


def find_segments(segments: Sequence[Segment], level: str, region: str = "") -> list[list[Finding]]:
    """What to mask in each segment's text (offsets in it), reading each speaker's segments as one text."""
    result: list[list[Finding]] = [[] for _ in segments]
    if level == "off":
        return result
    for indexes in _by_speaker(segments).values():
        texts = [segments[i].text for i in indexes]
        for i, pieces in zip(indexes, _per_piece(texts, find(" ".join(texts), level, region)), strict=True):
            result[i] = pieces
    return result


# ---------------------------------------------------------------- tokens

_TOKEN = re.compile(
    r"(?P<quantity>[$€£]\s?\d[\d,]*(?:\.\d+)?|\d{1,3}(?:,\d{3})+(?:\.\d+)?(?!\d)|(?<!\d\.)\d+\.\d+(?!\d|\.\d)"
    r"|\d+(?:st|nd|rd|th|%)(?![a-z]))"
    r"|(?P<digits>\d+)"
    r"|(?P<word>[^\W\d_]+(?:'[^\W\d_]+)?)"
    r"|(?P<mark>\S)",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class _Token:
    kind: str  # quantity, digits, word, mark
    text: str
    start: int
    end: int
    spaced: bool  # blank before it

    @property
    def low(self) -> str:
        return self.text.lower()


def _tokens(text: str) -> list[_Token]:
    out = []
    for m in _TOKEN.finditer(text):
        kind = m.lastgroup or "mark"
        out.append(_Token(kind, m[0], m.start(), m.end(), m.start() == 0 or text[m.start() - 1].isspace()))
    return out


# ---------------------------------------------------------------- numbers said as groups

UNITS = {"zero": 0, "oh": 0, "o": 0, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6,
         "seven": 7, "eight": 8, "nine": 9}  # fmt: skip
TEENS = {"ten": 10, "eleven": 11, "twelve": 12, "thirteen": 13, "fourteen": 14, "fifteen": 15, "sixteen": 16,
         "seventeen": 17, "eighteen": 18, "nineteen": 19}  # fmt: skip
TENS = {"twenty": 20, "thirty": 30, "forty": 40, "fourty": 40, "fifty": 50, "sixty": 60, "seventy": 70,
        "eighty": 80, "ninety": 90}  # fmt: skip
SCALES = {"hundred": 100, "thousand": 1000, "million": 1_000_000}
REPEATS = {"double": 2, "triple": 3}
_NUMBER_WORDS = {**UNITS, **TEENS, **TENS, **SCALES}
_ZEROS = frozenset({"zero", "oh", "o"})

_FILLERS = frozenset({"uh", "um", "umm", "uhm", "er", "erm", "ah", "hmm", "mm", "dash", "hyphen"})
_PAUSES = frozenset({"and", "then", "so", "okay", "ok", "yeah", "yes", "again", "sorry", "is"})
_TIGHT_MARKS = frozenset("-–()")
_PAUSE_MARKS = frozenset(",.;?!…")
# Words before a run of digits that say an identifier follows: its pauses do not split it.
_ID_WORDS = frozenset({"account", "acct", "number", "id", "member", "policy", "reference", "ref", "confirmation",
                       "routing", "social", "ssn", "card", "license", "licence", "passport", "customer", "invoice",
                       "tracking", "case", "ticket", "claim", "iban", "sort", "membership", "visa",
                       "mastercard", "amex", "discover"})  # fmt: skip
# Words before a short code that name it (level ``all``): masked from 2 digits.
_CODE_WORDS = frozenset({"pin", "cvv", "cvc", "cvv2", "security", "verification", "zip", "postcode", "postal",
                         "expiry", "expiration", "expires", "exp", "four", "birth", "dob"})  # fmt: skip
_LOOK_BACK = 5  # words between such a word and the digits ("account number is, uh, ...")


@dataclass(frozen=True)
class _Group:
    digits: str
    first: int  # token indexes
    last: int
    quantity: bool = False  # a value with a scale word that is not "X hundred" (150000, 1250)


@dataclass
class _Chunk:
    groups: list[_Group]
    plus: int | None = None  # index of a "+" or "plus" before it

    @property
    def digits(self) -> str:
        return "".join(g.digits for g in self.groups)

    @property
    def quantity(self) -> bool:
        return any(g.quantity for g in self.groups)

    @property
    def first(self) -> int:
        return self.plus if self.plus is not None else self.groups[0].first

    @property
    def last(self) -> int:
        return self.groups[-1].last


def _is_number(tokens: list[_Token], i: int) -> bool:
    t = tokens[i]
    if t.kind == "digits":
        return True
    if t.kind != "word":
        return False
    if t.low in _NUMBER_WORDS:
        return t.low != "o" or _beside_number(tokens, i)
    if t.low in REPEATS:
        k = i + 2 if i + 2 < len(tokens) and tokens[i + 1].text == "," else i + 1  # Whisper's "double, 0"
        return k < len(tokens) and (tokens[k].low in UNITS or tokens[k].kind == "digits")
    if t.low == "and":  # inside "one hundred and fifty"
        return _prev_is(tokens, i, SCALES) and _next_is(tokens, i, {**UNITS, **TEENS, **TENS}.keys() - _ZEROS)
    return False


def _beside_number(tokens: list[_Token], i: int) -> bool:
    """Whether a number word or digits is the nearest word on either side (fillers and marks skipped)."""
    for step in (-1, 1):
        k = i + step
        while 0 <= k < len(tokens) and (tokens[k].kind == "mark" or tokens[k].low in _FILLERS):
            k += step
        if 0 <= k < len(tokens) and (
            tokens[k].kind == "digits" or tokens[k].low in {**UNITS, **TEENS, **TENS, **REPEATS}
        ):
            return True
    return False


def _next_is(tokens: list[_Token], i: int, words: Iterable[str]) -> bool:
    return i + 1 < len(tokens) and tokens[i + 1].low in words


def _prev_is(tokens: list[_Token], i: int, words: Iterable[str]) -> bool:
    return i > 0 and tokens[i - 1].low in words


def _gap(tokens: list[_Token], i: int) -> str:
    """How a token that is no number parts the numbers around it: ``tight``, ``pause`` or ``hard``."""
    t = tokens[i]
    if t.kind == "word":
        return "tight" if t.low in _FILLERS else "pause" if t.low in _PAUSES else "hard"
    if t.kind == "mark" and t.text in _TIGHT_MARKS:
        return "tight"
    if t.kind == "mark" and t.text == "." and not t.spaced and i + 1 < len(tokens) and not tokens[i + 1].spaced:
        return "tight"  # 813.555.1212
    if t.kind == "mark" and t.text in _PAUSE_MARKS:
        return "pause"
    return "hard"


def _groups(tokens: list[_Token], indexes: list[int]) -> list[_Group]:
    """The number tokens of one chunk read as the groups the caller said."""
    groups, k = [], 0
    while k < len(indexes):
        group, used = _group(tokens, indexes[k:])
        groups.append(group)
        k += used
    return groups


def _group(tokens: list[_Token], indexes: list[int]) -> tuple[_Group, int]:
    first = tokens[indexes[0]]
    if first.kind == "digits":
        return _Group(first.text, indexes[0], indexes[0]), 1
    if first.low in REPEATS and len(indexes) > 1:
        said = tokens[indexes[1]]
        digit = str(UNITS[said.low]) if said.kind == "word" else said.text
        return _Group(digit * REPEATS[first.low], indexes[0], indexes[1]), 2
    return _cardinal(tokens, indexes)


def _cardinal(tokens: list[_Token], indexes: list[int]) -> tuple[_Group, int]:
    """One cardinal from number words: ``forty five``, ``eight hundred``, ``two thousand twenty``, ``seven``.

    Digits said one by one are one group each: a unit never follows a unit, and a bare unit does not join
    ``X hundred`` (``one eight hundred five five five``) unless ``and`` does (``one hundred and five``).
    """
    total, current, last, scaled, used = 0, 0, "", False, 0
    for index in indexes:
        word = tokens[index].low
        step = _step(word, current, last)
        if step is None:
            break
        current, total, last = step(current, total)
        scaled = scaled or word in ("thousand", "million") or (word == "and" and last == "and")
        used += 1
    value = total + current
    if last == "hundred" and not scaled:
        digits = str(value)  # "eight hundred": a group of a phone number, 800
    elif scaled or last in ("and",) or value >= 1000 or (value >= 100 and value % 100):
        scaled = True
        digits = str(value)
    else:
        digits = f"{value:02d}" if last in ("tens", "teen", "tens_unit") else str(value)
    return _Group(digits, indexes[0], indexes[max(used, 1) - 1], quantity=scaled), max(used, 1)


Step = Callable[[int, int], tuple[int, int, str]]


def _step(word: str, current: int, last: str) -> Step | None:
    """How ``word`` changes (current, total, kind of the last word), or ``None`` when it starts a new group."""
    after_scale = last in ("hundred", "thousand", "and")
    if word in UNITS and word != "o" or (word == "o" and last == ""):
        unit = UNITS[word]
        if last == "" or (last == "tens" and unit) or (after_scale and last != "hundred" and unit):
            return lambda c, t: (c + unit, t, "tens_unit" if last == "tens" else "unit")
        return None
    if word in TEENS or word in TENS:
        value, kind = (TEENS[word], "teen") if word in TEENS else (TENS[word], "tens")
        if last == "" or after_scale:
            return lambda c, t: (c + value, t, kind)
        return None
    if word == "hundred":
        if last == "" or (last in ("unit", "teen", "tens", "tens_unit") and 0 < current < 100):
            return lambda c, t: ((c or 1) * 100, t, "hundred")
        return None
    if word in ("thousand", "million") and last not in ("thousand", "and"):
        scale = SCALES[word]
        return lambda c, t: (0, t + (c or 1) * scale, "thousand")
    if word == "and" and last in ("hundred", "thousand"):
        return lambda c, t: (c, t, "and")
    return None


_STRENGTH = {"tight": 0, "pause": 1, "hard": 2}


def _chunks(tokens: list[_Token]) -> list[tuple[_Chunk, str]]:
    """The chunks of numbers in order, each with how it is parted from the one before (``pause`` or ``hard``)."""
    out: list[tuple[_Chunk, str]] = []
    current: list[int] = []
    plus: int | None = None
    gap, parted = "hard", "hard"  # the strongest gap since the last number; how the open chunk is parted

    def close() -> None:
        nonlocal current, plus
        if current:
            out.append((_Chunk(_groups(tokens, current), plus), parted))
        current, plus = [], None

    for i, t in enumerate(tokens):
        if _is_number(tokens, i):
            if current and gap != "tight" and not _one_by_one(tokens, current[-1], i):
                close()
            if not current and plus is None:
                parted = gap if out else "hard"
            current.append(i)
            gap = "tight"
        elif (t.text == "+" or t.low == "plus") and i + 1 < len(tokens) and _is_number(tokens, i + 1):
            close()
            parted = ("pause" if gap == "tight" else gap) if out else "hard"
            plus, gap = i, "tight"
        else:
            step = _gap(tokens, i)
            gap = step if _STRENGTH[step] > _STRENGTH[gap] else gap
    close()
    return out


def _one_by_one(tokens: list[_Token], last: int, i: int) -> bool:
    """``8, 4, 8, 0``, ``three, four, two``, ``double, 0``: digits said one by one, which Whisper writes with a
    comma after each (and after ``double``), are one chunk, not groups parted by pauses."""
    if i != last + 2 or tokens[last + 1].text != ",":
        return False
    if tokens[last].low in REPEATS:
        return True
    if not _single_digit(tokens, last) or not (_single_digit(tokens, i) or tokens[i].low in REPEATS):
        return False
    # One of them said on its own: "three, four five, six ..." keeps the groups a caller said.
    return not (last > 0 and _is_number(tokens, last - 1)) or not (i + 1 < len(tokens) and _is_number(tokens, i + 1))


def _single_digit(tokens: list[_Token], i: int) -> bool:
    """One digit, a group by itself: ``8``, ``eight``; not the ``five`` of ``forty five`` or ``two hundred``'s."""
    t = tokens[i]
    if t.kind == "digits":
        return len(t.text) == 1
    return t.low in UNITS and not _prev_is(tokens, i, TENS) and not _next_is(tokens, i, SCALES)


def _numbers(tokens: list[_Token], region: str, *, short_codes: bool) -> list[Finding]:
    chunks = _chunks(tokens)
    found: list[Finding] = []
    k = 0
    while k < len(chunks):
        end = _join(tokens, chunks, k, region)
        run = [c for c, _ in chunks[k:end]]
        kind = _kind(tokens, run, region, short_codes)
        if kind is not None:
            first = run[0].first
            bracket = first > 0 and tokens[first - 1].text == "(" and not tokens[first].spaced  # "(813) 555-1212"
            found.append(Finding(tokens[first - 1 if bracket else first].start, tokens[run[-1].last].end, kind))
        k = end
    return _area_codes(tokens, chunks, found, region)


def _join(tokens: list[_Token], chunks: list[tuple[_Chunk, str]], k: int, region: str) -> int:
    """The end (exclusive) of the run that starts at chunk ``k``: the chunks after it that only a pause parts
    from it, as far as their digits pass a check, or all of them after an identifier word."""
    ahead = k + 1
    while ahead < len(chunks) and chunks[ahead][1] == "pause" and not chunks[ahead][0].quantity:
        ahead += 1
    if chunks[k][0].quantity or ahead == k + 1:
        return k + 1
    said = [c for c, _ in chunks[k:ahead]]
    if len(said[0].digits) >= 3 and all(len(c.digits) >= 2 for c in said) and _named(tokens, said[0].first, _ID_WORDS):
        return ahead  # "account number one two three four, five six ..." (not "policy? for ten, twelve years")
    for end in range(ahead, k + 1, -1):
        run = [c for c, _ in chunks[k:end]]
        if all(len(c.digits) >= 2 or c.plus is not None for c in run) and _checked(run, region) is not None:
            return end
    lengths = [len(c.digits) for c, _ in chunks[k:ahead]]
    for shape in _CARD_SHAPES:  # a card said in its groups that fails Luhn: misheard, still a card's digits
        years = all(re.fullmatch(r"(19|20)\d\d", tokens[c.first].text) for c, _ in chunks[k : k + len(shape)])
        if lengths[: len(shape)] == shape and not years:
            return k + len(shape)
    return k + 1


_CARD_SHAPES = ([4, 4, 4, 4], [4, 6, 5])
_YEAR = re.compile(r"(19|20)\d\d")


def _checked(run: list[_Chunk], region: str) -> str | None:
    """``card``, ``phone`` or ``ssn`` when the run's digits pass that check."""
    digits = "".join(c.digits for c in run)
    if len(digits) in CARD_DIGITS and _luhn(digits):
        return CARD
    if _is_phone(digits, run[0].plus is not None, region):
        return PHONE
    if [len(c.digits) for c in run] == [3, 2, 4] and _is_ssn(digits):
        return SSN
    return None


def _kind(tokens: list[_Token], run: list[_Chunk], region: str, short_codes: bool) -> str | None:
    if any(c.quantity for c in run):
        return None
    groups = [g for c in run for g in c.groups]
    if len(groups) >= 2 and all(tokens[g.first].kind == "digits" and _YEAR.fullmatch(g.digits) for g in groups):
        return None  # "2019, 2020, 2021, 2020": years in a list, whatever check their digits pass
    digits = "".join(c.digits for c in run)
    checked = _checked(run, region)
    if checked is not None:
        return checked
    if len(digits) == 9 and _is_ssn(digits) and _named(tokens, run[0].first, {"social", "ssn", "security"}):
        return SSN
    if len(digits) == 7 and _named(tokens, run[0].first, {"number", "phone", "call", "reach", "cell", "mobile"}):
        return PHONE
    if len(digits) >= ACCOUNT_MIN_DIGITS:
        return ACCOUNT
    if short_codes and len(digits) >= 2 and _named(tokens, run[0].first, _CODE_WORDS, back=3):
        return CODE
    return None


def _area_codes(tokens: list[_Token], chunks: list[tuple[_Chunk, str]], found: list[Finding],
                region: str) -> list[Finding]:  # fmt: skip
    """Three digits after ``area code`` and, a few words on, the rest of the phone number: two findings."""
    extra = []
    for k, (area, _) in enumerate(chunks[:-1]):
        if len(area.digits) != 3 or not _named(tokens, area.first, {"code"}, back=1):
            continue
        if chunks[k + 1][0].first - area.last > 8:
            continue
        end = k + 2
        while end < len(chunks) and chunks[end][1] == "pause" and end - k <= 3:
            end += 1
        for stop in range(end, k + 1, -1):
            rest = [c for c, _ in chunks[k + 1 : stop]]
            if _is_phone(area.digits + "".join(c.digits for c in rest), False, region):
                extra.append(Finding(tokens[area.first].start, tokens[area.last].end, PHONE))
                extra.append(Finding(tokens[rest[0].first].start, tokens[rest[-1].last].end, PHONE))
                break
    return extra + found  # first: on a tie the phone wins


def _named(tokens: list[_Token], first: int, words: Iterable[str], back: int = _LOOK_BACK) -> bool:
    """Whether one of ``words`` is among the ``back`` words before token ``first``, with no other number between."""
    seen, i = 0, first - 1
    wanted = set(words)
    while i >= 0 and seen < back:
        t = tokens[i]
        if t.kind == "word" and t.low in wanted and (t.low != "four" or _prev_is(tokens, i, {"last"})):
            return True
        if t.text == "4" and "four" in wanted and _prev_is(tokens, i, {"last"}):
            return True  # Whisper writes "the last 4 are ..."
        if t.kind in ("digits", "quantity") or t.low in _NUMBER_WORDS:
            return False
        seen += t.kind == "word"
        i -= 1
    return False


def _luhn(digits: str) -> bool:
    total = 0
    for position, char in enumerate(reversed(digits)):
        value = int(char) * (2 if position % 2 else 1)
        total += value - 9 if value > 9 else value
    return total % 10 == 0


def _is_phone(digits: str, plus: bool, region: str) -> bool:
    if not 7 <= len(digits) <= 15:
        return False
    try:
        number = phonenumbers.parse(("+" if plus else "") + digits, None if plus else region)
    except phonenumbers.NumberParseException:
        return False
    return phonenumbers.is_valid_number(number)


def _is_ssn(digits: str) -> bool:
    area, group, serial = digits[:3], digits[3:5], digits[5:]
    return area not in ("000", "666") and area[0] != "9" and group != "00" and serial != "0000"


# ---------------------------------------------------------------- e-mail addresses

_AT = frozenset({"at", "@"})
_DOTS = frozenset({"dot", "."})
_JOINS = frozenset({"dot", "period", "underscore", "dash", "hyphen", ".", "_", "-"})
_TLDS = frozenset({"com", "net", "org", "edu", "gov", "mil", "io", "co", "us", "uk", "ca", "de", "fr", "au", "info",
                   "biz", "me", "app", "dev", "ai", "tv", "nl", "es", "it", "ch", "ie", "nz", "in", "eu"})  # fmt: skip
_NOT_LOCAL = frozenset({"is", "it's", "its", "my", "email", "e", "mail", "address", "me", "to", "the", "and", "uh",
                        "um", "that's", "was", "or", "send", "at", "it", "try", "use", "a", "an", "be",
                        "would", "should", "your", "our", "his", "her", "their", "this"})  # fmt: skip


def _emails(tokens: list[_Token]) -> list[Finding]:
    found = []
    for k, t in enumerate(tokens):
        if t.low not in _AT:
            continue
        end = _domain_end(tokens, k + 1)
        start = _local_start(tokens, k - 2 if k > 1 and tokens[k - 1].text == "," else k - 1)  # "19, at outlook"
        if end is not None and start is not None:
            found.append(Finding(tokens[start].start, tokens[end].end, EMAIL))
    return found


def _label(t: _Token) -> bool:
    return t.kind in ("word", "digits") and t.low not in _JOINS and t.low not in _AT


def _domain_end(tokens: list[_Token], i: int) -> int | None:
    """The last token of ``gmail dot com`` / ``mail.example.co.uk`` from ``i``; ``None`` when it is no domain."""
    end, k = None, i
    while k < len(tokens) and _label(tokens[k]):
        if k > i and tokens[k - 1].low in _DOTS and tokens[k].low in _TLDS:
            end = k
        if k + 2 < len(tokens) and tokens[k + 1].low in _JOINS:
            k += 2
        else:
            break
    return end


def _local_start(tokens: list[_Token], i: int) -> int | None:
    """The first token of ``john dot smith`` / ``j smith seventy seven`` that ends at ``i``; ``None`` if none."""
    if i < 0 or not _label(tokens[i]) or tokens[i].low in _NOT_LOCAL:
        return None
    start, plain = i, int(not _loose(tokens[i]))
    while start > 0:
        before = tokens[start - 1]
        if before.low in _JOINS and start >= 2 and _label(tokens[start - 2]):
            if tokens[start - 2].low in _NOT_LOCAL:
                break
            start -= 2
        elif _label(before) and before.low not in _NOT_LOCAL and (_loose(before) or plain < 2):
            start -= 1
        else:
            break
        plain += not _loose(tokens[start])
    return start


def _loose(t: _Token) -> bool:
    """A token that sticks to its neighbour in a spoken address: a single letter, digits, a number word."""
    return len(t.text) == 1 or t.kind == "digits" or t.low in _NUMBER_WORDS


# ---------------------------------------------------------------- segments


def _without_overlaps(found: list[Finding]) -> list[Finding]:
    out: list[Finding] = []
    for f in sorted(found, key=lambda f: (f.start, -f.end)):
        if out and f.start < out[-1].end:
            if f.end > out[-1].end:
                out[-1] = replace(out[-1], end=f.end)
            continue
        out.append(f)
    return out


def _by_speaker(segments: Sequence[Segment]) -> dict[str | None, list[int]]:
    sides: dict[str | None, list[int]] = {}
    for i, s in enumerate(segments):
        sides.setdefault(s.speaker, []).append(i)
    return sides


def _per_piece(texts: list[str], found: list[Finding]) -> list[list[Finding]]:
    """Findings in texts joined by one blank, cut at each text's bounds and made relative to it."""
    out: list[list[Finding]] = []
    offset = 0
    for text in texts:
        end = offset + len(text)
        pieces = [
            Finding(max(f.start, offset) - offset, min(f.end, end) - offset, f.kind)
            for f in found
            if f.start < end and f.end > offset
        ]
        out.append([_trimmed(text, p) for p in pieces if text[p.start : p.end].strip()])
        offset = end + 1
    return out


def _trimmed(text: str, piece: Finding) -> Finding:
    """``piece`` without the blanks at its ends (a segment's leading blank stays outside the token)."""
    cut = text[piece.start : piece.end]
    return replace(
        piece, start=piece.start + len(cut) - len(cut.lstrip()), end=piece.end - len(cut) + len(cut.rstrip())
    )
