"""The call's facts from its file name (callfacts.py): every built-in pattern, FILENAME_PATTERN, region, zone."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from transcriber import report
from transcriber.callfacts import CallFacts, check_pattern, normalise_phone, parse
from transcriber.errors import ConfigError, TranscriberError
from transcriber.settings import load_settings

MARCH_1 = datetime(2020, 3, 1, 17, 11, 19, tzinfo=UTC)
JUNE_9 = datetime(2020, 6, 9, 16, 52, 34, tzinfo=UTC)


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        # samsung: One UI's recorder and Google Phone, in the phone's language
        ("Call recording +18134353769_200301_171119.m4a", CallFacts("+18134353769", MARCH_1)),
        ("Call recording John Doe_200301_171119.m4a", CallFacts(None, MARCH_1, "John Doe")),
        ("Anruf Müller 0586469010_200609_165234.m4a", CallFacts("0586469010", JUNE_9, "Müller")),
        ("Anruf von Müller 0586469010_200609_165234.m4a", CallFacts("0586469010", JUNE_9, "Müller", "incoming")),
        ("Anruf an Müller_200609_165234.m4a", CallFacts(None, JUNE_9, "Müller", "outgoing")),
        ("Anrufaufnahme 0049 586 469010_200609_165234.m4a", CallFacts("+49586469010", JUNE_9)),
        ("call recording +1 813 435 3769_200301_171119.M4A", CallFacts("+18134353769", MARCH_1)),
        # cube: Cube ACR, number or contact first
        ("Call@+18134353769(John Doe)_20200301171119.amr", CallFacts("+18134353769", MARCH_1, "John Doe")),
        ("Call@John Doe(+18134353769)_20200301171119.amr", CallFacts("+18134353769", MARCH_1, "John Doe")),
        ("Call@+18134353769_20200301171119.amr", CallFacts("+18134353769", MARCH_1)),
        # direction_first: ACR and the "Call Recorder" apps
        ("Incoming_+18134353769_2020-03-01_17-11-19.mp3", CallFacts("+18134353769", MARCH_1, None, "incoming")),
        ("Outgoing call to John 2020-03-01 17.11.19", CallFacts(None, MARCH_1, "John", "outgoing")),
        ("Outgoing call to John 2020-03-01 17.11.19.ogg", CallFacts(None, MARCH_1, "John", "outgoing")),
        ("Eingehender Anruf von Müller 2020-06-09 16-52-34.wav", CallFacts(None, JUNE_9, "Müller", "incoming")),
        ("Ausgehend_0586469010_20200609_165234.wav", CallFacts("0586469010", JUNE_9, None, "outgoing")),
        # number_first: BoldBeast and the like
        ("+18134353769_20200301-171119_in.3gp", CallFacts("+18134353769", MARCH_1, None, "incoming")),
        ("+18134353769_20200301-171119_out.3gp", CallFacts("+18134353769", MARCH_1, None, "outgoing")),
        ("+18134353769_20200301_171119.amr", CallFacts("+18134353769", MARCH_1)),
        # date_first: ACR's date-first scheme
        ("2020-03-01 17-11-19 (+18134353769) John Doe.m4a", CallFacts("+18134353769", MARCH_1, "John Doe")),
        (
            "2020-03-01 17-11-19 John Doe (+18134353769) outgoing.m4a",
            CallFacts("+18134353769", MARCH_1, "John Doe", "outgoing"),
        ),  # fmt: skip
        ("2020-03-01 17-11-19.m4a", CallFacts(None, MARCH_1)),
    ],
)
def test_built_in_patterns(name: str, expected: CallFacts) -> None:
    assert parse(name) == expected


@pytest.mark.parametrize(
    "name",
    [
        "Call recording +18134353769_201301_171119.m4a",  # month 13
        "Call recording +18134353769_200230_171119.m4a",  # February 30
        "Call recording +18134353769_200301_251119.m4a",  # hour 25
        "Call@+18134353769(John Doe)_20200301176119.amr",  # minute 61
    ],
)
def test_an_impossible_date_or_time_is_no_date_but_the_rest_stays(name: str) -> None:
    facts = parse(name)
    assert facts.call_started_at is None and facts.phone_number == "+18134353769"


@pytest.mark.parametrize(
    "name",
    [
        "notes.m4a",
        "meeting with the bank.mp3",
        "",
        ".m4a",
        "\udcff\udcfe call \x00\x1b[31m.m4a",  # surrogate-escaped bytes and control characters
        "Call recording _200301_171119.m4a",  # no one
        "Call@()_20200301171119",
        "x" * 5000 + "_200301_171119.m4a",
        "٠١٢٣٤٥٦٧٨٩_٢٠٢٠٠٣٠١-١٧١١١٩_in.m4a",  # digits of another script: not ours to read
        "a/b\\c:Call recording.m4a",
    ],
)
def test_a_name_without_facts_gives_nothing_and_never_raises(name: str) -> None:
    facts = parse(name, region="DE", timezone="Europe/Berlin")
    assert isinstance(facts, CallFacts)
    assert facts.call_started_at is None and facts.phone_number is None


def test_nothing_known_is_all_none() -> None:
    assert parse("notes.m4a") == CallFacts(None, None, None, None)


@pytest.mark.parametrize(
    ("region", "expected"),
    [("", "0586469010"), ("DE", "+49586469010"), ("de", "+49586469010")],
)
def test_a_national_number_becomes_e164_only_with_a_region(region: str, expected: str) -> None:
    assert parse("Anruf Müller 0586469010_200609_165234.m4a", region=region).phone_number == expected
    # an international one is E.164 whatever the region
    assert parse("Call recording +1 813-435-3769_200301_171119.m4a", region=region).phone_number == "+18134353769"


@pytest.mark.parametrize(
    ("text", "region", "expected"),
    [
        ("+1 (813) 435-3769", "", "+18134353769"),
        ("001 813 435 3769", "", "+18134353769"),
        ("(0586) 46 90 10", "", "0586469010"),  # kept as written: digits and the leading 0
        ("0586/469010", "DE", "+49586469010"),
        ("8134353769", "US", "+18134353769"),
        ("+1", "", None),  # too short to be a number
        ("ab", "DE", None),
        ("+99912345", "", "+99912345"),  # no such country: kept as written
    ],
)
def test_normalise_phone(text: str, region: str, expected: str | None) -> None:
    assert normalise_phone(text, region) == expected


@pytest.mark.parametrize(
    ("timezone", "expected"),
    [
        ("", datetime(2020, 6, 9, 16, 52, 34, tzinfo=UTC)),
        ("Europe/Berlin", datetime(2020, 6, 9, 14, 52, 34, tzinfo=UTC)),  # summer: UTC+2
        ("America/New_York", datetime(2020, 6, 9, 20, 52, 34, tzinfo=UTC)),
    ],
)
def test_the_written_time_is_in_the_configured_zone_and_returned_in_utc(timezone: str, expected: datetime) -> None:
    started = parse("Anruf Müller 0586469010_200609_165234.m4a", timezone=timezone).call_started_at
    assert started == expected and started is not None and started.utcoffset() == UTC.utcoffset(None)


def test_winter_time_too() -> None:
    started = parse("Call recording John_200101_120000.m4a", timezone="Europe/Berlin").call_started_at
    assert started == datetime(2020, 1, 1, 11, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("pattern", "name", "expected"),
    [
        (r"^rec-(?P<phone>\d+)-(?P<date>\d{8})-(?P<time>\d{4})$", "rec-4930123456-20200301-1711.wav",
         CallFacts("4930123456", datetime(2020, 3, 1, 17, 11, tzinfo=UTC))),
        (r"(?P<direction>IN|OUT)_(?P<contact>[^_]+)_(?P<datetime>\d{14})", "OUT_Jane Roe_20200301171119.wav",
         CallFacts(None, MARCH_1, "Jane Roe", "outgoing")),
        (r"(?P<datetime>\d{4}-\d\d-\d\d \d\d-\d\d-\d\d)", "x 2020-03-01 17-11-19 y.wav", CallFacts(None, MARCH_1)),
        # tried before the built-ins: this recorder writes dd-mm-yy where Samsung writes yymmdd
        (r"^Call recording (?P<phone>\+\d+)_(?P<date>\d{6})", "Call recording +18134353769_010320_171119.m4a",
         CallFacts("+18134353769")),
        # a pattern that does not match leaves the name to the built-ins
        (r"^nothing-like-(?P<phone>\d+)$", "Call recording +18134353769_200301_171119.m4a",
         CallFacts("+18134353769", MARCH_1)),
    ],
)  # fmt: skip
def test_filename_pattern(pattern: str, name: str, expected: CallFacts) -> None:
    assert check_pattern(pattern) is None
    assert parse(name, pattern=pattern) == expected


def test_filename_pattern_with_a_region_and_a_zone() -> None:
    facts = parse("rec-030123456-20200301-1711.wav", pattern=r"rec-(?P<phone>\d+)-(?P<date>\d+)-(?P<time>\d+)",
                  region="DE", timezone="Europe/Berlin")  # fmt: skip
    assert facts == CallFacts("+4930123456", datetime(2020, 3, 1, 16, 11, tzinfo=UTC))


@pytest.mark.parametrize(
    ("pattern", "reason"),
    [
        ("(?P<phone>\\d+", "does not compile"),
        ("(?P<number>\\d+)", "has the group 'number'"),
        ("\\d+", "has no named group"),
    ],
)
def test_a_bad_pattern_says_why(pattern: str, reason: str) -> None:
    said = check_pattern(pattern)
    assert said is not None and said.startswith(reason) and "\n" not in said
    with pytest.raises(ValueError, match="FILENAME_PATTERN"):
        parse("a.m4a", pattern=pattern)


def test_an_empty_pattern_is_fine() -> None:
    assert check_pattern("") is None


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("FILENAME_PATTERN", "(?P<phone>"),
        ("FILENAME_PATTERN", "(?P<caller>\\d+)"),
        ("PHONE_REGION", "Germany"),
        ("PHONE_REGION", "XX"),
        ("FILENAME_TIMEZONE", "Mars/Olympus_Mons"),
        ("FILENAME_TIMEZONE", "../../etc/passwd"),
    ],
)
def test_settings_refuse_bad_values_in_one_line(monkeypatch: pytest.MonkeyPatch, variable: str, value: str) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigError) as raised:
        load_settings()
    said = str(raised.value)
    assert said.startswith(f"{variable}=") and "\n" not in said


def test_settings_accept_and_tidy_good_values(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FILENAME_PATTERN", r"(?P<phone>\+\d+)_(?P<datetime>\d{14})")
    monkeypatch.setenv("PHONE_REGION", " de ")
    monkeypatch.setenv("FILENAME_TIMEZONE", "Europe/Berlin")
    settings = load_settings()
    assert (settings.phone_region, settings.filename_timezone) == ("DE", "Europe/Berlin")
    assert (load_settings(PHONE_REGION="", FILENAME_TIMEZONE="").phone_region, "") == ("", "")


def test_the_call_line_shows_only_the_known_parts() -> None:
    full = {"phone_number": "+18134353769", "call_started_at": MARCH_1.isoformat(), "direction": "incoming",
            "contact": "Müller"}  # fmt: skip
    assert report.format_call(full) == "+18134353769, 2020-03-01 17:11:19 UTC, incoming, contact Müller"
    assert report.format_call({**full, "call_started_at": None, "direction": None}) == "+18134353769, contact Müller"
    assert report.format_call({}) == ""


@pytest.mark.parametrize(
    ("given", "message"),
    [
        ({"phone": "ab"}, "--phone 'ab': expected a phone number"),
        ({"contact": " "}, "--contact '': expected"),
        ({"since": MARCH_1, "until": MARCH_1}, "--called-until is not after --called-since"),
    ],
)
def test_bad_filters_are_one_clear_line(given: dict[str, object], message: str) -> None:
    with pytest.raises(TranscriberError, match=message):
        report.CallFilter(**given)  # type: ignore[arg-type]
