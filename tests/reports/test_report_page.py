"""``GET /report``: the HTML page (Tab. 1, Fig. 1) with the same filters as ``$registry-report``, and a
headless Chromium rendering of it to a PNG (skipped where /usr/bin/chromium is absent)."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from fhir_server.api.app import create_app
from fhir_server.services import Services
from fhir_server.settings import Settings
from tests.reports.helpers import load_cohort, pct, serve, table_row, with_page
from tests.synthetic import PatientFacts

CHROMIUM = Path("/usr/bin/chromium")


@pytest.fixture
async def loaded(client: httpx.AsyncClient, services: Services, empty_db: None) -> list[PatientFacts]:
    return [f for f, _ in await load_cohort(client, 60, 1984)]


async def test_page_shows_tab1_and_fig1(page_client: httpx.AsyncClient, loaded: list[PatientFacts]) -> None:
    response = await page_client.get("/report")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    page = response.text
    reasons = Counter(f.reason for f in loaded)
    assert table_row(page, "Progression to accelerated phase or blast crisis") == (
        reasons["progression-ap-bc"], pct(reasons["progression-ap-bc"], len(loaded)))
    assert table_row(page, "Not recorded")[0] == reasons["not-recorded"]
    failures = sum(1 for f in loaded if f.group == "failure")
    assert table_row(page, "Lack of efficacy (failure)")[0] == failures
    assert page.count("<svg") == 2 and "Fig. 1" in page
    assert "<script" not in page and 'src="http' not in page and "@import" not in page


async def test_page_filters(page_client: httpx.AsyncClient, loaded: list[PatientFacts]) -> None:
    page = (await page_client.get("/report", params={"country": "FR", "period-start": "2006"})).text
    expected = [f for f in loaded if f.country == "FR" and f.registration_date.year >= 2006]
    assert f"Registered patients<b>{len(expected)}</b>" in page
    assert 'value="2006-01-01"' in page and "country=FR" in page
    bad = await page_client.get("/report", params={"period-end": "never"})
    assert bad.status_code == 400 and "period-end" in bad.text


@pytest.fixture
def served(settings: Settings) -> Iterator[str]:
    """The app (with the page) served over real HTTP for Chromium."""
    with serve(with_page(create_app(settings))) as url:
        yield url


@pytest.mark.skipif(not CHROMIUM.exists(), reason="headless Chromium (/usr/bin/chromium) is not installed")
async def test_chromium_renders_the_page(loaded: list[PatientFacts], served: str, tmp_path: Path) -> None:
    shot = tmp_path / "report.png"
    profile = tempfile.mkdtemp(prefix="chromium-")
    try:
        result = subprocess.run(
            [str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={profile}", f"--screenshot={shot}", "--window-size=1200,1600",
             f"{served}/report"],
            capture_output=True, timeout=120, check=False)
    finally:
        shutil.rmtree(profile, ignore_errors=True)
    assert shot.exists(), result.stderr.decode(errors="replace")[-2000:]
    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 20_000
    keep = os.environ.get("IFP_REPORT_SCREENSHOT")
    if keep:
        shutil.copy(shot, keep)


async def test_year_only_registration_date_does_not_break_fig1(
        page_client: httpx.AsyncClient, client: httpx.AsyncClient, services: Services, empty_db: None) -> None:
    """A registration Observation may have a year-only ``effectiveDateTime`` (a valid dateTime): Fig. 1 draws
    the months it has, and the page is not a 500."""
    await load_cohort(client, 3, 1984)
    found = (await client.get("/fhir/Observation", params={
        "code": "https://cml-registry.eu/fhir/CodeSystem/ifp-concepts|registration-reason"})).json()
    registration = found["entry"][0]["resource"]
    registration["effectiveDateTime"] = "2001"
    response = await client.put(f"/fhir/Observation/{registration['id']}", json=registration)
    assert response.status_code == 200, response.text
    response = await page_client.get("/report")
    assert response.status_code == 200
    assert response.text.count("<svg") == 2
