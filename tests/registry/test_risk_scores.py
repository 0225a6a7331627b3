"""Risk scores against values computed by hand from the data contract's formulas."""

from __future__ import annotations

from datetime import date

import pytest

from fhir_server.registry.risk_scores import age_in_years, all_scores, elts, eutos, hasford, sokal

# age 60, spleen 10 cm, platelets 700, blasts 5 %, eosinophils 2 %, basophils 4 %
CASE = {"age": 60, "spleen": 10, "platelets": 700, "blasts": 5, "eosinophils": 2, "basophils": 4}


def test_sokal_hand_computed() -> None:
    # 0.0116*16.6 + 0.0345*2.49 + 0.188*(1-0.563) + 0.0887*2.9 = 0.617851; exp -> 1.854937
    result = sokal(CASE)
    assert result.value == pytest.approx(1.854937, abs=1e-6)
    assert result.group == "high"


def test_sokal_groups() -> None:
    low = {"age": 30, "spleen": 0, "platelets": 300, "blasts": 1}
    # -0.15544 - 0.259095 + 0.188*(0.183673-0.563) - 0.09757 = -0.583418 -> exp 0.557988
    assert sokal(low).group == "low"
    assert sokal(low).value == pytest.approx(0.557988, abs=1e-5)
    # age 75: exp(-0.583418 + 0.0116*45) = exp(-0.061418) = 0.940430
    assert sokal({**low, "age": 75}).value == pytest.approx(0.940430, abs=1e-5)
    assert sokal({**low, "age": 75}).group == "intermediate"



def test_hasford_hand_computed() -> None:
    # 1000*(0.6666 + 0.42 + 0.292 + 0.0826 + 0.2039 + 0) = 1665.1
    result = hasford(CASE)
    assert result.value == pytest.approx(1665.1)
    assert result.group == "high"


def test_hasford_780_is_low() -> None:
    # 1000*(0.6666 + 0.042*2.7) = 780 exactly
    assert hasford({**CASE, "spleen": 2.7, "blasts": 0, "eosinophils": 0, "basophils": 0,
                    "platelets": 100, "age": 50}).group == "low"


def test_hasford_just_above_780_is_intermediate() -> None:
    result = hasford({**CASE, "spleen": 2.71, "blasts": 0, "eosinophils": 0, "basophils": 0,
                      "platelets": 100, "age": 50})
    assert result.value == pytest.approx(780.42)
    assert result.group == "intermediate"


def test_hasford_1480_is_intermediate() -> None:
    # 1000*(0.6666 + 0.0420*17.4 + 0.0413*2) = 1000*(0.6666 + 0.7308 + 0.0826) = 1480 exactly
    case = {"age": 50, "spleen": 17.4, "platelets": 100, "blasts": 0, "eosinophils": 2, "basophils": 0}
    assert hasford(case).value == 1480
    assert hasford(case).group == "intermediate"
    assert hasford({**case, "spleen": 17.41}).group == "high"  # 1480.42


def test_hasford_platelet_and_age_thresholds() -> None:
    base = {"age": 49, "spleen": 0, "platelets": 1499, "blasts": 0, "eosinophils": 0, "basophils": 2.9}
    assert hasford(base).value == 0
    assert hasford({**base, "age": 50}).value == pytest.approx(666.6)
    assert hasford({**base, "platelets": 1500}).value == pytest.approx(1095.6)
    assert hasford({**base, "basophils": 3}).value == pytest.approx(203.9)


def test_eutos_hand_computed() -> None:
    result = eutos(CASE)  # 7*4 + 4*10 = 68
    assert result.value == 68
    assert result.group == "low"


def test_eutos_87_is_low_and_above_is_high() -> None:
    assert eutos({"basophils": 5, "spleen": 13}).group == "low"  # 35 + 52 = 87
    assert eutos({"basophils": 5, "spleen": 13.25}).group == "high"  # 88


def test_elts_hand_computed() -> None:
    # 0.0025*6^3 + 0.0615*10 + 0.1052*5 + 0.4104/sqrt(0.7) = 0.54 + 0.615 + 0.526 + 0.490522 = 2.171522
    result = elts(CASE)
    assert result.value == pytest.approx(2.171522, abs=1e-6)
    assert result.group == "intermediate"


def test_elts_groups() -> None:
    # 0.0025*27 + 0 + 0 + 0.4104/sqrt(0.25) = 0.0675 + 0.8208 = 0.8883
    assert elts({"age": 30, "spleen": 0, "blasts": 0, "platelets": 250}).group == "low"
    assert elts({**CASE, "spleen": 20}).group == "high"  # 2.171522 + 0.615


def test_missing_input_is_an_error() -> None:
    with pytest.raises(ValueError, match="spleen"):
        sokal({"age": 50, "platelets": 300, "blasts": 1})


def test_all_scores_skips_scores_with_missing_inputs() -> None:
    scores = all_scores({"basophils": 1, "spleen": 2})
    assert list(scores) == ["eutos"]
    assert set(all_scores(CASE)) == {"sokal", "hasford", "eutos", "elts"}


def test_age_in_years_counts_completed_years() -> None:
    assert age_in_years(date(1956, 3, 1), date(2007, 2, 28)) == 50
    assert age_in_years(date(1956, 3, 1), date(2007, 3, 1)) == 51
