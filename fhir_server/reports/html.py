"""The registry report as a self-contained HTML page: Tab. 1 and Fig. 1 of the registry letter
(seed-information-letter.txt), the other sections as tables, and the filters as a plain form.

Charts are SVG drawn here, on the server: no JavaScript, no CDN, no web fonts; the page works offline and
prints. Fig. 1 shows the patients registered per month (bars) with the cumulative number (line), and the
patients by country.
"""

from __future__ import annotations

import re
from datetime import date
from decimal import Decimal
from html import escape
from urllib.parse import urlencode

from fhir_server.reports.model import Filters, RegistryReport, Section, Stratifier, Stratum

CSS = """
form.account{float:right;background:none;padding:0}
body{font-family:"DejaVu Sans",Arial,Helvetica,sans-serif;margin:24px auto;max-width:1100px;color:#1d2733}
h1{font-size:22px;margin:0 0 4px} h2{font-size:17px;margin:28px 0 8px;border-bottom:1px solid #c9d3dd}
p.meta{color:#5a6b7b;margin:0 0 12px} table{border-collapse:collapse;margin:4px 0 8px;min-width:420px}
th,td{padding:4px 10px;border-bottom:1px solid #e1e7ee;text-align:left;font-size:14px}
td.n{text-align:right;font-variant-numeric:tabular-nums} tr.sub td{font-weight:bold;background:#f3f6f9}
form{background:#f3f6f9;padding:10px 12px;border-radius:6px;font-size:14px}
form label{margin-right:10px;white-space:nowrap} form input{width:96px} .cards{display:flex;gap:14px;flex-wrap:wrap}
.card{background:#f3f6f9;border-radius:6px;padding:10px 16px;min-width:170px}
.card b{display:block;font-size:22px} .error{background:#fde8e8;color:#8a1c1c;padding:10px;border-radius:6px}
.cols{display:flex;gap:30px;flex-wrap:wrap} svg text{font-family:"DejaVu Sans",Arial,sans-serif}
"""
BAR = "#3b6ea5"
LINE = "#d9822b"
MONTH = re.compile(r"^\d{4}-\d{2}$")  # a Fig. 1 key (registrations-by-month strata)


def _num(value: object) -> str:
    return "" if value is None else escape(str(value))


def _plain(value: Decimal | None) -> str:
    """A score without trailing zeros or exponent: 80.00 -> 80, 19.50 -> 19.5."""
    return "" if value is None else f"{value.normalize():f}"


def _table(headers: list[str], rows: list[list[str]], sub_rows: frozenset[int] = frozenset()) -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in headers)
    body = []
    for i, row in enumerate(rows):
        cells = "".join(f'<td class="n">{c}</td>' if j else f"<td>{c}</td>" for j, c in enumerate(row))
        body.append(f'<tr class="sub">{cells}</tr>' if i in sub_rows else f"<tr>{cells}</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _label(stratum: Stratum) -> str:
    return escape(stratum.display or stratum.key)


def _count_rows(stratifier: Stratifier) -> list[list[str]]:
    return [[_label(s), _num(s.count), _num(s.percent)] for s in stratifier.strata]


def _tab1(report: RegistryReport) -> str:
    """Tab. 1: reason for registration, with the failure and toxicity subtotals."""
    reasons = report.section("registration-reason").stratifier("registration-reason")
    groups = report.section("failure-vs-toxicity").stratifier("group")
    failure = groups.stratum("failure")
    rows = [["Lack of efficacy (failure)", _num(failure.count if failure else None),
             _num(failure.percent if failure else None)]]
    rows += [[_label(s), _num(s.count), _num(s.percent)] for s in reasons.strata]
    subtotal = {0} | {i + 1 for i, s in enumerate(reasons.strata) if s.key == "toxicity"}
    return _table(["Reason for registration", "N", "%"], rows, frozenset(subtotal))


def _months(first: str, last: str) -> list[str]:
    year, month = int(first[:4]), int(first[5:7])
    out = []
    while f"{year:04d}-{month:02d}" <= last:
        out.append(f"{year:04d}-{month:02d}")
        year, month = (year + 1, 1) if month == 12 else (year, month + 1)
    return out


def _nice_max(value: int) -> int:
    for step in (1, 2, 5, 10, 20, 25, 50, 100, 200, 250, 500, 1000, 2000, 5000, 10000):
        if value <= step * 5:
            return step * 5
    return value


def _fig_months(stratifier: Stratifier) -> str:
    """Fig. 1: registrations per month (bars, left axis) and cumulative (line, right axis)."""
    # a year-only registration date has no month (key ``YYYY``): counted in the report, not drawn here
    counts = {s.key: s.count or 0 for s in stratifier.strata if MONTH.match(s.key)}
    if not counts:
        return "<p>No registrations in the selected period.</p>"
    months = _months(min(counts), max(counts))
    width, height, left, right, top, bottom = 1040, 340, 50, 60, 20, 60
    plot_w, plot_h = width - left - right, height - top - bottom
    bar_max = _nice_max(max(counts.values()))
    cumulative, running = [], 0
    for m in months:
        running += counts.get(m, 0)
        cumulative.append(running)
    cum_max = _nice_max(running)
    step = plot_w / len(months)
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" role="img" '
             f'aria-label="Patients registered per month">']
    for i in range(6):
        y = top + plot_h - plot_h * i / 5
        parts.append(f'<line x1="{left}" y1="{y:.1f}" x2="{left + plot_w}" y2="{y:.1f}" stroke="#e1e7ee"/>')
        parts.append(f'<text x="{left - 6}" y="{y + 4:.1f}" font-size="11" text-anchor="end">'
                     f'{bar_max * i // 5}</text>')
        parts.append(f'<text x="{left + plot_w + 6}" y="{y + 4:.1f}" font-size="11" fill="{LINE}">'
                     f'{cum_max * i // 5}</text>')
    points = []
    for i, m in enumerate(months):
        x = left + i * step
        h = plot_h * counts.get(m, 0) / bar_max
        parts.append(f'<rect x="{x + step * 0.15:.1f}" y="{top + plot_h - h:.1f}" width="{step * 0.7:.1f}" '
                     f'height="{h:.1f}" fill="{BAR}"><title>{m}: {counts.get(m, 0)}</title></rect>')
        points.append(f"{x + step / 2:.1f},{top + plot_h - plot_h * cumulative[i] / cum_max:.1f}")
        if m.endswith("-01") or i == 0 or len(months) <= 18:
            parts.append(f'<text x="{x + step / 2:.1f}" y="{top + plot_h + 14}" font-size="10" '
                         f'text-anchor="end" transform="rotate(-45 {x + step / 2:.1f} {top + plot_h + 14})">'
                         f"{m}</text>")
    parts.append(f'<polyline points="{" ".join(points)}" fill="none" stroke="{LINE}" stroke-width="2.5"/>')
    parts.append(f'<line x1="{left}" y1="{top + plot_h}" x2="{left + plot_w}" y2="{top + plot_h}" '
                 f'stroke="#5a6b7b"/>')
    legend_y = height - 8
    parts.append(f'<rect x="{left}" y="{legend_y - 9}" width="12" height="10" fill="{BAR}"/>'
                 f'<text x="{left + 18}" y="{legend_y}" font-size="12">registered in the month</text>'
                 f'<line x1="{left + 210}" y1="{legend_y - 4}" x2="{left + 232}" y2="{legend_y - 4}" '
                 f'stroke="{LINE}" stroke-width="2.5"/>'
                 f'<text x="{left + 238}" y="{legend_y}" font-size="12">cumulative (right axis)</text>')
    parts.append("</svg>")
    return "".join(parts)


def _fig_countries(stratifier: Stratifier) -> str:
    """Patients by country: horizontal bars, largest first."""
    strata = [s for s in stratifier.strata if s.count]
    if not strata:
        return ""
    row, left, width = 24, 60, 520
    top_count = max(s.count or 0 for s in strata)
    height = row * len(strata) + 10
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width + left + 90}" height="{height}" '
             f'role="img" aria-label="Patients by country">']
    for i, s in enumerate(strata):
        y = 5 + i * row
        w = width * (s.count or 0) / top_count
        parts.append(f'<text x="{left - 8}" y="{y + 15}" font-size="13" text-anchor="end">{escape(s.key)}</text>'
                     f'<rect x="{left}" y="{y + 3}" width="{w:.1f}" height="{row - 8}" fill="{BAR}"/>'
                     f'<text x="{left + w + 6:.1f}" y="{y + 15}" font-size="12">{s.count} ({s.percent} %)</text>')
    parts.append("</svg>")
    return "".join(parts)


def _profile(section: Section, code: str, title: str) -> str:
    stratifier = section.stratifier(code)
    values = list(dict.fromkeys(dict(s.components)[code] for s in stratifier.strata))
    groups = list(dict.fromkeys(dict(s.components)["group"] for s in stratifier.strata))
    rows = []
    for value in values:
        cells = [escape(value)]
        for group in groups:
            s = stratifier.stratum(f"{group}|{value}")
            cells.append(_num(s.count if s else 0))
        rows.append(cells)
    return _table([title, *groups], rows)


def _exposure(section: Section) -> str:
    months = section.stratifier("duration-months")
    dose = section.stratifier("daily-dose-at-stop")
    rows = []
    for s in months.strata:
        d = dose.stratum(s.key)
        rows.append([escape(s.key), _num(s.count), _plain(s.score), _plain(d.score if d else None)])
    return _table(["Group", "Patients", "Median duration (months)", "Median daily dose at stop (mg)"], rows)


def _summary(report: RegistryReport) -> str:
    patients = report.section("patients")
    sex = patients.stratifier("sex")
    male, female = sex.stratum("male"), sex.stratum("female")
    age = report.section("age-at-diagnosis")
    rng = age.stratifier("range")
    lo, hi = rng.stratum("min"), rng.stratum("max")
    never = report.section("prospective-study").stratifier("prospective-study").stratum("never-included")
    age_text = "" if age.score is None else (f"{_plain(age.score)} ({_plain(lo.score if lo else None)}-"
                                             f"{_plain(hi.score if hi else None)})")
    cards = [("Registered patients", str(report.total)),
             ("Male / female", f"{_num(male.percent if male else None)} % / "
                               f"{_num(female.percent if female else None)} %"),
             ("Median age at diagnosis (range)", age_text),
             ("Never in a prospective study", f"{_num(never.percent if never else None)} %"),
             ("Countries", str(len(patients.stratifier("country").strata)))]
    return '<div class="cards">' + "".join(
        f'<div class="card">{escape(label)}<b>{escape(value)}</b></div>' for label, value in cards) + "</div>"


def _form(filters: Filters) -> str:
    def field(name: str, label: str, value: str) -> str:
        return f'<label>{label} <input name="{name}" value="{escape(value, quote=True)}"></label>'

    return ('<form method="get" action="">'
            + field("period-start", "Registered from", filters.period_start.isoformat() if filters.period_start
                    else "")
            + field("period-end", "to", filters.period_end.isoformat() if filters.period_end else "")
            + field("country", "Country", ",".join(sorted(filters.countries)))
            + field("center", "Center", ",".join(sorted(filters.centers)))
            + field("cohort", "Cohort (Group id)", filters.cohort or "")
            + '<button type="submit">Apply</button></form>')


def query_string(filters: Filters) -> str:
    """The filters as query parameters (links to the JSON and CSV forms of the same report)."""
    pairs = [(k, v) for k, v in (
        ("period-start", filters.period_start.isoformat() if filters.period_start else ""),
        ("period-end", filters.period_end.isoformat() if filters.period_end else ""),
        ("country", ",".join(sorted(filters.countries))), ("center", ",".join(sorted(filters.centers))),
        ("cohort", filters.cohort or "")) if v]
    return urlencode(pairs)


def _period(start: date | None, end: date | None) -> str:
    return f"{start.isoformat() if start else '...'} to {end.isoformat() if end else '...'}"


def page(title: str, body: str) -> str:
    return (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{escape(title)}</title>'
            f'<meta name="viewport" content="width=device-width, initial-scale=1"><style>{CSS}</style></head>'
            f"<body>{body}</body></html>")


def error_page(filters: Filters | None, message: str, top: str = "") -> str:
    form = _form(filters or Filters())
    return page("IFP registry report", f"{top}<h1>IFP registry report</h1>{form}"
                                       f'<p class="error">{escape(message)}</p>')


def render(report: RegistryReport, fhir_base: str = "/fhir", top: str = "") -> str:
    """The whole page; ``top``: HTML above it (who is signed in)."""
    qs = query_string(report.filters)
    link = f"{fhir_base}/$registry-report?{qs}" if qs else f"{fhir_base}/$registry-report"
    csv_link = f"{link}{'&' if qs else '?'}_format=text/csv"
    decisions = report.section("decision-after-imatinib").stratifier("decision-after-imatinib")
    profile = report.section("failure-vs-toxicity")
    body = [
        top, "<h1>European registry of CML patients in failure after imatinib (IFP)</h1>",
        f'<p class="meta">Patients registered {escape(_period(report.period_start, report.period_end))}. '
        f'Percentages are of all registered patients. <a href="{escape(link)}">MeasureReport (JSON)</a> · '
        f'<a href="{escape(csv_link)}">CSV</a></p>',
        _form(report.filters), "<h2>Summary</h2>", _summary(report),
        "<h2>Tab. 1: Reason for registration</h2>", _tab1(report),
        "<h2>Fig. 1: Number of patients registered over time</h2>",
        _fig_months(report.section("registrations-by-month").stratifier("registrations-by-month")),
        "<h2>Patients by country</h2>", _fig_countries(report.section("patients").stratifier("country")),
        "<h2>Imatinib dose and duration until failure or toxicity</h2>",
        _exposure(report.section("imatinib-exposure")),
        "<h2>Clinical profile: failure vs toxicity</h2>",
        '<div class="cols">', _profile(profile, "phase-at-diagnosis", "Phase at diagnosis"),
        _profile(profile, "sokal-group", "Sokal risk group"), "</div>",
        "<h2>Decision after imatinib</h2>", _table(["Decision", "N", "%"], _count_rows(decisions)),
        "<h2>Prospective study at the time of failure</h2>",
        _table(["", "N", "%"], _count_rows(report.section("prospective-study").stratifier("prospective-study"))),
    ]
    return page("IFP registry report", "".join(body))
