"""The fit's tangent: first-order answers to a moving target (how the daemon answers knobs)."""

import numpy as np
import pytest

from bridge.bands import BandSpec
from bridge.erb import FREQS_HZ
from bridge.fit import fit_curve, fit_tangent, score_settings
from test_fit import eight_band

LOG_F = np.log2(FREQS_HZ / 1000.0)
TARGET = 4.0 * np.tanh(-LOG_F) + 2.5 * np.exp(-0.5 * ((LOG_F - 1.5) / 0.6) ** 2)
DIRECTIONS = np.stack([
    -0.8 * LOG_F,  # a tilt
    3.0 * np.exp(-0.5 * ((LOG_F + 2.0) / 0.8) ** 2),  # a low bump
])


@pytest.fixture(scope="module")
def base():
    bands = eight_band()
    return bands, fit_curve(TARGET, bands)


def test_no_move_gives_back_the_fit(base):
    bands, fit = base
    tan = fit_tangent(fit, bands, DIRECTIONS)
    assert tan.rhs.shape[1] == 2
    for a, b in zip(tan.settings([0.0, 0.0]), fit.bands):
        assert a.type == b.type
        assert a.freq_hz == pytest.approx(b.freq_hz, rel=1e-9)
        assert a.gain_db == pytest.approx(b.gain_db, abs=1e-9)
        assert a.q == pytest.approx(b.q, rel=1e-9)


@pytest.mark.parametrize("theta", [(0.2, 0.0), (0.0, 0.3)])
def test_a_small_move_is_answered_as_well_as_a_warm_refit(base, theta):
    bands, fit = base
    tan = fit_tangent(fit, bands, DIRECTIONS)
    moved = TARGET + np.asarray(theta) @ DIRECTIONS
    answer = score_settings(moved, bands, tan.settings(theta))
    unchanged = score_settings(moved, bands, fit.bands)
    refit = fit_curve(moved, bands, previous=fit)
    assert unchanged.rms_error_db > 5 * answer.rms_error_db  # the answer follows the target
    assert answer.rms_error_db <= refit.rms_error_db + 0.05


def test_the_tangent_predicts_the_refits_change(base, monkeypatch):
    """Against a converged warm refit: the first-order answer is within 10% of the change in the
    fitted response, and the relative gap shrinks with the move (it is a derivative: Gauss-Newton
    curvature leaves a small first-order part, the polish after the knob rests removes it)."""
    import bridge.fit as fit_module
    monkeypatch.setattr(fit_module, "WARM_ITERS", 60)
    monkeypatch.setattr(fit_module, "WARM_RTOL", 1e-14)
    bands, fit = base
    tan = fit_tangent(fit, bands, DIRECTIONS)
    rel = []
    for s in (1.0, 0.3, 0.1):
        moved = TARGET + s * DIRECTIONS[0] - 0.5 * s * DIRECTIONS[1]
        ref = fit_curve(moved, bands, previous=fit)
        ans = score_settings(moved, bands, tan.settings([s, -0.5 * s]))
        change = np.max(np.abs(ref.predicted_db - fit.predicted_db))
        gap = np.max(np.abs(ans.predicted_db - ref.predicted_db))
        assert change > 0.3 * s
        rel.append(gap / change)
    assert max(rel) <= 0.1, rel
    assert rel[2] < 0.5 * rel[0], rel


def test_limits_and_fixed_parameters_hold():
    specs = [BandSpec("ls", ("low_shelf",), (20.0, 500.0), (-6.0, 6.0), (0.7071, 0.7071), fixed_q=0.7071),
             BandSpec("b1", ("bell",), (100.0, 8000.0), (-6.0, 6.0), (0.3, 4.0)),
             BandSpec("hs", ("high_shelf",), (2000.0, 20000.0), (-6.0, 6.0), (0.5, 1.0))]
    fit = fit_curve(TARGET, specs)
    tan = fit_tangent(fit, specs, DIRECTIONS)
    for theta in ([40.0, 0.0], [-40.0, 10.0], [0.0, -25.0]):
        for spec, s in zip(specs, tan.settings(theta)):
            if s.type == "off":
                continue
            assert spec.freq_hz[0] - 1e-6 <= s.freq_hz <= spec.freq_hz[1] + 1e-6
            assert spec.gain_db[0] - 1e-9 <= s.gain_db <= spec.gain_db[1] + 1e-9
            assert spec.q[0] - 1e-9 <= s.q <= spec.q[1] + 1e-9
            if spec.fixed_q is not None:
                assert s.q == pytest.approx(spec.fixed_q)
        # and inside the warm trust region: no band thrown across the spectrum
        for a, b in zip(tan.settings(theta), fit.bands):
            assert abs(np.log2(a.freq_hz / b.freq_hz)) <= 0.5 + 1e-9


def test_bad_input_is_refused(base):
    bands, fit = base
    with pytest.raises(ValueError):
        fit_tangent(fit, bands, np.full((1, 40), np.nan))
    with pytest.raises(ValueError):
        fit_tangent(fit, bands[:4], DIRECTIONS)


def _same_bands(a, b, tol=1e-9):
    return all(x.type == y.type and abs(np.log(x.freq_hz / y.freq_hz)) <= tol and abs(x.gain_db - y.gain_db) <= tol
               and abs(np.log(x.q / y.q)) <= tol for x, y in zip(a, b))


@pytest.mark.parametrize("which", ["eight-band", "limits", "reaper-reaeq"])
def test_one_knob_line_equals_the_full_solve(base, which):
    """settings_along(j, d) is settings(d e_j) wherever it answers, it answers small moves, and
    past its reach it says so (None) rather than giving a different answer."""
    if which == "eight-band":
        bands, fit = base
    elif which == "limits":  # a shelf Q pinned at its limit and tight gain ranges: the active set works
        bands = [BandSpec("ls", ("low_shelf",), (20.0, 500.0), (-6.0, 6.0), (0.7071, 0.7071), fixed_q=0.7071),
                 BandSpec("b1", ("bell",), (100.0, 8000.0), (-3.0, 3.0), (0.3, 4.0)),
                 BandSpec("hs", ("high_shelf",), (2000.0, 20000.0), (-6.0, 6.0), (0.5, 1.0))]
        fit = fit_curve(TARGET, bands)
    else:
        from bridge.mapping import load_mapping
        bands = load_mapping("reaper-reaeq")
        fit = fit_curve(TARGET, bands)
    tan = fit_tangent(fit, bands, DIRECTIONS)
    if which != "eight-band":  # the first stretches in idle time, as the daemon does (else on first use)
        for j in range(len(DIRECTIONS)):
            assert tan.extend_line(j, True, 0.0) and tan.extend_line(j, False, 0.0)
            assert not tan.extend_line(j, True, 0.0)  # up to no move: nothing more to solve
    moves = np.concatenate([np.linspace(-3.0, 3.0, 121), [0.0, 1e-6, -1e-6]])

    def check() -> int:
        answered = 0
        for j in range(len(DIRECTIONS)):
            for d in moves:
                theta = np.zeros(len(DIRECTIONS))
                theta[j] = d
                line = tan.settings_along(j, float(d))
                if line is not None:
                    answered += 1
                    assert _same_bands(line, tan.settings(theta)), (which, j, d)
            assert tan.settings_along(j, 1e-4) is not None
            assert tan.settings_along(j, -1e-4) is not None
        return answered

    first = check()
    assert first > 40
    # later stretches, one per call, as the daemon solves them in idle time
    steps = 0
    for j in range(len(DIRECTIONS)):
        for positive in (True, False):
            while tan.extend_line(j, positive, 3.0):
                steps += 1
    extended = check()
    if which == "limits":
        assert first < 2 * len(moves)  # the tight gain limit is reached inside +-3 units ...
        assert steps > 0 and extended > first  # ... and the stretches past it are answered too
    with pytest.raises(ValueError):
        tan.settings_along(len(DIRECTIONS), 0.1)


def test_a_stopped_stretch_is_given_up_unchanged_and_solved_again_later():
    """extend_line(stop=...) asks after every solve; a stop leaves the line as it was (and says
    there is more to do), so the same calls without stops end with the same stretches."""
    bands = [BandSpec("ls", ("low_shelf",), (20.0, 500.0), (-6.0, 6.0), (0.7071, 0.7071), fixed_q=0.7071),
             BandSpec("b1", ("bell",), (100.0, 8000.0), (-3.0, 3.0), (0.3, 4.0)),
             BandSpec("hs", ("high_shelf",), (2000.0, 20000.0), (-6.0, 6.0), (0.5, 1.0))]
    fit = fit_curve(TARGET, bands)
    calm, stopped = fit_tangent(fit, bands, DIRECTIONS), fit_tangent(fit, bands, DIRECTIONS)
    while calm.extend_line(0, True, 3.0):
        pass
    asked = []

    def input_during_solves_2_and_6() -> bool:  # two inputs arrive, each while a solve runs
        asked.append(1)
        return len(asked) in (2, 6)

    given_up = 0
    while True:
        before = list(stopped._lines.get((0, True), []))
        n_asked = len(asked)
        more = stopped.extend_line(0, True, 3.0, stop=input_during_solves_2_and_6)
        if {2, 6} & set(range(n_asked + 1, len(asked) + 1)):
            given_up += 1
            assert more and stopped._lines.get((0, True), []) == before  # nothing half-solved kept
        if not more:
            break
    assert given_up == 2 and len(asked) > 6
    assert len(calm._lines[(0, True)]) > 1  # the line has later stretches to solve (the test means something)
    assert stopped._lines[(0, True)] == calm._lines[(0, True)]
    assert stopped.extend_line(1, True, 3.0, stop=lambda: True)  # stopped at its first solve: still to do
    assert (1, True) not in stopped._lines
