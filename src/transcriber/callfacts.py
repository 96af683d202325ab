"""The call's facts from its file name: the other party's number, when the call began, the contact, the direction.

Phone recorders write these into the names of their files. ``parse`` tries ``FILENAME_PATTERN`` first (a regular
expression with named groups among ``phone``, ``date``, ``time``, ``datetime``, ``contact``, ``direction``, searched
in the name without its extension), then the built-in patterns, each matching the whole name:

- ``samsung``: Samsung's own call recorder (One UI) and Google Phone:
  ``Call recording +18134353769_200301_171119``, ``Call recording John Doe_200301_171119``; the prefix in the
  phone's language (German ``Anruf Müller 0586469010_200609_165234``, ``Anrufaufnahme``; ``Anruf von`` is incoming,
  ``Anruf an`` outgoing).
- ``cube``: Cube ACR: ``Call@+18134353769(John Doe)_20200301171119`` (the contact or the number first).
- ``direction_first``: ACR (NLL) and the "Call Recorder" apps that start with the direction:
  ``Incoming_+18134353769_2020-03-01_17-11-19``, ``Outgoing call to John 2020-03-01 17.11.19``,
  ``Eingehender Anruf von Müller 2020-06-09 16-52-34``.
- ``number_first``: BoldBeast and recorders that start with the number: ``+18134353769_20200301-171119_in``.
- ``date_first``: ACR's date-first scheme: ``2020-03-01 17-11-19 (+18134353769) John Doe``.

A name that matches none gives ``CallFacts()`` (all ``None``), never an exception; so does a part that does not
make sense (a 13th month is no date). Numbers with ``+`` or ``00`` become E.164 (``+18134353769``); a national
number does too when a region is given (``PHONE_REGION=DE``), else it is kept as written, digits and a leading
``+`` only. Two-digit years are 20yy. The written time is in ``timezone`` (``FILENAME_TIMEZONE``, UTC when empty);
``call_started_at`` is always aware and in UTC. A date without a time is not a start time.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from datetime import UTC, datetime, tzinfo
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import phonenumbers

GROUPS = frozenset({"phone", "date", "time", "datetime", "contact", "direction"})
INCOMING, OUTGOING = "incoming", "outgoing"

_INCOMING_WORDS = ("in", "incoming", "inbound", "received", "eingehend", "eingehende", "eingehender", "eingehenden",
                   "von")  # fmt: skip
_OUTGOING_WORDS = ("out", "outgoing", "outbound", "dialed", "ausgehend", "ausgehende", "ausgehender", "ausgehenden",
                   "an")  # fmt: skip
_DIRECTIONS = {**dict.fromkeys(_INCOMING_WORDS, INCOMING), **dict.fromkeys(_OUTGOING_WORDS, OUTGOING)}


@dataclass(frozen=True)
class CallFacts:
    """What a file name says about its call; ``None`` where it does not say."""

    phone_number: str | None = None
    call_started_at: datetime | None = None
    contact: str | None = None
    direction: str | None = None


# ---------------------------------------------------------------- the built-in patterns

_DATE = r"\d{4}-\d{2}-\d{2}|\d{8}"
_TIME = r"\d{2}[-.:]\d{2}[-.:]\d{2}|\d{6}"
_LONG_DIRECTION = r"incoming|outgoing|inbound|outbound|eingehend(?:e[rn]?)?|ausgehend(?:e[rn]?)?"
# "who" is a number, a contact, or both ("Müller 0586469010", "(+18134353769) John Doe"); split by _party.
_BUILT_IN = {
    "samsung": r"(?:call recording|anrufaufnahme|anruf(?:\s+(?P<direction>von|an)(?=\s))?)\s+(?P<who>.+?)"
    r"_(?P<date>\d{6})_(?P<time>\d{6})",
    "cube": r"call@(?P<who>[^()@]+?)\s*(?:\((?P<who2>[^()]*)\))?_(?P<datetime>\d{14})",
    "direction_first": rf"(?P<direction>{_LONG_DIRECTION})(?:[ _-]+(?:call|anruf))?"
    rf"(?:[ _-]+(?:from|to|with|von|an|mit))?[ _-]+(?P<who>.+?)[ _-]+(?P<date>{_DATE})[ _-]+(?P<time>{_TIME})",
    "number_first": r"(?P<who>[^_]+?)_(?P<date>\d{8})[-_](?P<time>\d{6})"
    rf"(?:_(?P<direction>in|out|{_LONG_DIRECTION}))?",
    "date_first": rf"(?P<date>\d{{4}}-\d{{2}}-\d{{2}})[ _](?P<time>{_TIME})(?:[ _-]+(?P<who>.*?))?"
    rf"(?:[ _-]+(?P<direction>{_LONG_DIRECTION}))?",
}
_COMPILED = {name: re.compile(regex, re.IGNORECASE | re.ASCII) for name, regex in _BUILT_IN.items()}
_EXTENSION = re.compile(r"\.(?:3gp|3g2|[A-Za-z][A-Za-z0-9]{0,4})$", re.IGNORECASE)  # not ".19" of "17.11.19"
_PHONE_LIKE = re.compile(r"[+(]*[0-9][0-9 ().\-/]*")
_IN_PARENTHESES = re.compile(r"(.*?)\s*\(([^()]*)\)\s*(.*)")


def parse(file_name: str, *, pattern: str = "", region: str = "", timezone: str = "") -> CallFacts:
    """The facts ``file_name`` states: ``pattern`` (``FILENAME_PATTERN``) first, then the built-in patterns.

    ``region`` (``PHONE_REGION``) makes national numbers E.164; ``timezone`` (``FILENAME_TIMEZONE``) is the zone of
    the written time. A bad ``pattern`` or ``timezone`` raises ``ValueError`` (settings refuse them at start); a
    name never does.
    """
    stem = _EXTENSION.sub("", file_name.replace("\\", "/").rsplit("/", 1)[-1]).strip()
    zone = _zone(timezone)
    if pattern:
        found = _custom(pattern).search(stem)
        if found is not None:
            groups = {k: v for k, v in found.groupdict().items() if v}
            return _facts(groups, groups.get("phone"), groups.get("contact"), region, zone)
    for regex in _COMPILED.values():
        found = regex.fullmatch(stem)
        if found is not None:
            groups = {k: v for k, v in found.groupdict().items() if v}
            who = " ".join(f"({groups[k]})" if k == "who2" else groups[k] for k in ("who", "who2") if k in groups)
            phone, contact = _party(who)
            return _facts(groups, phone, contact, region, zone)
    return CallFacts()


def check_pattern(pattern: str) -> str | None:
    """Why ``pattern`` cannot be ``FILENAME_PATTERN``, in one line; ``None`` when it can."""
    try:
        compiled = re.compile(pattern)
    except re.error as exc:
        return f"does not compile ({exc})"
    unknown = sorted(set(compiled.groupindex) - GROUPS)
    if unknown:
        return f"has the group {unknown[0]!r}: named groups are {', '.join(sorted(GROUPS))}"
    if pattern and not compiled.groupindex:
        return f"has no named group ({', '.join(sorted(GROUPS))})"
    return None


def check_timezone(name: str) -> str | None:
    """Why ``name`` cannot be ``FILENAME_TIMEZONE``; ``None`` when it can (empty is UTC)."""
    try:
        _zone(name)
    except ValueError as exc:
        return str(exc)
    return None


def check_region(region: str) -> str | None:
    """Why ``region`` cannot be ``PHONE_REGION``; ``None`` when it can (empty: national numbers kept as written)."""
    if region and region.upper() not in phonenumbers.SUPPORTED_REGIONS:
        return f"{region!r} is not a country code phonenumbers knows"
    return None


def normalise_phone(text: str, region: str = "") -> str | None:
    """``text`` as E.164 where it can be (an international number, or a national one with ``region``),
    else its digits with a leading ``+`` if written; ``None`` for fewer than 3 digits."""
    cleaned = re.sub(r"[^0-9+]", "", text)
    international = cleaned.startswith(("+", "00"))
    digits = re.sub(r"[^0-9]", "", cleaned)
    if international and cleaned.startswith("00"):
        digits = digits[2:]
    if len(digits) < 3:
        return None
    written = f"+{digits}" if international else digits
    if international or region:
        try:
            number = phonenumbers.parse(written, None if international else region.upper())
        except phonenumbers.NumberParseException:
            return written
        if phonenumbers.is_possible_number(number):
            return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
    return written


def national_digits(text: str) -> str:
    """The digits of ``text`` that a stored number ends with however it was written: the national significant
    number of an international one, else the digits without leading zeros (for a suffix match)."""
    cleaned = re.sub(r"[^0-9+]", "", text)
    digits = re.sub(r"[^0-9]", "", cleaned)
    if cleaned.startswith(("+", "00")):
        try:
            number = phonenumbers.parse("+" + (digits[2:] if cleaned.startswith("00") else digits), None)
        except phonenumbers.NumberParseException:
            return digits.lstrip("0")
        return phonenumbers.national_significant_number(number)
    return digits.lstrip("0")


# ---------------------------------------------------------------- the parts


def _facts(groups: dict[str, str], phone: str | None, contact: str | None, region: str, zone: tzinfo) -> CallFacts:
    contact = " ".join(contact.split()) if contact else None
    direction = groups.get("direction")
    return CallFacts(
        phone_number=normalise_phone(phone, region) if phone else None,
        call_started_at=_started_at(groups.get("date"), groups.get("time"), groups.get("datetime"), zone),
        contact=contact or None,
        direction=_DIRECTIONS.get(" ".join(direction.lower().split())) if direction else None,
    )


def _party(who: str) -> tuple[str | None, str | None]:
    """A number and a contact from "who": ``+18134353769``, ``Müller 0586469010``, ``(+1813...) John Doe``."""
    who = " ".join(who.split()).strip(" _-")
    if not who:
        return None, None
    if _is_phone(who):
        return who, None
    inside = _IN_PARENTHESES.fullmatch(who)
    if inside is not None:
        outside = f"{inside[1]} {inside[3]}".strip(" _-")
        if _is_phone(inside[2]):
            return inside[2], outside or None
        if _is_phone(outside):
            return outside, inside[2].strip() or None
    first, _, rest = who.partition(" ")
    last = who.rsplit(" ", 1)[-1]
    if _is_phone(last):
        return last, who[: -len(last)].strip(" _-") or None
    if _is_phone(first):
        return first, rest.strip(" _-") or None
    return None, who


def _is_phone(text: str) -> bool:
    return _PHONE_LIKE.fullmatch(text.strip()) is not None and sum(c.isdigit() for c in text) >= 3


def _started_at(date: str | None, time: str | None, both: str | None, zone: tzinfo) -> datetime | None:
    if both:
        digits = re.sub(r"[^0-9]", "", both)
        date, time = digits[:-6], digits[-6:]
    if not date or not time:
        return None
    day = re.sub(r"[^0-9]", "", date)
    clock = re.sub(r"[^0-9]", "", time)
    if len(day) == 6:
        day = "20" + day
    if len(day) != 8 or len(clock) not in (4, 6):
        return None
    try:
        local = datetime(int(day[:4]), int(day[4:6]), int(day[6:]), int(clock[:2]), int(clock[2:4]),
                         int(clock[4:6] or 0), tzinfo=zone)  # fmt: skip
    except ValueError:  # 13th month, 25th hour: no date
        return None
    return local.astimezone(UTC)


@functools.lru_cache(maxsize=8)
def _custom(pattern: str) -> re.Pattern[str]:
    reason = check_pattern(pattern)
    if reason:
        raise ValueError(f"FILENAME_PATTERN {reason}")
    return re.compile(pattern)


@functools.lru_cache(maxsize=8)
def _zone(name: str) -> tzinfo:
    if not name.strip():
        return UTC
    try:
        return ZoneInfo(name.strip())
    except (ZoneInfoNotFoundError, ValueError, OSError):  # unknown, or not a zone name at all ("../x")
        raise ValueError(f"{name!r} is not a known time zone (e.g. Europe/Berlin)") from None
