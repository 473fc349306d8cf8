"""The SVG charts parse as XML, carry their labels, and mark the peaks where the data has them."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from datetime import UTC, date, datetime, timedelta

from console.flow import FlowBucket, day_series, month_series, peak_indices
from console.web.charts import Bar, ChartText, bar_chart, day_chart, month_chart, nice_ticks

SVG = "{http://www.w3.org/2000/svg}"
ZONE_NAME = "Asia/Shanghai"
TEXT = ChartText("North gate, 2026-11-27", "hour", "persons per hour", ("entries", "exits", "denied"), "peak")


def _parse(svg: str) -> ET.Element:
    root = ET.fromstring(svg)
    assert root.tag == f"{SVG}svg"
    return root


def _day_buckets() -> list[FlowBucket]:
    from zoneinfo import ZoneInfo

    start = datetime(2026, 11, 27, tzinfo=ZoneInfo(ZONE_NAME)).astimezone(UTC)
    loads = [5] * 24
    loads[18], loads[19], loads[8] = 300, 260, 200  # 260 >= 0.8 * 300: a peak too; 200 is not
    return [
        FlowBucket("longtan", "north", start + timedelta(hours=h), 60, entries=n, exits=1, denied=h % 2)
        for h, n in enumerate(loads)
    ]


def test_day_chart_is_well_formed_labelled_and_marks_the_peaks() -> None:
    from zoneinfo import ZoneInfo

    series = day_series(_day_buckets(), date(2026, 11, 27), ZoneInfo(ZONE_NAME), 60)
    slots = series["longtan/north"]
    root = _parse(str(day_chart(slots, TEXT)))
    texts = [t.text for t in root.iter(f"{SVG}text")]
    assert "persons per hour" in texts and "hour" in texts and "North gate, 2026-11-27" in texts
    assert {"entries", "exits", "denied", "peak"} <= set(texts)
    peaks = [g for g in root.iter(f"{SVG}g") if "peak" in (g.get("class") or "").split()]
    assert sorted(g.get("data-label") for g in peaks) == ["18:00", "19:00"]
    for g in peaks:
        assert g.find(f"{SVG}path[@class='peak-mark']") is not None
        assert "(peak)" in (g.find(f"{SVG}title").text or "")
    bars = [g for g in root.iter(f"{SVG}g") if "bar" in (g.get("class") or "").split()]
    assert len(bars) == 24
    ticks = [int(t.text) for t in root.iter(f"{SVG}text") if t.text and t.text.isdigit()]
    assert max(ticks) >= 302  # the y axis reaches above the tallest bar (300 + 1 exit + 1 denied)


def test_month_chart_marks_the_busiest_days() -> None:
    from zoneinfo import ZoneInfo

    zone = ZoneInfo(ZONE_NAME)
    buckets = []
    for day in range(1, 31):
        start = datetime(2026, 11, day, 12, tzinfo=zone).astimezone(UTC)
        buckets.append(FlowBucket("longtan", "north", start, 60, entries=1000 if day == 13 else 400))
    days = month_series(buckets, date(2026, 11, 5), zone)
    assert len(days) == 30 and [d.day.day for d in days if d.peak] == [13]
    root = _parse(str(month_chart(days, TEXT)))
    peaks = [g for g in root.iter(f"{SVG}g") if "peak" in (g.get("class") or "").split()]
    assert [g.get("data-label") for g in peaks] == ["13"]


def test_hostile_labels_are_escaped_and_empty_charts_still_draw() -> None:
    evil = ChartText("<script>alert(1)</script>", "x & y", "'quoted'", ("a<b", "c", "d"), "p")
    root = _parse(str(bar_chart([Bar("<b>", (0, 0, 0))], evil)))
    assert any(t.text == "<script>alert(1)</script>" for t in root.iter(f"{SVG}text"))
    assert root.find(f".//{SVG}script") is None
    assert _parse(str(bar_chart([], TEXT))) is not None


def test_ticks_and_peaks() -> None:
    assert nice_ticks(0) == [0, 1]
    assert nice_ticks(302) == [0, 100, 200, 300, 400]
    assert nice_ticks(7) == [0, 2, 4, 6, 8]
    assert peak_indices([0, 0, 0]) == set()
    assert peak_indices([10, 8, 7.9, 0]) == {0, 1}
