"""The settings file of a store root and the effective settings read from it.

Settings live in `<root>/config/store.conf`, one `name = value` per line
(comments with `#`). Only values that differ from the default need to be
there. What each setting is (kind, default, range) is store/settings.py;
code reads one by its constant: `config.get_int(settings.SNAPSHOT_DIRS)`.
"""

from __future__ import annotations

import os

from .errors import SettingError
from .fsutil import write_file_atomic
from .settings import (  # noqa: F401 - SETTINGS, lookup and is_utf8 are read from here too
    DEFAULT_ROOT,
    PARTITION_RE,
    ROOT,
    SETTINGS,
    Setting,
    is_utf8,
    lookup,
    partition_setting,
)

CONFIG_DIR = "config"
CONFIG_FILE = "store.conf"
ROOT_ENV = "MSGSTORE_ROOT"

def config_path(root: str) -> str:
    return os.path.join(root, CONFIG_DIR, CONFIG_FILE)


def _parse(data: bytes, path: str, problems: list[str] | None = None) -> dict[str, str]:
    """The settings of a store.conf. A bad line raises SettingError naming
    file and line; with `problems`, it is noted there and skipped instead
    (configutil -l, which must still list)."""
    values: dict[str, str] = {}

    def bad(lineno: int, why: str) -> None:
        msg = f"{path}:{lineno}: {why}"
        if problems is None:
            raise SettingError(msg)
        problems.append(msg)

    for lineno, raw in enumerate(data.splitlines(), 1):
        try:
            line = raw.decode("utf-8").strip()
        except UnicodeDecodeError as e:
            bad(lineno, f"not UTF-8 text (byte {e.start + 1} of the line)")
            continue
        if not line or line.startswith("#"):
            continue
        name, sep, value = line.partition("=")
        if not sep:
            bad(lineno, f"expected 'name = value', found {line!r}")
            continue
        name = name.strip()
        try:
            setting = lookup(name)
            values[setting.name] = setting.validate(value)
        except SettingError as e:  # where, for the administrator who edited the file
            bad(lineno, str(e))
    return values


class Config:
    """The effective settings of one store root."""

    def __init__(self, root: str, values: dict[str, str]):
        self.root = root
        self.values = values

    @classmethod
    def load(cls, root: str, problems: list[str] | None = None) -> Config:
        """The settings of `root`; a bad line raises SettingError, or with
        `problems` is noted there and left out."""
        path = config_path(root)
        try:
            with open(path, "rb") as f:
                data = f.read()
        except FileNotFoundError:
            data = b""
        return cls(root, _parse(data, path, problems))

    def get(self, setting: Setting | str) -> str:
        """The value as written (a name: configutil, which takes any)."""
        s = setting if isinstance(setting, Setting) else lookup(setting)
        if s is ROOT:
            return self.root
        return self.values.get(s.name, s.default)

    def get_int(self, setting: Setting) -> int:
        """A number, duration, percent, port or boolean setting as an int."""
        return int(self.get(setting))

    def get_bool(self, setting: Setting) -> bool:
        return self.get(setting) == "1"

    def source(self, name: str) -> str:
        if name == ROOT.name:
            return "command line or environment"
        return "file" if lookup(name).name in self.values else "default"

    def resolve_path(self, setting: Setting) -> str:
        value = self.get(setting)
        return value if os.path.isabs(value) else os.path.join(self.root, value)

    def partitions(self) -> dict[str, str]:
        """Partition name -> absolute spool path."""
        names = {"primary"}
        names.update(m.group(1) for n in self.values if (m := PARTITION_RE.match(n)))
        return {p: self.resolve_path(partition_setting(p)) for p in sorted(names)}

    def names(self) -> list[str]:
        extra = sorted(n for n in self.values if n not in SETTINGS)
        return list(SETTINGS) + extra

    def set(self, name: str, raw: str) -> str:
        """Validate and write one setting atomically; returns the stored value."""
        if name == ROOT.name:
            raise SettingError("store.root is chosen with --store-root or $MSGSTORE_ROOT, "
                               "not stored in the settings file")
        setting = lookup(name)
        value = setting.validate(raw)
        values = dict(self.values)
        values[setting.name] = value
        self.save(values)
        self.values = values
        return value

    def save(self, values: dict[str, str]) -> None:
        lines = ["# Message store settings: written by configutil; one 'name = value' per line.\n"]
        lines += [f"{n} = {v}\n" for n, v in sorted(values.items())]
        os.makedirs(os.path.dirname(config_path(self.root)), exist_ok=True)
        write_file_atomic(config_path(self.root), "".join(lines).encode())


def default_root() -> str:
    return os.environ.get(ROOT_ENV) or DEFAULT_ROOT
