"""Parameter values from the command line and gpu.yml, checked against each post's declared defaults.

A post declares its knobs in the cell tagged `parameters`; the default's type is the contract.
`--param lr=1e-3` is a float where the default is a float, `seed=010` is 10 (never octal 8),
and a value that does not fit the declared type is refused in one line.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

INTEGER = re.compile(r"[+-]?\d+")
TRUE, FALSE = ("true", "yes", "on", "1"), ("false", "no", "off", "0")


class ParameterError(ValueError):
    """A value that does not fit the parameter's declared type."""


def type_name(value: Any) -> str:
    """How a declared default's type reads in an error message."""
    return "null" if value is None else type(value).__name__


def parse_scalar(text: str, default: Any) -> Any:
    """Read command-line `text` as a value of the same type as `default`."""
    text = text.strip()
    if isinstance(default, bool):
        if text.lower() in TRUE or text.lower() in FALSE:
            return text.lower() in TRUE
        raise ParameterError(f"expected true or false, got {text!r}")
    if isinstance(default, int):
        if INTEGER.fullmatch(text):
            return int(text, 10)
        raise ParameterError(f"expected an integer, got {text!r}")
    if isinstance(default, float):
        try:
            value = float(text)
        except ValueError:
            raise ParameterError(f"expected a number, got {text!r}") from None
        if math.isnan(value):
            raise ParameterError("expected a number, got NaN")
        return value
    if isinstance(default, str):
        return text
    if default is None:
        return parse_untyped(text)
    raise ParameterError(f"cannot set a parameter of type {type_name(default)} from the "
                         "command line")


def parse_untyped(text: str) -> Any:
    """A value for a parameter whose default is None: null, an integer, a number, or text."""
    if text.lower() in ("null", "none", ""):
        return None
    if INTEGER.fullmatch(text):
        return int(text, 10)
    try:
        return float(text)
    except ValueError:
        return text


def parse_value(text: str, default: Any) -> Any:
    """Read `text` (from `--param NAME=text`) as the type of the declared `default`.

    Lists are written as JSON (`[64, 256]`) or comma-separated (`64,256`); each item takes the
    type of the default's first item. `null` (or `none`) sets any parameter to None.
    """
    if text.strip().lower() in ("null", "none") and not isinstance(default, str):
        return None
    if isinstance(default, list | tuple):
        body, model = text.strip(), (default[0] if default else None)
        if body.startswith("["):
            try:
                items = json.loads(body)
            except json.JSONDecodeError as error:
                raise ParameterError(f"expected a list, got {text!r} ({error.msg})") from None
            values = [check_value(item, model) for item in items]
        else:
            values = [parse_scalar(item, model) for item in body.split(",") if item.strip()]
        return type(default)(values)
    if isinstance(default, dict):
        try:
            value = json.loads(text)
        except json.JSONDecodeError as error:
            raise ParameterError(f"expected a JSON object, got {text!r} ({error.msg})") from None
        if not isinstance(value, dict):
            raise ParameterError(f"expected a JSON object, got {text!r}")
        return value
    return parse_scalar(text, default)


def check_value(value: Any, default: Any) -> Any:
    """A value already typed (from gpu.yml) checked against the default's type; ints widen to float."""
    if default is None or value is None:  # null switches an optional feature off (soft_to: null)
        return value
    if isinstance(default, bool) or isinstance(value, bool):
        if isinstance(default, bool) and isinstance(value, bool):
            return value
    elif isinstance(default, float) and isinstance(value, int | float):
        return float(value)
    elif isinstance(default, int) and isinstance(value, int):
        return value
    elif isinstance(default, list | tuple) and isinstance(value, list | tuple):
        model = default[0] if default else None
        return type(default)(check_value(item, model) for item in value)
    elif isinstance(value, type(default)):
        return value
    raise ParameterError(f"expected {type_name(default)}, got {type_name(value)} {value!r}")
