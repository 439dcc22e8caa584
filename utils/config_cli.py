"""One command line per configuration dataclass: the dataclass holds every default once.

The per-model scripts (``train_dpo/<model>/0N_*.py``) set a few UPPER_CASE constants at their top
and call a shared entry point; this module turns a config dataclass into an argparse parser
(grouped options with help, as diffusers' ``examples/cogvideo`` scripts lay them out), applies the
script's constants as the parser's defaults and refuses any constant that names no setting::

    parser = build_config_parser(EncodeConfig, ENCODE_ARGS, constants={"NUM_FRAMES": 81})
    cfg = config_from_args(EncodeConfig, parser.parse_args(argv))

Precedence: dataclass default < ``defaults`` (e.g. launcher environment) < script constant <
command-line flag.

Option types come from the field annotations (``typing.get_type_hints``):

* ``int``, ``float``, ``str``; ``X | None`` also takes ``none`` (any case; numbers also ``off`` and
  ``auto``, as the training scripts always accepted) for None;
* ``int | float``: a number, int when it is written as one;
* ``tuple[X, ...]`` / ``list[X]``: one or more values (``--lora_targets to_q to_k``);
* ``bool``: two flags, ``--name`` (True) and ``--no_name`` (False);
* anything else (``Any``) needs an explicit :class:`Arg` ``type``.

A field without a dataclass default is a required option unless a constant sets it.

Scripts whose parser is not built from a dataclass (``evaluate.py``, ``generate/t2v_inference.py``,
``generate/i2v_inference.py``) apply their constants with :func:`apply_constants`, under the same rule.

Errors: an unknown constant or key exits with code 2 (argparse's ``parser.error``) and names it
and the nearest valid name (``difflib``), e.g. ``unknown setting LERNING_RATE (did you mean
LEARNING_RATE?)``; so does a constant outside its option's ``choices`` (argparse itself checks
only command-line values). A string constant of a sequence option is one value (``LOGGERS =
"csv"``). A config field missing from the help table, or a table entry naming no field, is a
programming error (``TypeError`` when the parser is built).
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import types
import typing
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

__all__ = ["Arg", "apply_constants", "build_config_parser", "config_from_args", "config_field_names", "NONE_WORDS"]

NONE_WORDS = ("none",)  # what an Optional option reads as None
_NUMBER_NONE_WORDS = ("none", "off", "auto", "")  # numbers: also the training scripts' old spellings


@dataclass(frozen=True)
class Arg:
    """How one config field appears on the command line (a plain help string is ``Arg(help)``).

    Attributes:
        help: the help text (argparse adds the default).
        aliases: further flags for the same setting (``("--lr",)``).
        choices: allowed values (None is added for ``X | None`` fields).
        type: converter of one command-line string; overrides the annotation's.
        nargs: for sequence fields (default ``"+"``; ``"*"`` allows an empty list).
    """

    help: str = ""
    aliases: tuple[str, ...] = ()
    choices: tuple[Any, ...] | None = None
    type: Callable[[str], Any] | None = None
    nargs: str | None = None


def _none_or(convert: Callable[[str], Any], words: Sequence[str]) -> Callable[[str], Any]:
    def parse(s: str):
        return None if str(s).strip().lower() in words else convert(s)

    parse.__name__ = getattr(convert, "__name__", "value")  # argparse names it in "invalid X value"
    return parse


def _number(s: str) -> int | float:
    """``"3"`` -> 3, ``"0.5"`` -> 0.5 (for ``int | float`` fields)."""
    try:
        return int(s)
    except ValueError:
        return float(s)


_number.__name__ = "number"


def _split_optional(tp) -> tuple[Any, bool]:
    """``X | None`` -> (X, True); ``int | float`` stays a union."""
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        optional = len(args) < len(typing.get_args(tp))
        inner = args[0] if len(args) == 1 else typing.Union[tuple(args)]
        return inner, optional
    return tp, False


def _scalar_converter(tp, name: str) -> Callable[[str], Any]:
    if tp in (int, float, str):
        return tp
    if typing.get_origin(tp) in (typing.Union, types.UnionType) and set(typing.get_args(tp)) == {int, float}:
        return _number
    raise TypeError(f"config field {name!r}: no command-line type for {tp!r}; give Arg(type=...)")


def config_field_names(cls) -> list[str]:
    """Names of the fields of dataclass ``cls`` that its constructor takes."""
    return [f.name for f in dataclasses.fields(cls) if f.init]


def _field_defaults(cls) -> dict[str, Any]:
    out = {}
    for f in dataclasses.fields(cls):
        if f.default is not dataclasses.MISSING:
            out[f.name] = f.default
        elif f.default_factory is not dataclasses.MISSING:
            out[f.name] = f.default_factory()
        else:
            out[f.name] = None  # required on the command line unless a constant sets it
    return out


def _add_field(group, name: str, tp, spec: Arg, default: Any, required: bool) -> None:
    flags = [f"--{name}", *spec.aliases]
    inner, optional = _split_optional(tp)
    if inner is bool:
        group.add_argument(*flags, dest=name, action="store_true", default=default, help=spec.help)
        group.add_argument(f"--no_{name}", dest=name, action="store_false", default=argparse.SUPPRESS,
                           help=f"turn --{name} off")  # fmt: skip
        return
    kw: dict[str, Any] = {"dest": name, "default": default, "help": spec.help, "required": required}
    origin = typing.get_origin(inner)
    if origin in (tuple, list):
        item = typing.get_args(inner)[0] if typing.get_args(inner) else str
        kw["nargs"] = spec.nargs or "+"
        convert = spec.type or _scalar_converter(item, name)
        if isinstance(default, tuple):
            kw["default"] = list(default)
        elif isinstance(default, str):  # LORA_TARGETS = "to_q": one value, not its characters
            kw["default"] = [default]
    else:
        convert = spec.type or _scalar_converter(inner, name)
        if optional and spec.type is None:
            words = _NUMBER_NONE_WORDS if convert in (int, float, _number) else NONE_WORDS
            convert = _none_or(convert, words)
    kw["type"] = convert
    if spec.choices is not None:
        kw["choices"] = tuple(spec.choices) + ((None,) if optional else ())
        kw["metavar"] = "{" + ",".join("none" if c is None else str(c) for c in kw["choices"]) + "}"
    group.add_argument(*flags, **kw)


def _unknown_message(key: str, valid: Sequence[str]) -> str:
    upper = key.isupper()
    near = difflib.get_close_matches(key.lower(), valid, n=1, cutoff=0.6)
    hint = f" (did you mean {near[0].upper() if upper else near[0]}?)" if near else ""
    what = "constant" if upper else "setting"
    return f"unknown {what} {key}{hint}; the settings are the options of --help"


def build_config_parser(
    cls,
    help_table: Mapping[str, Mapping[str, str | Arg]],
    *,
    constants: Mapping[str, Any] | None = None,
    defaults: Mapping[str, Any] | None = None,
    description: str | None = None,
    exclude: Sequence[str] = (),
) -> argparse.ArgumentParser:
    """An argparse parser over the init fields of dataclass ``cls``.

    Args:
        cls: the config dataclass; its field defaults are the option defaults.
        help_table: ``{group title: {field name: help text or Arg}}``; every init field of ``cls``
            not in ``exclude`` appears exactly once (options are grouped and ordered like this).
        constants: a per-model script's settings, ``{"LEARNING_RATE": 1e-5}`` or
            ``{"learning_rate": 1e-5}`` (matched case-insensitively); override ``defaults``.
        defaults: computed defaults (e.g. shard from the launcher); override the dataclass's.
        description: the parser's description.
        exclude: fields that are not settable from the command line (they keep their default).

    Returns:
        The parser (the caller may add options of its own); values given on the command line
        override every default.

    Raises:
        SystemExit(2): a key of ``constants`` or ``defaults`` names no option (message on stderr
            naming it and the nearest valid name).
        TypeError: ``help_table`` and the fields of ``cls`` disagree, or a field type has no
            converter.
    """
    names = [n for n in config_field_names(cls) if n not in exclude]
    listed = [n for group in help_table.values() for n in group]
    missing, extra = sorted(set(names) - set(listed)), sorted(set(listed) - set(names))
    if missing or extra or len(listed) != len(set(listed)):
        raise TypeError(f"{cls.__name__} help table: fields without help {missing}, unknown entries {extra}")
    hints = typing.get_type_hints(cls)
    values = _field_defaults(cls)
    required = {f.name for f in dataclasses.fields(cls)
                if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING}  # fmt: skip
    p = argparse.ArgumentParser(description=description, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    given: set[str] = set()  # settings a default or constant sets
    for source in (defaults or {}), (constants or {}):
        for key, value in source.items():
            if key.lower() not in names:
                p.error(_unknown_message(key, names))
            values[key.lower()] = value
            given.add(key.lower())
    required -= given
    for title, entries in help_table.items():
        group = p.add_argument_group(title)
        for name, spec in entries.items():
            spec = spec if isinstance(spec, Arg) else Arg(help=spec)
            value = values[name]
            if name in given and spec.choices is not None and value is not None:
                # argparse checks choices of command-line values only, never of defaults
                seq = value if isinstance(value, (list, tuple)) else [value]
                bad = [v for v in seq if v not in spec.choices and str(v).lower() not in NONE_WORDS]
                if bad:
                    p.error(f"{name.upper()} = {bad[0]!r} is not one of {list(spec.choices)}")
            _add_field(group, name, hints[name], spec, value, name in required)
    return p


def apply_constants(parser: argparse.ArgumentParser, constants: Mapping[str, Any]) -> dict[str, Any]:
    """Make a script's constants the defaults of the options of the same name (case-insensitive).

    ``apply_constants(parser, {"SEED": 7})`` sets the default of ``--seed`` to 7; a flag given on the
    command line still wins, and ``--help`` shows the new default.

    Args:
        parser: a finished parser; its optional arguments (by ``dest``) are the valid names.
        constants: ``{"SEED": 7}`` or ``{"seed": 7}``.

    Returns:
        The constants with lower-case keys.

    Raises:
        SystemExit(2): a key names no option (message on stderr naming it and the nearest option).
    """
    valid = sorted({a.dest for a in parser._actions if a.option_strings and a.dest not in ("help", argparse.SUPPRESS)})
    for key in constants:
        if key.lower() not in valid:
            parser.error(_unknown_message(key, valid))
    lowered = {k.lower(): v for k, v in constants.items()}
    parser.set_defaults(**lowered)
    return lowered


def config_from_args(cls, args: argparse.Namespace, **overrides: Any):
    """``cls(**fields)`` from a namespace of :func:`build_config_parser`; lists become tuples for
    tuple-typed fields, ``overrides`` replace parsed values. Fields not on the namespace keep their
    dataclass default."""
    hints = typing.get_type_hints(cls)
    kw = {}
    for name in config_field_names(cls):
        if name in overrides:
            kw[name] = overrides[name]
        elif hasattr(args, name):
            value = getattr(args, name)
            inner, _ = _split_optional(hints[name])
            if typing.get_origin(inner) is tuple and isinstance(value, list):
                value = tuple(value)
            kw[name] = value
    return cls(**kw)
