"""Profiles: named sets of params (and of raw data) that `surgvqa profile use NAME` makes active.

A profile is a folder `profiles/NAME/` holding `params.yaml` and `data.dvc`:
- `profiles/embedded/params.yaml` is the home of every value of the embedded default, with its comments;
- any other profile's `params.yaml` overrides only the keys it names (nested mappings merge, lists and scalars
  are replaced; a key the embedded default does not have is an error, so a misspelt override cannot vanish);
- `data.dvc` is the raw data the profile runs on (a DVC pointer to `data/raw`, its content in the DVC remote
  or regenerated from the `sample` section); a profile without one cannot be used, never falls back.

Switching writes the project's `params.yaml` and `data.dvc`, which DVC tracks: `dvc repro` afterwards reruns
exactly the stages whose values or data changed, and `dvc params diff` shows the switch. `profiles/` is in
`.dvcignore`, so DVC never mistakes a profile's `data.dvc` for data of its own.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from surgvqa.errors import SurgvqaError
from surgvqa.params.schema import Params
from surgvqa.params.typed import ParamsError, build

PROFILES_DIR = Path("profiles")
EMBEDDED = "embedded"
ACTIVE = "active"  # not a profile: "keep the active one" (MLproject's default)
PARAMS_FILE = "params.yaml"
DATA_FILE = "data.dvc"
HEADER = "# profile: {name}"


def names(profiles_dir: Path = PROFILES_DIR) -> list[str]:
    """Every profile, the embedded default first."""
    found = sorted(p.parent.name for p in profiles_dir.glob(f"*/{PARAMS_FILE}"))
    if ACTIVE in found:
        raise SurgvqaError(f"{profiles_dir / ACTIVE}: `{ACTIVE}` means the active profile; rename the folder")
    if EMBEDDED not in found:
        raise SurgvqaError(f"{profiles_dir / EMBEDDED / PARAMS_FILE} is missing: it holds every default value")
    return [EMBEDDED, *(n for n in found if n != EMBEDDED)]


def _override(base: dict, extra: dict, where: str) -> dict:
    merged = dict(base)
    for key, value in extra.items():
        path = f"{where}{key}"
        if key not in base:
            raise ParamsError(f"{path}: not a key of the embedded default (misspelt?)")
        if isinstance(value, dict) and isinstance(base[key], dict):
            merged[key] = _override(base[key], value, f"{path}.")
        else:
            merged[key] = value
    return merged


def _read_yaml(path: Path) -> dict:
    try:
        loaded = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        raise SurgvqaError(f"{path}: not valid YAML ({e})") from None
    if not isinstance(loaded, dict):
        raise SurgvqaError(f"{path}: must be a mapping of params sections")
    return loaded


def _folder(name: str, profiles_dir: Path) -> Path:
    if name not in names(profiles_dir):
        raise SurgvqaError(f"no profile {name!r}; the profiles are {', '.join(names(profiles_dir))} "
                           f"(folders of {profiles_dir}/)")
    return profiles_dir / name


def values(name: str, profiles_dir: Path = PROFILES_DIR) -> dict:
    """The profile's complete params: the embedded default with the profile's overrides."""
    embedded = _read_yaml(profiles_dir / EMBEDDED / PARAMS_FILE)
    if name == EMBEDDED:
        return embedded
    try:
        return _override(embedded, _read_yaml(_folder(name, profiles_dir) / PARAMS_FILE), "")
    except ParamsError as e:
        raise SurgvqaError(f"{profiles_dir / name / PARAMS_FILE}: {e}") from None


def _typed(name: str, complete: dict) -> Params:
    try:
        return build(Params, complete)
    except ParamsError as e:
        raise SurgvqaError(f"profile {name}: {e}") from None


def load(name: str, profiles_dir: Path = PROFILES_DIR) -> Params:
    """The profile through the typed loader: every section and key checked, as `dvc repro` would."""
    return _typed(name, values(name, profiles_dir))


def render(name: str, profiles_dir: Path = PROFILES_DIR) -> tuple[str, str]:
    """The text of params.yaml and data.dvc that make `name` the active profile."""
    folder = _folder(name, profiles_dir)
    complete = values(name, profiles_dir)
    _typed(name, complete)  # an invalid profile is never written
    source = f"`surgvqa profile use {name}` from {PROFILES_DIR / name / PARAMS_FILE}"  # relative: any checkout
    if name == EMBEDDED:  # verbatim, comments and all
        params_text = f"{HEADER.format(name=name)}, written by {source}.\n" + (folder / PARAMS_FILE).read_text()
    else:
        params_text = (f"{HEADER.format(name=name)}, written by {source} over "
                       f"{PROFILES_DIR / EMBEDDED / PARAMS_FILE} (which documents every key).\n"
                       + yaml.safe_dump(complete, sort_keys=False, width=120))
    data = folder / DATA_FILE
    if not data.is_file():
        raise SurgvqaError(f"{data} is missing: the DVC pointer to profile {name}'s raw data. Make it once: put the "
                           "data in data/raw (`surgvqa data import --from PATH`), `dvc commit -f data.dvc`, "
                           f"`cp data.dvc {data}`, `dvc push data.dvc`, and commit {data} (README: Profiles)")
    return params_text, data.read_text()


def active(params_path: Path = Path(PARAMS_FILE)) -> str | None:
    """The profile params.yaml says it was written from, or None."""
    first = params_path.read_text().split("\n", 1)[0] if params_path.is_file() else ""
    prefix = HEADER.format(name="")
    if not first.startswith(prefix):
        return None
    return first[len(prefix):].split(",")[0].strip() or None


def use(name: str, root: Path = Path(".")) -> list[str]:
    """Make `name` the active profile of the project at `root`; returns the params keys whose values changed
    (and data.dvc when the raw data changed)."""
    params_text, data_text = render(name, root / PROFILES_DIR)
    params_path, data_path = root / PARAMS_FILE, root / DATA_FILE
    before = yaml.safe_load(params_path.read_text()) if params_path.is_file() else None
    params_path.write_text(params_text)
    data_changed = not data_path.is_file() or data_path.read_text() != data_text
    data_path.write_text(data_text)
    changed = [PARAMS_FILE] if before is None else _changed_keys(before, yaml.safe_load(params_text), "")
    return [*changed, *([DATA_FILE] if data_changed else [])]


def _changed_keys(before: dict, after: dict, where: str) -> list[str]:
    keys = []
    for key in dict.fromkeys([*before, *after]):
        old, new = before.get(key), after.get(key)
        if isinstance(old, dict) and isinstance(new, dict):
            keys += _changed_keys(old, new, f"{where}{key}.")
        elif old != new:
            keys.append(f"{where}{key}")
    return keys


def check(root: Path = Path(".")) -> str:
    """The active profile's name, when params.yaml and data.dvc are exactly what `use` writes for it."""
    name = active(root / PARAMS_FILE)
    if name is None:
        raise SurgvqaError(f"{root / PARAMS_FILE} names no profile on its first line: "
                           f"`surgvqa profile use {EMBEDDED}` writes it")
    params_text, data_text = render(name, root / PROFILES_DIR)
    for path, want in ((root / PARAMS_FILE, params_text), (root / DATA_FILE, data_text)):
        if not path.is_file() or path.read_text() != want:
            raise SurgvqaError(f"{path} differs from profile {name}: edit {root / PROFILES_DIR / name} and run "
                               f"`surgvqa profile use {name}` (a one-off edit of {path.name} is fine for an "
                               "experiment, but is not a profile)")
    return name
