"""The scanner framer, fed bytes directly: terminators, prefixes, every rejection, any chunking."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from drivers.scanner_framing import Scan, ScanFramer, ScanRejected, ScanRejectReason, Terminator
from drivers.setup_codes import setup_code_kind, setup_code_kind_of_bytes

MS = 1_000_000


def feed_all(framer: ScanFramer, chunks: list[bytes], at_ns: int = 0) -> list[Scan | ScanRejected]:
    out: list[Scan | ScanRejected] = []
    for chunk in chunks:
        out.extend(framer.feed(chunk, at_ns))
    return out


def codes(results: list[Scan | ScanRejected]) -> list[str]:
    return [r.code for r in results if isinstance(r, Scan)]


def reasons(results: list[Scan | ScanRejected]) -> list[ScanRejectReason]:
    return [r.reason for r in results if isinstance(r, ScanRejected)]


@pytest.mark.parametrize("terminator", [b"\r", b"\n", b"\r\n"])
def test_each_terminator_ends_a_line_and_crlf_is_one(terminator):
    results = ScanFramer().feed(b"123" + terminator + b"456" + terminator, 7)
    assert results == [Scan("123", b"123", None, 7), Scan("456", b"456", None, 7)]


def test_empty_lines_are_ignored():
    assert codes(ScanFramer().feed(b"\r\n\r\n\n\r\r1\r\n\n", 0)) == ["1"]


def test_crlf_split_across_reads_is_still_one_terminator():
    framer = ScanFramer()
    assert codes(framer.feed(b"123\r", 0)) == ["123"]
    assert framer.feed(b"\n456", 1) == []
    assert codes(framer.feed(b"\r", 2)) == ["456"]


def test_cr_only_framer_rejects_the_lf_of_a_crlf_scanner():
    results = ScanFramer(terminators=Terminator.CR).feed(b"123\r\n456\r", 0)
    assert codes(results) == ["123"]
    assert reasons(results) == [ScanRejectReason.UNPRINTABLE]


def test_lf_only_framer_treats_cr_as_data():
    results = ScanFramer(terminators=Terminator.LF).feed(b"123\r\n", 0)
    assert reasons(results) == [ScanRejectReason.UNPRINTABLE]


def test_at_ns_is_the_time_of_the_chunk_holding_the_terminator():
    framer = ScanFramer()
    assert framer.feed(b"12", 100) == []
    [scan] = framer.feed(b"34\r", 200)
    assert isinstance(scan, Scan)
    assert (scan.code, scan.at_ns) == ("1234", 200)


STREAM = (
    b"]Q1000123456789\r\n"
    b"plain-code\r"
    b"\x00\x07bad\r"
    b"]Q1\r"
    b"NLS0006010;\r\n" + b"9" * 40 + b"\r"
    b"]C0ABC-123\n"
    b"\xff\xfe\r"
    b"last\r\n"
)


def test_split_at_every_boundary_gives_the_same_results():
    whole = ScanFramer(max_length=32).feed(STREAM, 5)
    assert len(whole) == 9
    assert codes(whole) == ["000123456789", "plain-code", "ABC-123", "last"]
    for cut in range(len(STREAM) + 1):
        framer = ScanFramer(max_length=32)
        assert feed_all(framer, [STREAM[:cut], STREAM[cut:]], 5) == whole, cut
    for cut_a in range(0, len(STREAM), 3):
        for cut_b in range(cut_a, len(STREAM), 7):
            framer = ScanFramer(max_length=32)
            parts = [STREAM[:cut_a], STREAM[cut_a:cut_b], STREAM[cut_b:]]
            assert feed_all(framer, parts, 5) == whole, (cut_a, cut_b)
    framer = ScanFramer(max_length=32)
    assert feed_all(framer, [bytes([b]) for b in STREAM], 5) == whole


@pytest.mark.parametrize(
    ("line", "symbology", "code"),
    [
        (b"]Q1123", "]Q1", "123"),
        (b"]C0ABC", "]C0", "ABC"),
        (b"]d2010123", "]d2", "010123"),
        (b"]E00012345678905", "]E0", "0012345678905"),
        (b"]QZ9", "]QZ", "9"),
        (b"]]Q1x", None, "]]Q1x"),  # not an identifier: kept as data
        (b"]1Q1", None, "]1Q1"),
        (b"]Q1]Q1x", "]Q1", "]Q1x"),  # only one identifier is stripped
    ],
)
def test_one_aim_prefix_is_stripped_and_reported(line, symbology, code):
    [scan] = ScanFramer().feed(line + b"\r", 0)
    assert isinstance(scan, Scan)
    assert (scan.symbology, scan.code, scan.raw) == (symbology, code, line)


def test_prefix_alone_is_rejected():
    [rejected] = ScanFramer().feed(b"]Q1\r", 3)
    assert rejected == ScanRejected(ScanRejectReason.EMPTY_AFTER_PREFIX, rejected.detail, 3, 3)
    assert "]Q1" in rejected.detail


def test_oversize_line_is_rejected_once_and_never_emitted_in_part():
    framer = ScanFramer(max_length=10)
    results = feed_all(framer, [b"12345", b"67890", b"1", b"2" * 100, b"345\r", b"ok\r"])
    assert reasons(results) == [ScanRejectReason.TOO_LONG]
    assert codes(results) == ["ok"]
    assert results[0].length == 11
    assert "longer than 10 bytes" in results[0].detail


def test_line_of_exactly_max_length_is_accepted():
    assert codes(ScanFramer(max_length=10).feed(b"1234567890\r", 0)) == ["1234567890"]


@pytest.mark.parametrize("bad", [b"12\x003", b"\x07", b"ab\x7fc", b"\tcode", b"caf\xc3\xa9", b"\xff\xfe"])
def test_unprintable_is_rejected_with_a_hex_position_not_the_bytes(bad):
    [rejected] = ScanFramer().feed(bad + b"\r", 0)
    assert rejected.reason == ScanRejectReason.UNPRINTABLE
    assert rejected.length == len(bad)
    assert "0x" in rejected.detail
    assert bad.decode("latin-1") not in rejected.detail


def test_unicode_only_when_allowed_and_still_without_controls():
    framer = ScanFramer(allow_unicode=True)
    assert codes(framer.feed("café\r".encode(), 0)) == ["café"]
    assert reasons(framer.feed(b"\xff\xfe\r", 0)) == [ScanRejectReason.UNPRINTABLE]
    assert reasons(framer.feed("a\u200bb\r".encode(), 0)) == [ScanRejectReason.UNPRINTABLE]  # format char


def test_hostile_line_never_appears_in_detail():
    payload = b"\x1b]0;owned\x07" + b"A" * 100
    for framer in (ScanFramer(max_length=50), ScanFramer()):
        [rejected] = framer.feed(payload + b"\r", 0)
        assert "owned" not in rejected.detail
        assert len(rejected.detail) < 120


def test_unterminated_line_times_out_and_does_not_join_the_next():
    framer = ScanFramer(line_timeout_s=0.5)
    assert framer.feed(b"half-a-co", 0) == []
    assert framer.expire(400 * MS) == []
    assert framer.pending == 9
    [rejected] = framer.expire(500 * MS)
    assert (rejected.reason, rejected.length, rejected.at_ns) == (ScanRejectReason.TIMEOUT, 9, 500 * MS)
    assert framer.pending == 0
    assert codes(framer.feed(b"123\r", 600 * MS)) == ["123"]


def test_timeout_is_measured_from_the_last_byte_so_slow_long_lines_survive():
    framer = ScanFramer(line_timeout_s=0.5)
    for i in range(10):  # 1 s in total, never 0.5 s without a byte
        assert framer.feed(b"1", i * 100 * MS) == []
    assert codes(framer.feed(b"\r", 1000 * MS)) == ["1" * 10]


def test_feed_expires_a_stale_line_by_itself():
    framer = ScanFramer(line_timeout_s=0.5)
    framer.feed(b"stale", 0)
    results = framer.feed(b"fresh\r", 2000 * MS)
    assert reasons(results) == [ScanRejectReason.TIMEOUT]
    assert codes(results) == ["fresh"]


def test_discarding_an_oversize_line_ends_on_timeout_without_a_second_rejection():
    framer = ScanFramer(max_length=4, line_timeout_s=0.5)
    assert reasons(framer.feed(b"123456789", 0)) == [ScanRejectReason.TOO_LONG]
    assert framer.expire(600 * MS) == []
    assert codes(framer.feed(b"ok\r", 700 * MS)) == ["ok"]


def test_flush_reports_a_cut_off_line_as_truncated():
    framer = ScanFramer()
    framer.feed(b"12", 0)
    [rejected] = framer.flush(5)
    assert (rejected.reason, rejected.length) == (ScanRejectReason.TRUNCATED, 2)
    assert framer.flush(6) == []


@pytest.mark.parametrize(
    ("line", "kind"),
    [
        (b"NLS0006010;", "newland_nls"),
        (b"nls0313000=3000;", "newland_nls"),
        (b"]Q1NLS0006000", "newland_nls"),
        (b"@UPAAD50", "newland_setup"),
        (b"$$%^5917069990020010F141", "newland_command"),
        (b"~\x010000@DFMADD069990020010F141;\x03", "newland_command"),
        (b"\x16M", "honeywell_menu"),
        (b"232BAD9.", "honeywell_menu"),
        (b"DEFALT.", "honeywell_menu"),
        (b"232BAD?,DBT!", "honeywell_menu"),
        (b"\x02999999\x03", "metroselect"),
        (b"\x82abc", "datalogic_fnc3"),
        (b"$+CE0$-", "datalogic_host"),
    ],
)
def test_setup_codes_are_refused(line, kind):
    [rejected] = ScanFramer().feed(line + b"\r", 0)
    assert rejected.reason == ScanRejectReason.SETUP_CODE
    assert kind in rejected.detail


@pytest.mark.parametrize(
    "code",
    [
        "000123456789",
        "999999",  # MetroSelect's digit labels are deliberately not matched
        "HC1:6BFOXN*TS0BI$ZD4N9:9S6RCVN5+O30K3/XIV0W23NTDEMWK4MI6UOS03CR83KLBKAVN",
        "shc:/567629095243206034602924374044603122295953265460346029254077280433602870286471674522280928613331456437653141590640220306450459085643550341424541364037063665417137241236380304375622046737407532323925433443326057360106452931531270742428395038692212766728666731266342087422573776302062041022437658685343255820002167287607585708105505622752282407670809680507692361773323356634342439664440596761410443377667202663224433674530596175400038397052612140292974753658337372662132066669047253044469405210524536242721550377673434280323045475690310233670562227414567090555653507636250537239522776211205312561442568282012726838630039087127042463716936535535602928393065580072763158437500677829581264503963",
        "AB-12.34",
        "232bad9.",  # Honeywell tags are upper case in every manual; lower case is data
        "@short",
    ],
)
def test_real_passes_are_not_mistaken_for_setup_codes(code):
    assert setup_code_kind(code) is None
    assert setup_code_kind_of_bytes(code.encode()) is None
    assert codes(ScanFramer(max_length=1024).feed(code.encode() + b"\r", 0)) == [code]


def test_constructor_refuses_nonsense():
    with pytest.raises(ValueError):
        ScanFramer(max_length=0)
    with pytest.raises(ValueError):
        ScanFramer(line_timeout_s=0)
    with pytest.raises(ValueError):
        ScanFramer(terminators=Terminator(0))


# -- properties ----------------------------------------------------------------------


@st.composite
def chunked(draw: st.DrawFn, data: st.SearchStrategy[bytes]) -> tuple[bytes, list[bytes]]:
    stream = draw(data)
    cuts = sorted(draw(st.lists(st.integers(0, len(stream)), max_size=12)))
    edges = [0, *cuts, len(stream)]
    return stream, [stream[a:b] for a, b in itertools.pairwise(edges)]


NOISY = st.binary(max_size=400) | st.lists(
    st.sampled_from([b"\r", b"\n", b"\r\n", b"]Q1", b"123", b"\x00", b"\xff", b"NLS0006010", b"A" * 30]),
    max_size=40,
).map(b"".join)


@settings(max_examples=300, deadline=None)
@given(chunked(NOISY), st.integers(1, 64))
def test_any_bytes_in_any_chunks_give_only_safe_results(sample, max_length):
    stream, chunks = sample
    framer = ScanFramer(max_length=max_length)
    results = feed_all(framer, chunks, 11)
    results += framer.flush(12)
    for result in results:
        assert isinstance(result, Scan | ScanRejected)
        if isinstance(result, Scan):
            assert result.code
            assert all(0x20 <= ord(c) <= 0x7E for c in result.code)
            assert len(result.code) <= max_length
            assert result.code.encode() in result.raw
        else:
            assert isinstance(result.reason, ScanRejectReason)
    # Chunking never changes the outcome.
    whole = ScanFramer(max_length=max_length)
    assert [*whole.feed(stream, 11), *whole.flush(12)] == results


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.text(alphabet="0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ $%*+-./:", min_size=1, max_size=60),
        max_size=20,
    )
)
def test_printable_lines_come_back_exactly(lines):
    stream = b"".join(line.encode() + b"\r\n" for line in lines)
    results = ScanFramer().feed(stream, 0)
    assert len(results) == len(lines)
    for line, result in zip(lines, results, strict=True):
        if isinstance(result, Scan):
            assert (result.symbology or "") + result.code == line
        else:
            assert result.reason in (ScanRejectReason.SETUP_CODE, ScanRejectReason.EMPTY_AFTER_PREFIX)
