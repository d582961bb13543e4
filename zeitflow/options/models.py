"""Model specifications (stages.md §9.2): ``ModelSpec``, a union of one options model per kind,
discriminated by ``kind``.

Each kind accepts only its own hyper-parameters (another kind's field is ``UNKNOWN_PARAMETER``). The
predecessor's names are accepted as aliases: ``LAY`` → ``layers``, ``N`` → ``units``, ``EP`` → ``epochs``,
``ACTF`` → ``activation``, ``K`` → ``kernel_size``, ``KERNEL`` → ``svr_kernel``, ``C`` → ``c``, ``EPSILON`` →
``epsilon``, and the mode names ``Dense``, ``CNN``, ``LSTM``, ``AR LSTM``, ``SVR_dir``, ``SVR_MIMO``, ``LIN``.
``name`` tells two specs of one kind apart (default: the kind) and keys the model's outputs.
"""

from __future__ import annotations

from types import MappingProxyType
from typing import Annotated, Any, Final, Literal

from pydantic import BeforeValidator, Field, TypeAdapter, field_validator, model_validator

from zeitflow.options.base import Options, check_choice, check_range, param_error
from zeitflow.options.common import as_float, as_int, rename_aliases

__all__ = [
    "ACTIVATIONS", "BASELINE_KINDS", "KERAS_KINDS", "MODEL_KINDS", "SKLEARN_KINDS", "SVR_KERNELS", "ArLstmSpec",
    "CnnSpec", "DenseSpec", "LinearSpec", "LstmSpec", "ModelSpec", "PersistenceSpec", "SeasonalNaiveSpec",
    "SvrDirectSpec", "SvrMimoSpec", "parse_model_spec",
]

KERAS_KINDS: Final = ("dense", "cnn", "lstm", "ar_lstm")
SKLEARN_KINDS: Final = ("svr_direct", "svr_mimo", "linear")
BASELINE_KINDS: Final = ("persistence", "seasonal_naive")
MODEL_KINDS: Final = (*KERAS_KINDS, *SKLEARN_KINDS, *BASELINE_KINDS)
ACTIVATIONS: Final = ("relu", "sigmoid", "tanh", "linear", "softmax")
SVR_KERNELS: Final = ("poly", "rbf", "linear", "sigmoid")

_KIND_ALIASES: Final = MappingProxyType({
    "dense": "dense", "cnn": "cnn", "lstm": "lstm", "ar lstm": "ar_lstm", "ar_lstm": "ar_lstm",
    "ar-lstm": "ar_lstm", "svr_dir": "svr_direct", "svr_direct": "svr_direct", "svr_mimo": "svr_mimo",
    "lin": "linear", "linear": "linear", "persistence": "persistence", "seasonal_naive": "seasonal_naive",
})
_FIELD_ALIASES: Final = MappingProxyType({
    "LAY": "layers", "N": "units", "EP": "epochs", "ACTF": "activation", "K": "kernel_size", "KERNEL": "svr_kernel",
    "C": "c", "EPSILON": "epsilon", "MODE": "kind",
})
_NAME_CHARS: Final = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-")

_INT_BOUNDS: Final = MappingProxyType({
    "layers": (1, 16, "LAY"), "units": (1, 4096, "N"), "epochs": (1, 2000, "EP"), "kernel_size": (1, 4096, "K"),
    "batch_size": (1, 65_536, None), "patience": (0, 100, None), "seed": (0, 2**32 - 1, None),
})


class _Spec(Options):
    """Fields every kind has: its ``name`` and ``seed``."""

    name: str | None = None
    seed: int = 42

    @model_validator(mode="before")
    @classmethod
    def _aliases(cls, data: Any) -> Any:
        data = rename_aliases(cls.__name__, data, _FIELD_ALIASES, set(cls.model_fields))
        if isinstance(data, dict):
            data = {k: as_int(k, v) if k in _INT_BOUNDS else v for k, v in data.items()}
        return data

    @field_validator("name")
    @classmethod
    def _name(cls, value: str | None) -> str | None:
        if value is not None and (not value or len(value) > 64 or not set(value) <= _NAME_CHARS):
            raise param_error("INVALID_NAME", f"name={value!r} is not allowed: use 1-64 letters, digits, '_' or '-'")
        return value

    @model_validator(mode="after")
    def _bounds(self) -> _Spec:
        for field, (low, high, predecessor) in _INT_BOUNDS.items():
            if field in type(self).model_fields:
                check_range(field, getattr(self, field), low, high, predecessor=predecessor)
        return self

    @property
    def model_name(self) -> str:
        """The name that keys this model's outputs: ``name``, else the kind."""
        return self.name or self.kind  # type: ignore[attr-defined]


class _KerasSpec(_Spec):
    """Hyper-parameters shared by the Keras kinds (§9.2)."""

    layers: int = 3
    units: int = 512
    epochs: int = 20
    activation: str = "relu"
    batch_size: int = 32
    learning_rate: float = 0.001
    patience: int = 2

    @field_validator("activation", mode="before")
    @classmethod
    def _activation(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = value.strip().lower()
            check_choice("activation", value, ACTIVATIONS)
        return value

    @field_validator("learning_rate", mode="before")
    @classmethod
    def _learning_rate(cls, value: Any) -> Any:
        value = as_float("learning_rate", value)
        if isinstance(value, int | float) and not 0 < value <= 1:
            raise param_error("PARAM_OUT_OF_RANGE",
                              f"learning_rate={value!r} is out of range: allowed 0 < learning_rate <= 1")
        return value


class DenseSpec(_KerasSpec):
    """Flatten → ``layers`` × Dense → Dense(n_out·c_out) → Reshape."""

    kind: Literal["dense"] = "dense"


class CnnSpec(_KerasSpec):
    """``layers`` × Conv1D(units filters, ``kernel_size``) over time → Flatten → Dense → Reshape."""

    kind: Literal["cnn"] = "cnn"
    kernel_size: int = 3


class LstmSpec(_KerasSpec):
    """Stacked LSTM → Dense(n_out·c_out) → Reshape."""

    kind: Literal["lstm"] = "lstm"


class ArLstmSpec(_KerasSpec):
    """Autoregressive LSTM: warm-up over the inputs, then each prediction fed back."""

    kind: Literal["ar_lstm"] = "ar_lstm"


class _SvrSpec(_Spec):
    """Hyper-parameters of the SVR kinds (§9.2)."""

    svr_kernel: str = "poly"
    c: float = 1.0
    epsilon: float = 0.1

    @field_validator("svr_kernel", mode="before")
    @classmethod
    def _kernel(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = value.strip().lower()
            check_choice("svr_kernel", value, SVR_KERNELS)
        return value

    @field_validator("c", "epsilon", mode="before")
    @classmethod
    def _floats(cls, value: Any, info: Any) -> Any:
        return as_float(info.field_name, value)

    @model_validator(mode="after")
    def _svr_bounds(self) -> _SvrSpec:
        if not 0 < self.c <= 1e6:
            raise param_error("PARAM_OUT_OF_RANGE", f"c={self.c!r} is out of range: allowed 0 < c <= 1000000 "
                              "(predecessor: C; the library rejects 0)")
        check_range("epsilon", self.epsilon, 0, 1e6, predecessor="EPSILON")
        return self


class SvrDirectSpec(_SvrSpec):
    """One SVR pipeline per (output step, output channel)."""

    kind: Literal["svr_direct"] = "svr_direct"


class SvrMimoSpec(_SvrSpec):
    """One SVR pipeline per output channel, shared across steps (step position as a feature)."""

    kind: Literal["svr_mimo"] = "svr_mimo"


class LinearSpec(_Spec):
    """Multi-output ordinary least squares on the flattened window."""

    kind: Literal["linear"] = "linear"


class PersistenceSpec(_Spec):
    """Baseline: the last input value of the target channel, repeated."""

    kind: Literal["persistence"] = "persistence"


class SeasonalNaiveSpec(_Spec):
    """Baseline: the target's value ``season_hours`` before each output time."""

    kind: Literal["seasonal_naive"] = "seasonal_naive"
    season_hours: float = 24.0

    @field_validator("season_hours", mode="before")
    @classmethod
    def _season(cls, value: Any) -> Any:
        return as_float("season_hours", value)

    @model_validator(mode="after")
    def _season_range(self) -> SeasonalNaiveSpec:
        check_range("season_hours", self.season_hours, 1 / 60, 8760, low_text="1/60")
        return self


def _normalise_kind(data: Any) -> Any:
    """Map the predecessor's mode names onto kinds; an unknown kind is INVALID_CHOICE."""
    if not isinstance(data, dict):
        return data
    data = dict(data)
    if "MODE" in data and "kind" not in data:
        data["kind"] = data.pop("MODE")
    kind = data.get("kind")
    if kind is None:
        raise param_error("MISSING_PARAMETER", f"a model spec needs kind: one of {list(MODEL_KINDS)}")
    normal = _KIND_ALIASES.get(str(kind).strip().lower()) if isinstance(kind, str) else None
    if normal is None:
        raise param_error("INVALID_CHOICE", f"kind={kind!r} is not allowed: choose one of {list(MODEL_KINDS)}")
    data["kind"] = normal
    return data


_TaggedSpec = Annotated[
    DenseSpec | CnnSpec | LstmSpec | ArLstmSpec | SvrDirectSpec | SvrMimoSpec | LinearSpec | PersistenceSpec
    | SeasonalNaiveSpec,
    Field(discriminator="kind"),
]
ModelSpec = Annotated[_TaggedSpec, BeforeValidator(_normalise_kind)]

_ADAPTER: TypeAdapter[Any] = TypeAdapter(ModelSpec)


def parse_model_spec(data: Any) -> Any:
    """Validate one model spec (a dict, or a spec instance passed through)."""
    return _ADAPTER.validate_python(data)
