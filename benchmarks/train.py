"""Benchmark of Keras training through Zeitflow (stages.md §9.3) against plain Keras.

For ``dense`` and ``lstm`` at the reference size (n_in = n_out = 24 hourly steps, 8 input channels, 1 output,
6,000 training samples, 2 layers of 64 units, batch 32, 5 epochs, no validation so no early stopping), the
same arrays are trained once with ``zeitflow.models.build(spec).fit(X, Y)`` and once with ``model.fit`` of an
identical plain Keras model (same layers, zero-initialised output Dense, Adam/MSE with an RMSE metric, same
seed and shuffling). Per-epoch seconds come from an epoch-timing callback in both; the first epoch (tracing
and warm-up) is reported apart from the median of the later ones. Each pair runs ``--repeat`` times in
alternating order and the best run of each runner is shown, which damps the noise of a shared machine.
Identical final losses confirm that both trained the same network. Target: Zeitflow within 1.1x of plain
Keras per epoch. Usage: ``python benchmarks/train.py [--epochs N] [--units N] [--samples N] [--repeat N]``.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import numpy as np

import zeitflow.models as zm

N_IN, N_OUT, C_IN, LAYERS, BATCH, SEED = 24, 24, 8, 2, 32, 42


def _arrays(samples: int) -> tuple[np.ndarray, np.ndarray]:
    """Hourly weather-like channels (daily cycles with phase shifts plus AR(1) noise), MinMax-scaled and
    windowed: X (samples, 24, 8) of the last 24 h, Y (samples, 24, 1) of channel 0 over the next 24 h."""
    rng = np.random.default_rng(0)
    hours = samples + N_IN + N_OUT - 1
    t = np.arange(hours)
    noise = np.zeros((hours, C_IN))
    shocks = rng.normal(scale=0.3, size=(hours, C_IN))
    for i in range(1, hours):
        noise[i] = 0.9 * noise[i - 1] + shocks[i]
    phases = np.linspace(0, np.pi, C_IN)
    series = np.sin(2 * np.pi * t[:, None] / 24 + phases) + 0.3 * np.sin(2 * np.pi * t[:, None] / 8760) + noise
    series = (series - series.min(axis=0)) / (series.max(axis=0) - series.min(axis=0))
    windows = np.lib.stride_tricks.sliding_window_view(series, N_IN + N_OUT, axis=0)
    X = np.ascontiguousarray(windows[:samples, :, :N_IN].transpose(0, 2, 1))
    Y = np.ascontiguousarray(windows[:samples, :1, N_IN:].transpose(0, 2, 1))
    return X, Y


def _plain(kind: str, X: np.ndarray, Y: np.ndarray, units: int, epochs: int) -> tuple[list[float], float, float]:
    """Plain Keras: the same network, seeding and fit arguments. Returns epoch seconds, fit seconds, last loss."""
    import keras
    import tensorflow as tf

    seconds: list[float] = []

    class Timer(keras.callbacks.Callback):
        """Records the wall time of every epoch."""
        started = 0.0

        def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
            """Start the epoch's clock."""
            self.started = time.perf_counter()

        def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
            """Record the epoch's seconds."""
            seconds.append(time.perf_counter() - self.started)

    t0 = time.perf_counter()
    x32, y32 = X.astype(np.float32), Y.astype(np.float32)
    keras.utils.set_random_seed(SEED)
    tf.config.experimental.enable_op_determinism()
    if kind == "dense":
        body = [keras.layers.Flatten(), *(keras.layers.Dense(units, activation="relu") for _ in range(LAYERS))]
    else:
        body = [keras.layers.LSTM(units, activation="relu", return_sequences=i < LAYERS - 1) for i in range(LAYERS)]
    model = keras.Sequential([keras.Input(shape=(N_IN, C_IN)), *body,
                              keras.layers.Dense(N_OUT, kernel_initializer="zeros", bias_initializer="zeros"),
                              keras.layers.Reshape((N_OUT, 1))])
    model.compile(optimizer=keras.optimizers.Adam(learning_rate=0.001), loss="mse",
                  metrics=[keras.metrics.RootMeanSquaredError(name="rmse")])
    fitted = model.fit(x32, y32, epochs=epochs, batch_size=BATCH, shuffle=True, verbose=0, callbacks=[Timer()])
    return seconds, time.perf_counter() - t0, float(fitted.history["loss"][-1])


def _zeitflow(kind: str, X: np.ndarray, Y: np.ndarray, units: int, epochs: int) -> tuple[list[float], float, float]:
    """Zeitflow: ``build(spec).fit(X, Y)`` on the float64 arrays. Returns epoch seconds, fit seconds, last loss."""
    spec = {"kind": kind, "units": units, "layers": LAYERS, "epochs": epochs, "batch_size": BATCH,
            "activation": "relu", "learning_rate": 0.001, "seed": SEED}
    t0 = time.perf_counter()
    history = zm.build(spec).fit(X, Y)
    elapsed = time.perf_counter() - t0
    last = history.epochs[-1].loss
    return [r.seconds for r in history.epochs], elapsed, float("nan") if last is None else last


def _later(seconds: list[float]) -> float:
    """Median seconds of the epochs after the first (the first alone when only one ran)."""
    return float(np.median(seconds[1:])) if len(seconds) > 1 else seconds[0]


def main() -> None:
    """Train both runners on both kinds and print the table."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--units", type=int, default=64)
    parser.add_argument("--samples", type=int, default=6000)
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()
    X, Y = _arrays(args.samples)
    print(f"X={X.shape} Y={Y.shape} layers={LAYERS} units={args.units} batch={BATCH} epochs={args.epochs}")
    header = (f"{'kind':<6} {'runner':<9} {'epoch 1 s':>10} {'later s/epoch':>14} {'fit s':>8} "
              f"{'final loss':>12} {'ratio':>6}")
    print(header)
    print("-" * len(header))
    runners = {"keras": _plain, "zeitflow": _zeitflow}
    for kind in ("dense", "lstm"):
        best: dict[str, tuple[list[float], float, float]] = {}
        for rep in range(max(args.repeat, 1)):
            for name in ("keras", "zeitflow") if rep % 2 == 0 else ("zeitflow", "keras"):
                run = runners[name](kind, X, Y, args.units, args.epochs)
                if name not in best or _later(run[0]) < _later(best[name][0]):
                    best[name] = run
        ratio = _later(best["zeitflow"][0]) / _later(best["keras"][0])
        for name, (seconds, fit, loss) in best.items():
            shown = f"{ratio:>6.3f}" if name == "zeitflow" else ""
            print(f"{kind:<6} {name:<9} {seconds[0]:>10.3f} {_later(seconds):>14.3f} {fit:>8.2f} {loss:>12.6g} "
                  f"{shown:>6}")

if __name__ == "__main__":
    main()
