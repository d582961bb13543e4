"""Result plots (stages.md §11.2) and ``ReportOptions`` (§11.4): sample choice, the plotted data, PNG output and
safe file names."""

from __future__ import annotations

import io
import math
import re
import struct

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from matplotlib.lines import Line2D
from pydantic import ValidationError

from zeitflow.errors import EvaluationError
from zeitflow.evaluation import plots
from zeitflow.models.base import EpochRecord, TrainingHistory
from zeitflow.options.report import ReportOptions
from zeitflow.stages.scaling import ColumnScaler, ScalerSet

N_TEST, N_IN, N_OUT = 30, 6, 4
INPUTS = ["temp", "hum", "D_sin"]
OUTPUTS = ["temp", "wind speed (m/s)"]


def _png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def _codes(exc: ValidationError) -> list[str]:
    return [e["type"] for e in exc.errors()]


@pytest.fixture(scope="module")
def data() -> dict:
    rng = np.random.default_rng(7)
    refs = pd.date_range("2024-05-01", periods=N_TEST, freq="1h", tz="UTC")
    X = rng.normal(10, 3, (N_TEST, N_IN, len(INPUTS)))  # noqa: N806
    Y = rng.normal(5, 2, (N_TEST, N_OUT, len(OUTPUTS)))  # noqa: N806
    return {
        "reference_times": refs, "X": X, "Y_true": Y, "Y_pred": Y + rng.normal(0, 0.5, Y.shape),
        "input_features": INPUTS, "output_features": OUTPUTS,
        "input_offsets_minutes": {"temp": np.arange(-N_IN + 1, 1) * 15.0, "hum": np.arange(-N_IN + 1, 1) * 30.0},
        "output_offsets_minutes": {"temp": np.arange(1, N_OUT + 1) * 15.0,
                                   "wind speed (m/s)": np.arange(0, N_OUT) * 60.0 + 60.0},
    }


def _scalers() -> ScalerSet:
    def col(role: str, name: str, lo: float, hi: float) -> ColumnScaler:
        return ColumnScaler(key=f"{role}:{name}", role=role, name=name, scaled=True, data_min=lo, data_max=hi,
                            range_min=0.0, range_max=1.0, n_fit=10)
    return ScalerSet(scaler_fit="train",
                     inputs=(col("input", "temp", 0, 20), col("input", "hum", 0, 40), col("input", "D_sin", -1, 1)),
                     outputs=(col("output", "temp", 0, 20), col("output", "wind speed (m/s)", -5, 15)))


def _lines(ax, prefix: str) -> list[Line2D]:
    return [line for line in ax.get_lines() if str(line.get_label()).startswith(prefix)]


def _line(ax, label: str) -> Line2D:
    found = [line for line in ax.get_lines() if line.get_label() == label]
    assert len(found) == 1, (label, [line.get_label() for line in ax.get_lines()])
    return found[0]


# ------------------------------------------------------------------------------------------------
# select_test_samples
# ------------------------------------------------------------------------------------------------


def test_select_matches_default_rng_sorted_and_distinct() -> None:
    chosen = plots.select_test_samples(100, 17, 42)
    expected = np.sort(np.random.default_rng(42).choice(100, 17, replace=False))
    np.testing.assert_array_equal(chosen, expected)
    assert chosen.dtype == np.int64
    assert np.all(np.diff(chosen) > 0)
    np.testing.assert_array_equal(chosen, plots.select_test_samples(100, 17, 42))
    assert not np.array_equal(chosen, plots.select_test_samples(100, 17, 43))


@given(n_test=st.integers(0, 300), num=st.integers(1, 1000), seed=st.integers(0, 2**32 - 1))
@settings(max_examples=60, deadline=None)
def test_select_capped_distinct_in_range(n_test: int, num: int, seed: int) -> None:
    chosen = plots.select_test_samples(n_test, num, seed)
    assert chosen.size == min(n_test, num)
    assert np.unique(chosen).size == chosen.size
    assert np.all((chosen >= 0) & (chosen < max(n_test, 1)))
    assert np.all(np.diff(chosen) > 0)


def test_select_all_when_fewer_test_samples() -> None:
    np.testing.assert_array_equal(plots.select_test_samples(5, 17, 1), np.arange(5))


def test_select_rejects_negative() -> None:
    with pytest.raises(ValueError):
        plots.select_test_samples(-1, 3, 0)


# ------------------------------------------------------------------------------------------------
# test-sample plot
# ------------------------------------------------------------------------------------------------


def test_samples_png_size(data: dict) -> None:
    png = plots.test_samples_plot("lstm", options=ReportOptions(), **data)
    assert _png_size(png) == (2000, 1300)


def test_samples_figure_data(data: dict) -> None:
    options = ReportOptions(num_samples=7, seed=3)
    fig = plots._test_samples_figure("lstm", options=options, **data)
    chosen = plots.select_test_samples(N_TEST, 7, 3)
    axes = fig.get_axes()
    assert len(axes) == 7
    assert tuple(fig.get_size_inches()) == (20.0, 13.0)
    assert axes[0].get_gridspec().ncols == math.ceil(math.sqrt(7))
    refs = data["reference_times"]
    for ax, sample in zip(axes, chosen, strict=True):
        ref = refs[sample]
        assert ax.get_title() == f"UTC: {ref:%Y-%m-%d %H:%M}"
        # history: default inputs are those with window offsets (no calendar feature)
        assert [line.get_label() for line in _lines(ax, "input: ")] == ["input: temp", "input: hum"]
        hum = _line(ax, "input: hum")
        np.testing.assert_array_equal(hum.get_ydata(), data["X"][sample, :, 1])
        expected_x = (ref + pd.to_timedelta(data["input_offsets_minutes"]["hum"], unit="min")).tz_localize(None)
        np.testing.assert_array_equal(hum.get_xdata(), expected_x.to_numpy("datetime64[ns]"))
        for j, name in enumerate(OUTPUTS):
            truth, forecast = _line(ax, f"truth: {name}"), _line(ax, f"forecast: {name}")
            np.testing.assert_array_equal(truth.get_ydata(), data["Y_true"][sample, :, j])
            np.testing.assert_array_equal(forecast.get_ydata(), data["Y_pred"][sample, :, j])
            times = (ref + pd.to_timedelta(data["output_offsets_minutes"][name], unit="min")).tz_localize(None)
            np.testing.assert_array_equal(truth.get_xdata(), times.to_numpy("datetime64[ns]"))
            assert truth.get_marker() == "o"
            assert forecast.get_marker() == "x"
            assert forecast.get_linestyle() == "--"
            assert truth.get_linestyle() == "-"
        vline = _line(ax, "reference")
        assert vline.get_linestyle() == "--"
        assert list(vline.get_xdata()) == [np.datetime64(ref.tz_localize(None).as_unit("ns").to_datetime64())] * 2


def test_samples_chronological_titles(data: dict) -> None:
    fig = plots._test_samples_figure("m", options=ReportOptions(num_samples=12), **data)
    stamps = [pd.Timestamp(ax.get_title().removeprefix("UTC: ")) for ax in fig.get_axes()]
    assert stamps == sorted(stamps)
    assert len(set(stamps)) == 12


def test_samples_capped_at_n_test(data: dict) -> None:
    small = {**data, "reference_times": data["reference_times"][:3], "X": data["X"][:3],
             "Y_true": data["Y_true"][:3], "Y_pred": data["Y_pred"][:3]}
    fig = plots._test_samples_figure("m", options=ReportOptions(num_samples=17), **small)
    assert len(fig.get_axes()) == 3
    assert fig.get_axes()[0].get_gridspec().ncols == 2


def test_samples_step_axis(data: dict) -> None:
    fig = plots._test_samples_figure("m", options=ReportOptions(x_axis="step", num_samples=2), **data)
    ax = fig.get_axes()[0]
    np.testing.assert_array_equal(_line(ax, "input: temp").get_xdata(), np.arange(-N_IN + 1, 1))
    np.testing.assert_array_equal(_line(ax, "truth: temp").get_xdata(), np.arange(1, N_OUT + 1))
    assert list(_line(ax, "reference").get_xdata()) == [0.0, 0.0]
    assert ax.get_xlabel().startswith("step")


def test_samples_scaled_units(data: dict) -> None:
    scalers = _scalers()
    options = ReportOptions(y_units="skaliert", num_samples=4)
    fig = plots._test_samples_figure("m", options=options, scalers=scalers, **data)
    chosen = plots.select_test_samples(N_TEST, 4, 42)
    ax = fig.get_axes()[1]
    sample = chosen[1]
    np.testing.assert_allclose(_line(ax, "input: hum").get_ydata(), data["X"][sample, :, 1] / 40.0)
    np.testing.assert_allclose(_line(ax, "truth: wind speed (m/s)").get_ydata(),
                               (data["Y_true"][sample, :, 1] + 5.0) / 20.0)
    np.testing.assert_allclose(_line(ax, "forecast: temp").get_ydata(), data["Y_pred"][sample, :, 0] / 20.0)
    assert "scaled" in fig.get_axes()[0].get_ylabel()
    with pytest.raises(ValueError, match="scalers"):
        plots._test_samples_figure("m", options=options, **data)


def test_samples_channel_filter_and_shared_axis(data: dict) -> None:
    options = ReportOptions(input_channels=["hum"], output_channels=["wind speed (m/s)"], shared_axis=True,
                            num_samples=4)
    fig = plots._test_samples_figure("m", options=options, **data)
    axes = fig.get_axes()
    labels = [line.get_label() for line in axes[0].get_lines()]
    assert labels == ["input: hum", "truth: wind speed (m/s)", "forecast: wind speed (m/s)", "reference"]
    assert axes[0].get_shared_y_axes().joined(axes[0], axes[3])
    separate = plots._test_samples_figure("m", options=ReportOptions(num_samples=4), **data).get_axes()
    assert not separate[0].get_shared_y_axes().joined(separate[0], separate[3])


def test_samples_unknown_channel(data: dict) -> None:
    with pytest.raises(EvaluationError) as err:
        plots._test_samples_figure("m", options=ReportOptions(output_channels=["nope"]), **data)
    assert err.value.code == "COLUMN_NOT_FOUND"
    with pytest.raises(EvaluationError) as err:
        plots._test_samples_figure("m", options=ReportOptions(input_channels=["D_sin"]), **data)
    assert err.value.code == "COLUMN_NOT_FOUND"


def test_samples_shape_errors(data: dict) -> None:
    with pytest.raises(EvaluationError) as err:
        plots._test_samples_figure("m", options=ReportOptions(), **{**data, "Y_pred": data["Y_pred"][:, :2]})
    assert err.value.code == "SHAPE_MISMATCH"
    empty = {**data, "reference_times": data["reference_times"][:0], "X": data["X"][:0],
             "Y_true": data["Y_true"][:0], "Y_pred": data["Y_pred"][:0]}
    with pytest.raises(EvaluationError) as err:
        plots._test_samples_figure("m", options=ReportOptions(), **empty)
    assert err.value.code == "NO_TEST_SAMPLES"


def test_samples_deterministic_bytes(data: dict) -> None:
    options = ReportOptions(num_samples=3)
    assert plots.test_samples_plot("m", options=options, **data) == plots.test_samples_plot(
        "m", options=options, **data)


def test_samples_plot_is_not_a_pytest_test() -> None:
    assert plots.test_samples_plot.__test__ is False


# ------------------------------------------------------------------------------------------------
# metric vs horizon
# ------------------------------------------------------------------------------------------------


def _per_step() -> pd.DataFrame:
    rows = []
    for m, scale in (("lstm", 1.0), ("persistence", 2.0)):
        for channel in ("temp", "wind"):
            for n_avg in (1, 2):
                for b in range(N_OUT // n_avg):
                    rows.append({"model": m, "channel": channel, "n_avg": n_avg, "step": b,
                                 "lead_start_minutes": 15.0 * (b * n_avg + 1),
                                 "lead_end_minutes": 15.0 * ((b + 1) * n_avg),
                                 "mae": scale * (b + 1) + n_avg * 100, "rmse": scale * (b + 2) + n_avg * 100})
    return pd.DataFrame(rows).iloc[::-1].reset_index(drop=True)  # unsorted on purpose


def test_metric_vs_horizon_lines() -> None:
    fig = plots._metric_vs_horizon_figure(_per_step(), "temp")
    ax_mae, ax_rmse = fig.get_axes()
    assert [line.get_label() for line in ax_mae.get_lines()] == ["persistence", "lstm"]
    for ax, metric in ((ax_mae, "mae"), (ax_rmse, "rmse")):
        lstm = _line(ax, "lstm")
        np.testing.assert_array_equal(lstm.get_xdata(), [15.0, 30.0, 45.0, 60.0])
        expected = [1.0 + 100, 2.0 + 100, 3.0 + 100, 4.0 + 100] if metric == "mae" else [102.0, 103, 104, 105]
        np.testing.assert_array_equal(lstm.get_ydata(), expected)
        assert _line(ax, "persistence").get_linestyle() == "--"
        assert lstm.get_linestyle() == "-"
    assert "MAE" in ax_mae.get_ylabel() and "RMSE" in ax_rmse.get_ylabel()
    assert "minutes" in ax_rmse.get_xlabel()


def test_metric_vs_horizon_png_and_unknown_channel() -> None:
    png = plots.metric_vs_horizon_plot(_per_step(), "wind")
    assert png.startswith(b"\x89PNG")
    assert _png_size(png) == (1000, 750)
    with pytest.raises(EvaluationError) as err:
        plots.metric_vs_horizon_plot(_per_step(), "nope")
    assert err.value.code == "COLUMN_NOT_FOUND"


# ------------------------------------------------------------------------------------------------
# loss curves
# ------------------------------------------------------------------------------------------------


def _history(val: bool) -> TrainingHistory:
    epochs = [EpochRecord(epoch=e, loss=1.0 / e, val_loss=(1.0 / e + abs(e - 4) * 0.1) if val else None,
                          seconds=0.5) for e in range(1, 9)]
    return TrainingHistory(epochs=epochs, best_epoch=4, epochs_run=8)


def test_loss_plot_marks_best_epoch() -> None:
    history = _history(val=True)
    fig = plots._loss_figure("lstm", history)
    ax = fig.get_axes()[0]
    np.testing.assert_array_equal(_line(ax, "loss").get_ydata(), [1.0 / e for e in range(1, 9)])
    np.testing.assert_allclose(_line(ax, "val_loss").get_xdata(), np.arange(1, 9))
    best = _line(ax, "best epoch 4 (restored)")
    assert list(best.get_xdata()) == [4] and list(best.get_ydata()) == [0.25]
    vertical = [line for line in ax.get_lines() if list(line.get_xdata()) == [4, 4]]
    assert len(vertical) == 1
    assert plots.loss_plot("lstm", history).startswith(b"\x89PNG")


def test_loss_plot_without_val_loss_and_from_dict() -> None:
    history = _history(val=False).model_dump(mode="json")
    fig = plots._loss_figure("mlp", history)
    ax = fig.get_axes()[0]
    labels = [line.get_label() for line in ax.get_lines()]
    assert "val_loss" not in labels and "loss" in labels
    assert list(_line(ax, "best epoch 4 (restored)").get_ydata()) == [0.25]
    assert _png_size(plots.loss_plot("mlp", history)) == (800, 500)


def test_loss_plot_without_any_loss() -> None:
    history = TrainingHistory(epochs=[EpochRecord(epoch=1, loss=None, seconds=0.0)], best_epoch=1, epochs_run=1)
    assert plots.loss_plot("persistence", history).startswith(b"\x89PNG")
    assert plots.loss_plot("empty", TrainingHistory()).startswith(b"\x89PNG")


# ------------------------------------------------------------------------------------------------
# plot_name
# ------------------------------------------------------------------------------------------------

_SAFE_NAME = re.compile(r"[A-Za-z0-9_.-]+\.png")


def test_plot_name_examples() -> None:
    assert plots.plot_name("loss", "lstm_2") == "loss_lstm_2.png"
    name = plots.plot_name("metric_vs_horizon", "temperature (C)")
    assert name.startswith("metric_vs_horizon_temperature__C___") and _SAFE_NAME.fullmatch(name)
    assert plots.plot_name("p", "a/b") != plots.plot_name("p", "a_b")
    assert plots.plot_name("p", "a/b") != plots.plot_name("p", "a:b")
    assert len(plots.plot_name("p", "x" * 1000)) < 140
    with pytest.raises(ValueError):
        plots.plot_name("bad/prefix", "x")


@given(a=st.text(max_size=40), b=st.text(max_size=40))
@settings(max_examples=300, deadline=None)
def test_plot_name_safe_and_collision_free(a: str, b: str) -> None:
    name_a, name_b = plots.plot_name("test_samples", a), plots.plot_name("test_samples", b)
    assert _SAFE_NAME.fullmatch(name_a)
    assert (name_a == name_b) == (a == b)


@given(a=st.text(alphabet="ab_/ -", max_size=8), b=st.text(alphabet="ab_/ -", max_size=8))
@settings(max_examples=300, deadline=None)
def test_plot_name_collision_free_small_alphabet(a: str, b: str) -> None:
    assert (plots.plot_name("p", a) == plots.plot_name("p", b)) == (a == b)


def test_plot_name_hash_suffix_lookalike() -> None:
    tricky = "a/b"
    produced = plots.plot_name("p", tricky).removeprefix("p_").removesuffix(".png")
    assert plots.plot_name("p", produced) != plots.plot_name("p", tricky)


# ------------------------------------------------------------------------------------------------
# ReportOptions
# ------------------------------------------------------------------------------------------------


def test_report_options_defaults() -> None:
    options = ReportOptions()
    assert options.model_dump() == {
        "keep_dataset": True, "num_samples": 17, "x_axis": "utc", "y_units": "original", "shared_axis": False,
        "input_channels": None, "output_channels": None, "forecast_models": None, "seed": 42,
    }
    assert ReportOptions(num_samples=None, seed=None, x_axis=None).parameters_hash() == options.parameters_hash()


def test_report_options_aliases() -> None:
    assert ReportOptions(y_units="skaliert").y_units == "scaled"
    assert ReportOptions(y_units="skaliert").parameters_hash() == ReportOptions(y_units="scaled").parameters_hash()
    assert ReportOptions(shared_axis="gemeinsame Achse").shared_axis is True
    assert ReportOptions(shared_axis="separate Achsen").shared_axis is False
    assert ReportOptions(shared_axis="ja").shared_axis is True
    assert ReportOptions(keep_dataset="nein").keep_dataset is False
    assert ReportOptions(num_samples=5.0).num_samples == 5


@pytest.mark.parametrize(("kwargs", "code"), [
    ({"num_samples": 0}, "PARAM_OUT_OF_RANGE"),
    ({"num_samples": 1001}, "PARAM_OUT_OF_RANGE"),
    ({"seed": -1}, "PARAM_OUT_OF_RANGE"),
    ({"num_samples": 2.5}, "PARAM_NOT_INTEGER"),
    ({"num_samples": True}, "PARAM_NOT_INTEGER"),
    ({"x_axis": "time"}, "INVALID_CHOICE"),
    ({"x_axis": 3}, "INVALID_CHOICE"),
    ({"y_units": "percent"}, "INVALID_CHOICE"),
    ({"samples": 3}, "UNKNOWN_PARAMETER"),
    ({"input_channels": []}, "MISSING_PARAMETER"),
    ({"output_channels": ["a", "a"]}, "PARAM_COMPARISON_FAILED"),
])
def test_report_options_errors(kwargs: dict, code: str) -> None:
    with pytest.raises(ValidationError) as err:
        ReportOptions(**kwargs)
    assert code in _codes(err.value)


def test_report_options_bounds_and_frozen() -> None:
    assert ReportOptions(num_samples=1).num_samples == 1
    assert ReportOptions(num_samples=1000).num_samples == 1000
    options = ReportOptions(forecast_models=["lstm"])
    assert options.forecast_models == ["lstm"]
    with pytest.raises(ValidationError):
        options.seed = 1  # type: ignore[misc]


def test_png_streams_are_complete(data: dict) -> None:
    from matplotlib.image import imread

    image = imread(io.BytesIO(plots.test_samples_plot("m", options=ReportOptions(num_samples=2), **data)))
    assert image.shape[:2] == (1300, 2000)
