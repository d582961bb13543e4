"""Options of the calendar features (stages.md §6.2): one ``ComponentOptions`` per component, year (Y), month (M),
week (W), day (D) and holiday (H), and the global ``TimeFeatureOptions``.

Each component is its own subclass (``YearOptions`` … ``HolidayOptions``) so that a partial component dict gets that
component's defaults (e.g. ``{"day": {"enabled": true}}`` keeps ``local_time=True``, ``{"holiday": ...}`` keeps
``horizon_start_hours=-100``).

Predecessor spellings (§0.6, §14) are accepted and normalised, so ``parameters_hash`` does not depend on them:
component keys ``jahr``/``monat``/``woche``/``tag``/``feiertag`` (a bare boolean or ``'ja'``/``'nein'`` there is
short for ``{"enabled": ...}``; inside a component its own predecessor name is an alias of ``enabled``), the field
names ``datenform``, ``zeithorizontStart``/``zeithorizont_start``/``TH_STRT``, ``zeithorizontEnd``/
``zeithorizont_end``/``TH_END``, ``detaillierteBerechnung``/``LT``, ``skalierung``, ``skalierungMin``/``Max``,
``zeitzone``/``TZ`` and ``land``, the mode values ``Zeithorizont`` → ``horizon`` and ``Aktuelle Zeit`` →
``current`` (exact spelling only), and ``'ja'``/``'nein'`` for booleans. Giving a name and its predecessor spelling
together raises ``MUTUALLY_EXCLUSIVE``. ``None`` means the documented default (§0.6).

Hours are compared on integer nanoseconds (§0.5). ``holiday_country`` is an ISO alpha-2 code supported by the pinned
``holidays`` package (case-insensitive; the package's aliases such as ``AUT`` are stored as the alpha-2 code);
``holiday_subdivision`` is one of that country's subdivision codes or aliases (e.g. ``Bayern``), stored as its code.
"""

from __future__ import annotations

import math
from types import MappingProxyType
from typing import Any, ClassVar, Final
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import holidays
from pydantic import Field, ValidationInfo, field_validator, model_validator

from zeitflow.options.base import Options, param_error
from zeitflow.options.common import as_bool, as_float, rename_aliases

__all__ = [
    "COMPONENTS", "MODES", "MODE_ALIASES", "ComponentOptions", "DayOptions", "HolidayOptions", "MonthOptions",
    "TimeFeatureOptions", "WeekOptions", "YearOptions", "hours_to_ns",
]

MODES: Final = ("horizon", "current")
MODE_ALIASES: Final = MappingProxyType({"Zeithorizont": "horizon", "Aktuelle Zeit": "current"})
#: Component field names in column order (Y, M, W, D, H).
COMPONENTS: Final = ("year", "month", "week", "day", "holiday")
HORIZON_LIMIT_HOURS: Final = 8760
NS_PER_HOUR: Final = 3_600_000_000_000
_HORIZON_LIMIT_NS: Final = HORIZON_LIMIT_HOURS * NS_PER_HOUR
# Zone files that ZoneInfo can open but that are no IANA zones (``localtime`` is the machine's own zone).
_NOT_IANA: Final = frozenset({"localtime", "posixrules"})
_NOT_IANA_PREFIXES: Final = ("posix/", "right/")


_COMPONENT_NAMES: Final = MappingProxyType({
    "datenform": "mode",
    "zeithorizontStart": "horizon_start_hours", "zeithorizont_start": "horizon_start_hours",
    "TH_STRT": "horizon_start_hours",
    "zeithorizontEnd": "horizon_end_hours", "zeithorizont_end": "horizon_end_hours", "TH_END": "horizon_end_hours",
    "detaillierteBerechnung": "local_time", "LT": "local_time",
    "skalierung": "scale", "skalierungMin": "range_min", "skalierungMax": "range_max",
})
_GLOBAL_NAMES: Final = MappingProxyType({
    "jahr": "year", "Jahr": "year", "monat": "month", "Monat": "month", "woche": "week", "Woche": "week",
    "tag": "day", "Tag": "day", "feiertag": "holiday", "Feiertag": "holiday",
    "zeitzone": "timezone", "Zeitzone": "timezone", "TZ": "timezone", "land": "holiday_country",
})
_PREDECESSOR: Final = MappingProxyType({
    "mode": "datenform", "horizon_start_hours": "zeithorizontStart", "horizon_end_hours": "zeithorizontEnd",
    "local_time": "detaillierteBerechnung", "scale": "skalierung", "range_min": "skalierungMin",
    "range_max": "skalierungMax", "timezone": "zeitzone", "holiday_country": "land",
})


def hours_to_ns(hours: float) -> int:
    """``round(hours · 3.6 · 10¹²)`` (§0.5)."""
    return round(hours * NS_PER_HOUR)


def _suffix(name: str) -> str:
    return f" (predecessor: {_PREDECESSOR[name]})" if name in _PREDECESSOR else ""


# ------------------------------------------------------------------------------------------------
# Components
# ------------------------------------------------------------------------------------------------


class ComponentOptions(Options):
    """Settings of one calendar component (§6.2). Use the subclasses, which carry each component's defaults."""

    component: ClassVar[str] = "component"
    predecessor: ClassVar[str] = ""

    enabled: bool = False
    mode: str = "horizon"
    horizon_start_hours: float = -24.0
    horizon_end_hours: float = 0.0
    local_time: bool = False
    scale: bool = True
    range_min: float = 0.0
    range_max: float = 1.0

    @model_validator(mode="before")
    @classmethod
    def _reject_unknown(cls, data: Any) -> Any:
        aliases = dict(_COMPONENT_NAMES)
        if cls.predecessor:
            aliases[cls.predecessor] = "enabled"
        return rename_aliases(cls.__name__, data, aliases, set(cls.model_fields))

    @field_validator("enabled", "local_time", "scale", mode="before")
    @classmethod
    def _booleans(cls, value: Any, info: ValidationInfo) -> Any:
        if value is None:
            return cls.model_fields[info.field_name].default
        return as_bool(value)

    @field_validator("mode", mode="before")
    @classmethod
    def _mode(cls, value: Any) -> Any:
        if value is None:
            return cls.model_fields["mode"].default
        if isinstance(value, str):
            value = MODE_ALIASES.get(value, value)
        if value not in MODES:
            raise param_error(
                "INVALID_CHOICE",
                f"{cls.component}.mode={value!r} is not allowed: choose one of {list(MODES)} "
                f"(predecessor: datenform {list(MODE_ALIASES)})",
            )
        return value

    @field_validator("horizon_start_hours", "horizon_end_hours", "range_min", "range_max", mode="before")
    @classmethod
    def _floats(cls, value: Any, info: ValidationInfo) -> Any:
        if value is None:
            return cls.model_fields[info.field_name].default
        return as_float(f"{cls.component}.{info.field_name}", value)

    @field_validator("horizon_start_hours", "horizon_end_hours", "range_min", "range_max")
    @classmethod
    def _finite(cls, value: float, info: ValidationInfo) -> float:
        name = f"{cls.component}.{info.field_name}"
        if not math.isfinite(value):
            raise param_error("PARAM_NOT_FINITE", f"{name}={value} is not finite")
        if info.field_name.startswith("horizon") and not -_HORIZON_LIMIT_NS <= hours_to_ns(value) <= _HORIZON_LIMIT_NS:
            raise param_error(
                "PARAM_OUT_OF_RANGE",
                f"{name}={value!r} is out of range: allowed -{HORIZON_LIMIT_HOURS} <= {info.field_name} <= "
                f"{HORIZON_LIMIT_HOURS}{_suffix(info.field_name)}",
            )
        return value

    @model_validator(mode="after")
    def _relations(self) -> ComponentOptions:
        if self.horizon_start_ns >= self.horizon_end_ns:
            raise param_error(
                "PARAM_COMPARISON_FAILED",
                f"{self.component}.horizon_start_hours={self.horizon_start_hours!r} must be less than "
                f"{self.component}.horizon_end_hours={self.horizon_end_hours!r} "
                "(predecessor: zeithorizontStart < zeithorizontEnd)",
            )
        if not self.range_min < self.range_max:
            raise param_error(
                "INVALID_SCALER_RANGE",
                f"{self.component}.range_min={self.range_min!r} must be less than "
                f"{self.component}.range_max={self.range_max!r} (predecessor: skalierungMin < skalierungMax)",
            )
        return self

    @property
    def horizon_start_ns(self) -> int:
        """``horizon_start_hours`` in integer ns."""
        return hours_to_ns(self.horizon_start_hours)

    @property
    def horizon_end_ns(self) -> int:
        """``horizon_end_hours`` in integer ns."""
        return hours_to_ns(self.horizon_end_hours)


class YearOptions(ComponentOptions):
    """Year component Y (predecessor: Jahr)."""

    component: ClassVar[str] = "year"
    predecessor: ClassVar[str] = "jahr"


class MonthOptions(ComponentOptions):
    """Month component M (predecessor: Monat)."""

    component: ClassVar[str] = "month"
    predecessor: ClassVar[str] = "monat"

    horizon_start_hours: float = -1.0


class WeekOptions(ComponentOptions):
    """Week component W (predecessor: Woche)."""

    component: ClassVar[str] = "week"
    predecessor: ClassVar[str] = "woche"

    mode: str = "current"


class DayOptions(ComponentOptions):
    """Day component D (predecessor: Tag); local-time formulas by default."""

    component: ClassVar[str] = "day"
    predecessor: ClassVar[str] = "tag"

    local_time: bool = True


class HolidayOptions(ComponentOptions):
    """Holiday flag H (predecessor: Feiertag)."""

    component: ClassVar[str] = "holiday"
    predecessor: ClassVar[str] = "feiertag"

    mode: str = "current"
    horizon_start_hours: float = -100.0


# ------------------------------------------------------------------------------------------------
# Global options
# ------------------------------------------------------------------------------------------------


def _component_input(value: Any, model: type[ComponentOptions]) -> Any:
    """None → defaults; a bare bool/'ja'/'nein' → ``{"enabled": ...}``; another component's model → its set fields."""
    if value is None:
        return {}
    if isinstance(value, ComponentOptions):
        if type(value) is model:
            return value
        return {name: getattr(value, name) for name in value.model_fields_set}
    if isinstance(value, bool | str):
        return {"enabled": value}
    return value


class TimeFeatureOptions(Options):
    """Which calendar features ``time_features`` computes and how (§6.2)."""

    year: YearOptions = Field(default_factory=YearOptions)
    month: MonthOptions = Field(default_factory=MonthOptions)
    week: WeekOptions = Field(default_factory=WeekOptions)
    day: DayOptions = Field(default_factory=DayOptions)
    holiday: HolidayOptions = Field(default_factory=HolidayOptions)
    timezone: str = "UTC"
    holiday_country: str = "AT"
    holiday_subdivision: str | None = None
    holiday_exclude_sundays: bool = False

    @model_validator(mode="before")
    @classmethod
    def _reject_unknown(cls, data: Any) -> Any:
        return rename_aliases(cls.__name__, data, _GLOBAL_NAMES, set(cls.model_fields))

    @field_validator(*COMPONENTS, mode="before")
    @classmethod
    def _components(cls, value: Any, info: ValidationInfo) -> Any:
        return _component_input(value, cls.model_fields[info.field_name].annotation)  # type: ignore[arg-type]

    @field_validator("holiday_exclude_sundays", mode="before")
    @classmethod
    def _exclude_sundays(cls, value: Any) -> Any:
        return False if value is None else as_bool(value)

    @field_validator("timezone", mode="before")
    @classmethod
    def _timezone(cls, value: Any) -> Any:
        if value is None:
            return "UTC"
        message = (f"timezone={value!r} is not an IANA time zone such as 'Europe/Vienna' or 'UTC' "
                   "(predecessor: zeitzone)")
        if not isinstance(value, str) or value in _NOT_IANA or value.startswith(_NOT_IANA_PREFIXES):
            raise param_error("UNSUPPORTED_TIMEZONE", message)
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError, OSError):
            raise param_error("UNSUPPORTED_TIMEZONE", message) from None
        return value

    @field_validator("holiday_country", mode="before")
    @classmethod
    def _country(cls, value: Any) -> Any:
        if value is None:
            return "AT"
        code = value.strip().upper() if isinstance(value, str) else None
        if code is None or code not in holidays.list_supported_countries(include_aliases=True):
            raise param_error(
                "UNKNOWN_HOLIDAY_COUNTRY",
                f"holiday_country={value!r} is not a country supported by holidays {holidays.__version__}: give an "
                "ISO 3166-1 alpha-2 code such as 'AT' or 'DE' (predecessor: land)",
            )
        return holidays.country_holidays(code).country  # an alias such as 'AUT' or 'UK' → its alpha-2 code

    @field_validator("holiday_subdivision", mode="before")
    @classmethod
    def _subdivision(cls, value: Any, info: ValidationInfo) -> Any:
        if value is None or (isinstance(value, str) and not value.strip()):
            return None
        country = info.data.get("holiday_country")
        if country is None:  # the country itself failed validation; that error is reported
            return value
        calendar = holidays.country_holidays(country)
        codes = tuple(calendar.subdivisions)
        aliases = dict(getattr(calendar, "subdivisions_aliases", {}) or {})
        text = value.strip() if isinstance(value, str) else value
        found = _subdivision_code(text, codes, aliases)
        if found is None:
            allowed = f"one of {list(codes)}" if codes else "none (this country has no subdivisions)"
            raise param_error(
                "UNKNOWN_HOLIDAY_SUBDIVISION",
                f"holiday_subdivision={value!r} is not a subdivision of holiday_country={country!r}: allowed {allowed}",
            )
        return found

    # -- derived -------------------------------------------------------------------------------

    def components(self) -> tuple[tuple[str, ComponentOptions], ...]:
        """``(name, options)`` of every component in column order Y, M, W, D, H."""
        return tuple((name, getattr(self, name)) for name in COMPONENTS)

    def columns(self) -> list[str]:
        """Names of the columns ``time_features`` returns for these options, in order."""
        names = {"year": ("Y_sin", "Y_cos"), "month": ("M_sin", "M_cos"), "week": ("W_sin", "W_cos"),
                 "day": ("D_sin", "D_cos"), "holiday": ("H",)}
        return [column for name, comp in self.components() if comp.enabled for column in names[name]]


def _subdivision_code(text: Any, codes: tuple[str, ...], aliases: dict[str, str]) -> str | None:
    """The subdivision code that ``text`` names (code or alias, exact first, then case-insensitive)."""
    if not isinstance(text, str):
        return None
    if text in codes:
        return text
    if text in aliases:
        return aliases[text]
    folded = text.casefold()
    for code in codes:
        if code.casefold() == folded:
            return code
    for alias, code in aliases.items():
        if alias.casefold() == folded:
            return code
    return None
