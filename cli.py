"""The scripts' command lines: one flag per field of their config dataclass (train.TrainConfig,
eval.EvalConfig), its help taken from the field's comment, its range and choices checked in one line."""
import argparse
import dataclasses
import inspect
import re
import sys

import torch


# The ranges a config field may be limited to (a script's LIMITS maps field -> one of these); NaN fails each.
RANGES = {">= 1": lambda v: v >= 1, ">= 0": lambda v: v >= 0, "> 0": lambda v: v > 0,
          "in [0, 1)": lambda v: 0 <= v < 1, "in [0, 1]": lambda v: 0 <= v <= 1,
          "auto, cpu or cuda[:N] (with a visible GPU)": lambda v: v in ("auto", "cpu") or bool(
              re.fullmatch(r"cuda(:\d+)?", v)) and torch.cuda.is_available()}


class FlagParser(argparse.ArgumentParser):
    def error(self, message):  # one line, like every other error of the scripts (argparse adds a usage block)
        sys.exit(f"error: {message} (see --help)")


def config_parser(cls, description, limits=None, choices=None, notes=None, track_given=False, defaults=None):
    """A FlagParser with one flag per field of the dataclass `cls` (`lr: float = 4e-5` -> --lr 4e-5). A comment
    line in the dataclass opens a group of flags in --help; a flag's help is its field's comment (or its
    group's title), its default and its limits. `defaults` (field -> text) replaces "default X" where the real
    default is not the field's (a preset's). track_given=True leaves unset flags None, so a script can tell the
    user's values from a preset's."""
    comments, sections, section = {}, {}, ""
    for line in inspect.getsource(cls).splitlines()[1:]:
        m = re.match(r"\s+(\w+): [^#]*(?:#\s*(.*))?$", line)
        if m:
            comments[m[1]], sections[m[1]] = m[2] or section, section
        elif line.strip().startswith("#"):
            section = line.strip("# \n")
    limits, choices, notes, defaults = limits or {}, choices or {}, notes or {}, defaults or {}
    ap = FlagParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    groups = {}
    for f in dataclasses.fields(cls):
        group = groups.get(sections.get(f.name, ""))
        if group is None:
            title = sections.get(f.name, "")
            group = groups[title] = ap.add_argument_group(title) if title else ap
        flag, text = "--" + f.name.replace("_", "-"), comments.get(f.name, "")
        if f.type in (bool, "bool"):
            group.add_argument(flag, action="store_true", default=None if track_given else False,
                               help=f"{text} (off by default)".lstrip())
            continue
        about = [defaults[f.name]] if f.name in defaults else [f"default {f.default!r}"] if f.default != "" else \
            [] if "default" in text else ["default none"]
        about += [f"one of {', '.join(map(str, choices[f.name]))}"] if f.name in choices else \
            [f"must be {limits[f.name]}"] if f.name in limits else []
        about += [notes[f.name]] if f.name in notes else []
        group.add_argument(flag, type=type(f.default), default=None if track_given else f.default,
                           choices=choices.get(f.name), metavar=f.name.upper(),
                           help=f"{text} ({'; '.join(about)})".replace(" ()", "").lstrip())
    return ap


def check_limits(ap, cfg, limits):
    """ap.error (one line) for the first field of cfg outside its range in `limits` (field -> RANGES key)."""
    for name, rule in limits.items():
        value = getattr(cfg, name)
        if not RANGES[rule](value):
            ap.error(f"--{name.replace('_', '-')} must be {rule}, not {value!r}")


def interrupted(*_):
    """The scripts' SIGTERM handler: a scheduler's or `kill`'s stop ends a run the way Ctrl-C does (one line)."""
    raise KeyboardInterrupt
