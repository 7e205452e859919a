"""Charts of behaviour as plotly figures (plain dicts): the page draws them with plotly.js
(config/static/engine/charts.js), and a table beside each carries the same numbers for screen readers and
for people who would rather read.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from django.db.models import Count, Sum

from usage.metrics import zone_named
from usage.models import UsageDaily, UsageDailyUser

#: One colour per product, stable across pages (plotly's default palette order).
PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f")
NO_PRODUCT = "(no product)"


@dataclass(frozen=True)
class DailyUsage:
    """Per product, per day of the window: usage events and distinct active users."""

    days: list[date]
    events: dict[str, list[int]]
    users: dict[str, list[int]]

    @property
    def empty(self) -> bool:
        return not any(sum(values) for values in self.events.values())

    def rows(self) -> list[dict[str, Any]]:
        """The table beside the chart: one row a day, newest first, with each product's events and users."""
        products = sorted(self.events)
        return [
            {
                "day": day,
                "cells": [(self.events[product][index], self.users[product][index]) for product in products],
            }
            for index, day in reversed(list(enumerate(self.days)))
        ]


def daily_usage(workspace_key: str, *, now: datetime, zone_name: str = "", days: int = 30) -> DailyUsage:
    """The last `days` rollup days up to today in the workspace's zone, per product (two queries)."""
    today = now.astimezone(zone_named(zone_name)).date()
    window = [today - timedelta(days=offset) for offset in range(days - 1, -1, -1)]
    first = window[0]
    index = {day: position for position, day in enumerate(window)}
    events: dict[str, list[int]] = defaultdict(lambda: [0] * days)
    users: dict[str, list[int]] = defaultdict(lambda: [0] * days)
    rows = (
        UsageDaily.objects.filter(workspace_key=workspace_key, day__gte=first, day__lte=today)
        .values("product", "day")
        .annotate(total=Sum("events"))
    )
    for row in rows:
        events[row["product"] or NO_PRODUCT][index[row["day"]]] += row["total"]
    active = (
        UsageDailyUser.objects.filter(workspace_key=workspace_key, day__gte=first, day__lte=today)
        .values("product", "day")
        .annotate(people=Count("user_email", distinct=True))
    )
    for row in active:
        users[row["product"] or NO_PRODUCT][index[row["day"]]] = row["people"]
    for product in events:
        users[product]  # every product with events has a users series too (zeros when nobody was named)
    return DailyUsage(window, dict(events), dict(users))


def daily_usage_figure(usage: DailyUsage) -> dict[str, Any]:
    """Bars of events per product (stacked) and lines of daily active users, on one time axis."""
    x = [day.isoformat() for day in usage.days]
    data: list[dict[str, Any]] = []
    for position, product in enumerate(sorted(usage.events)):
        colour = PALETTE[position % len(PALETTE)]
        data.append(
            {"type": "bar", "x": x, "y": usage.events[product], "name": f"{product} events",
             "marker": {"color": colour}, "opacity": 0.55, "hovertemplate": "%{y} events<extra>" + product + "</extra>"}
        )  # fmt: skip
        data.append(
            {"type": "scatter", "mode": "lines+markers", "x": x, "y": usage.users[product], "yaxis": "y2",
             "name": f"{product} active users", "line": {"color": colour, "width": 2},
             "hovertemplate": "%{y} active users<extra>" + product + "</extra>"}
        )  # fmt: skip
    stacked = [sum(values[index] for values in usage.events.values()) for index in range(len(usage.days))]
    return {
        "data": data,
        "layout": {
            "barmode": "stack",
            "height": 320,
            "margin": {"l": 48, "r": 48, "t": 36, "b": 40},
            "legend": {"orientation": "h", "y": -0.2},
            "xaxis": {"type": "date", "tickformat": "%b %d", "dtick": 7 * 24 * 3600 * 1000},
            "yaxis": {"title": {"text": "events"}, "rangemode": "tozero", **_whole_ticks(max(stacked, default=0))},
            "yaxis2": {
                "title": {"text": "active users"},
                "overlaying": "y",
                "side": "right",
                "rangemode": "tozero",
                "showgrid": False,
                **_whole_ticks(max((max(values, default=0) for values in usage.users.values()), default=0)),
            },
            "hovermode": "x unified",
        },
    }


def members_figure(history: list[tuple[date, int]], *, name: str) -> dict[str, Any]:
    """Members at the end of each day: a cohort's or a stage's size over time."""
    return {
        "data": [
            {
                "type": "scatter",
                "mode": "lines",
                "fill": "tozeroy",
                "name": name,
                "x": [day.isoformat() for day, _ in history],
                "y": [count for _, count in history],
                "hovertemplate": "%{y} members<extra></extra>",
            }
        ],
        "layout": {
            "height": 240,
            "margin": {"l": 48, "r": 16, "t": 16, "b": 40},
            "xaxis": {"type": "date", "tickformat": "%b %d"},
            "yaxis": {
                "title": {"text": "members"},
                "rangemode": "tozero",
                **_whole_ticks(max((c for _, c in history), default=0)),
            },
        },
    }


def _whole_ticks(largest: int) -> dict[str, Any]:
    """Counts are whole: ticks every 1, 2, 5, 10… so about five of them show, never "0.5 users"."""
    scale = 1
    while True:
        for step in (scale, 2 * scale, 5 * scale):
            if largest / step <= 5:
                return {"dtick": step, "tick0": 0, "tickformat": ",d"}
        scale *= 10
