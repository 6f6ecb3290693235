"""Where a dataset's files are: every COCO layout people have, resolved in one place.

:func:`resolve_dataset` turns ``--data`` (and the explicit ``--train-ann`` ...
flags) into :class:`DatasetSources`: one (annotation file, image folder) pair per
split, and the name of the layout it recognised. Recognised, in this order:

- a dataset YAML (``.yaml``/``.yml``)::

      train: {annotations: train.json, images: images/train}
      val: {annotations: val.json, images: images/val}
      test: {...}                # optional
      names: [cat, dog]          # optional: display names, one per class (or {category_id: name})

  relative paths are resolved against the YAML's folder; ``images`` defaults to the
  annotation file's folder.
- a Roboflow COCO export: ``train/``, ``valid/``, ``test/``, each holding
  ``_annotations.coco.json`` and its images.
- the COCO ROOT layout: ``annotations/instances_<split>.json`` with images in
  ``<split>/`` (``train``/``val`` also find ``train2017``/``val2017``).
- a CVAT COCO export: ``annotations/instances_<subset>.json`` with the images in
  ``images/`` (or ``images/<subset>/``); a lone subset (CVAT's ``default``) is the
  train split.

Split roles are ``train``, ``val`` and ``test``; every split found is also reachable
under its own name (``valid``, ``val2017``, ``default`` ...).

A folder can hold two of these at once (a Roboflow export beside ``annotations/``). Then
each one's annotation files are read: the only one that loads as COCO is used and the
other is named in :attr:`DatasetSources.skipped`; when both load, ``layout`` must pick one.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

import yaml

from csrseg.data.coco import CocoIndex, DatasetError, load_coco_json, with_classes

LAYOUTS = {
    "root": "COCO ROOT layout",
    "yaml": "dataset YAML",
    "roboflow": "Roboflow COCO export",
    "cvat": "CVAT COCO export",
    "explicit": "annotation files given on the command line",
}
FOLDER_LAYOUTS = ("roboflow", "root", "cvat")  # what ``layout`` can pick: the layouts a folder can hold together
ROBOFLOW_FILE = "_annotations.coco.json"
ROBOFLOW_SPLITS = {"train": "train", "valid": "val", "test": "test"}
YAML_KEYS = ("train", "val", "test", "names")


@dataclass(frozen=True)
class SplitFiles:
    """One split: its COCO instances file and the folder its ``file_name`` entries are relative to."""

    annotations: Path
    images: Path


@dataclass(frozen=True)
class DatasetSources:
    """The files of a dataset, by split; ``names``: display names from a dataset YAML; ``skipped``: the
    other layouts of the same folder that were not used, each with why (``"Roboflow COCO export
    (train/_annotations.coco.json: not a COCO instances file ...)"``)."""

    layout: str
    location: Path | None
    splits: dict[str, SplitFiles] = field(default_factory=dict)
    names: list[str] | dict[int, str] | None = None
    skipped: tuple[str, ...] = ()

    def get(self, split: str) -> SplitFiles:
        """The files of ``split`` (a role or a split's own name); a one-line error naming what exists."""
        if split in self.splits:
            return self.splits[split]
        where = f"{self.location}: " if self.location else ""
        found = ", ".join(sorted(self.splits)) or "none"
        expected = f"no annotations/instances_{split}.json; " if self.layout in ("root", "cvat") else ""
        raise DatasetError(f"{where}no '{split}' split in this {LAYOUTS[self.layout]} ({expected}splits found: {found})")

    def describe(self, splits: tuple[str, ...] = ("train", "val")) -> str:
        """One line: the layout, the files each of ``splits`` uses and the layouts skipped (with why)."""
        parts = [f"{s}: {self.splits[s].annotations} (images {self.splits[s].images})" for s in splits if s in self.splits]
        if self.skipped:
            parts.append("skipped: " + ", ".join(self.skipped))
        where = f" {self.location}" if self.location else ""
        return f"dataset: {LAYOUTS[self.layout]}{where}; " + "; ".join(parts)

    def to_dict(self) -> dict:
        """JSON-ready, paths absolute: what a run folder records (``dataset.json``) so that resuming
        needs no ``--data``."""
        # skipped is recorded too: a resumed run then describes its dataset as the first one did, and
        # dataset.json itself says why the folder's other layout was not used
        return dict(layout=self.layout, location=str(self.location.resolve()) if self.location else None,
                    splits={name: dict(annotations=str(f.annotations.resolve()), images=str(f.images.resolve()))
                            for name, f in self.splits.items()},
                    names=self.names if not isinstance(self.names, dict) else {str(k): v for k, v in self.names.items()},
                    skipped=list(self.skipped))

    @classmethod
    def from_dict(cls, data: dict, where: str) -> DatasetSources:
        """What :meth:`to_dict` wrote (``where`` names the file in errors)."""
        try:
            names = data.get("names")
            if isinstance(names, dict):
                names = {int(k): str(v) for k, v in names.items()}
            splits = {name: SplitFiles(Path(f["annotations"]), Path(f["images"])) for name, f in data["splits"].items()}
            location = Path(data["location"]) if data.get("location") else None
            skipped = tuple(str(s) for s in data.get("skipped") or ())  # absent in the records of older runs
            return cls(str(data["layout"]), location, splits, names, skipped)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise DatasetError(f"{where}: not a dataset record written by csrseg train ({type(exc).__name__}: {exc})") from None

    def class_names(self, index: CocoIndex) -> list[str]:
        """Display names of ``index``'s output classes: the YAML's ``names`` where given, else the file's."""
        if self.names is None:
            return list(index.class_names)
        if isinstance(self.names, dict):
            unknown = sorted(set(self.names) - set(index.cat_ids))
            if unknown:
                raise DatasetError(f"{self.location}: names: category id(s) {unknown[:5]} are not classes of "
                                   f"{index.path} ({index.cat_ids[:10]})")
            return [self.names.get(c, n) for c, n in zip(index.cat_ids, index.class_names)]
        if len(self.names) != len(index.cat_ids):
            raise DatasetError(f"{self.location}: names has {len(self.names)} entries but {index.path} has "
                               f"{len(index.cat_ids)} classes")
        return list(self.names)


def resolve_dataset(
    data: str | Path | None,
    train_split: str = "train",
    val_split: str = "val",
    train_ann: str | Path | None = None,
    train_images: str | Path | None = None,
    val_ann: str | Path | None = None,
    val_images: str | Path | None = None,
    layout: str | None = None,
) -> DatasetSources:
    """The files of the dataset at ``data`` (a folder or a dataset YAML), see the module docstring.

    ``train_ann``/``val_ann`` replace the train/val annotation file (their images
    default to the file's folder); ``train_images``/``val_images`` replace the folder.

    ``layout`` (``"roboflow"``, ``"root"`` or ``"cvat"``; only with a folder): the layout to
    use where the folder holds more than one. Without it, a folder holding several has
    each one's annotation files loaded (images are not checked): the only one that
    loads is used, the others are listed in :attr:`DatasetSources.skipped`; several
    that load are a :class:`DatasetError` naming them; none that loads raises the
    first one's own error. A folder with one layout is not read here at all.
    """
    if layout is not None and layout not in FOLDER_LAYOUTS:
        raise DatasetError(f"unknown dataset layout {layout!r}; --layout takes {'|'.join(FOLDER_LAYOUTS)}")
    if data is None:
        if not (train_ann or val_ann):
            raise DatasetError("no dataset: give --data (a folder or a dataset YAML) or --train-ann/--val-ann")
        if layout is not None:
            raise DatasetError("--layout picks one of the layouts in a --data folder, and no --data was given")
        sources = DatasetSources("explicit", None)
    else:
        path = Path(data)
        if path.suffix in (".yaml", ".yml"):
            if layout is not None:
                raise DatasetError(f"{path}: a dataset YAML names its files itself; --layout is for a --data folder")
            sources = _from_yaml(path)
        elif path.is_file():
            raise DatasetError(f"{path}: a file, not a dataset folder; give the folder that holds annotations/, a "
                               "dataset YAML, or an annotation file with --train-ann/--val-ann (eval: --ann)")
        elif not path.is_dir():
            raise DatasetError(f"{path}: dataset folder not found")
        else:
            sources = _from_folder(path, train_split, val_split, layout)
    return _apply_explicit(sources, train_ann, train_images, val_ann, val_images)


def _from_folder(path: Path, train_split: str, val_split: str, layout: str | None) -> DatasetSources:
    """The one layout of the folder ``path``: the only one found, the one ``layout`` names, or the
    only one whose annotation files load (see :func:`resolve_dataset`)."""
    found = _layouts_in(path, train_split, val_split)
    if not found:
        if (path / "annotations").is_dir():  # says that annotations/ holds no instances_<split>.json
            return _from_annotations_folder(path, train_split, val_split)
        raise DatasetError(
            f"{path}: not a dataset layout csrseg knows (annotations/instances_<split>.json, a Roboflow export "
            f"with train/{ROBOFLOW_FILE}, or a dataset YAML); see `csrseg convert` for YOLO, LabelMe and VIA"
        )
    if layout is not None:
        return _picked(path, found, layout)
    if len(found) == 1:
        return found[0]
    problems = [_annotation_problem(sources) for sources in found]
    valid = [sources for sources, problem in zip(found, problems) if problem is None]
    if not valid:
        raise problems[0]
    if len(valid) > 1:
        named = "; ".join(f"{LAYOUTS[s.layout]} ({', '.join(_relative_files(s))})" for s in valid)
        raise DatasetError(f"{path}: holds {len(valid)} valid dataset layouts: {named}; "
                           f"pick one with --layout {'|'.join(s.layout for s in valid)}")
    skipped = tuple(f"{LAYOUTS[s.layout]} ({_relative_message(problem, path)})"
                    for s, problem in zip(found, problems) if problem is not None)
    return replace(valid[0], skipped=skipped)


def _layouts_in(path: Path, train_split: str, val_split: str) -> list[DatasetSources]:
    """Every layout the folder ``path`` holds, Roboflow's first (it took precedence before any check)."""
    found = []
    if any((path / name / ROBOFLOW_FILE).is_file() for name in ROBOFLOW_SPLITS):
        found.append(_from_roboflow(path))
    elif (path / ROBOFLOW_FILE).is_file():  # one split folder of a Roboflow export
        files = SplitFiles(path / ROBOFLOW_FILE, path)
        found.append(DatasetSources("roboflow", path, {ROBOFLOW_SPLITS.get(path.name, "train"): files, path.name: files}))
    if any((path / "annotations").glob("instances_*.json")):
        found.append(_from_annotations_folder(path, train_split, val_split))
    return found


def _picked(path: Path, found: list[DatasetSources], layout: str) -> DatasetSources:
    """The layout of ``found`` that ``layout`` names, the others noted as skipped by choice."""
    chosen = [s for s in found if s.layout == layout]
    if not chosen:
        raise DatasetError(f"{path}: no {LAYOUTS[layout]} in this folder (found: "
                           f"{', '.join(LAYOUTS[s.layout] for s in found)}); --layout takes "
                           f"{'|'.join(s.layout for s in found)} here")
    skipped = tuple(f"{LAYOUTS[s.layout]} (--layout {layout} chosen)" for s in found if s is not chosen[0])
    return replace(chosen[0], skipped=skipped)


def _annotation_problem(sources: DatasetSources) -> DatasetError | None:
    """Why one of ``sources``' annotation files is not a COCO instances file, or None when all load.
    The whole file is validated, as training will: only done for a folder holding several layouts."""
    for ann in sorted({files.annotations for files in sources.splits.values()}):
        try:
            load_coco_json(ann)
        except DatasetError as exc:
            return exc
    return None


def _relative_files(sources: DatasetSources) -> list[str]:
    """``sources``' annotation files, relative to its folder: short enough for a one-line message."""
    return sorted({str(files.annotations.relative_to(sources.location)) for files in sources.splits.values()})


def _relative_message(exc: DatasetError, root: Path) -> str:
    """``exc``'s message with its leading file path made relative to ``root``."""
    message = str(exc)
    path, sep, rest = message.partition(": ")
    try:
        return f"{Path(path).relative_to(root)}{sep}{rest}"
    except ValueError:
        return message


def _apply_explicit(sources: DatasetSources, train_ann: str | Path | None, train_images: str | Path | None,
                    val_ann: str | Path | None, val_images: str | Path | None) -> DatasetSources:
    splits = dict(sources.splits)
    for role, ann, images in (("train", train_ann, train_images), ("val", val_ann, val_images)):
        if ann is None and images is None:
            continue
        if ann is None:
            if role not in splits:
                raise DatasetError(f"--{role}-images given without --{role}-ann and the dataset has no {role} split")
            ann = splits[role].annotations
        ann = Path(ann)
        if not ann.is_file():
            raise DatasetError(f"{ann}: annotation file not found (--{role}-ann)")
        splits[role] = SplitFiles(ann, Path(images) if images is not None else ann.parent)
    layout = sources.layout if sources.location else "explicit"
    return replace(sources, layout=layout, splits=splits)


def _from_yaml(path: Path) -> DatasetSources:
    if not path.is_file():
        raise DatasetError(f"{path}: dataset YAML not found")
    try:
        spec = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise DatasetError(f"{path}: not valid YAML ({str(exc).splitlines()[0]})") from None
    if not isinstance(spec, dict):
        raise DatasetError(f"{path}: top level must be a mapping with train/val entries")
    unknown = sorted(set(spec) - set(YAML_KEYS))
    if unknown:
        raise DatasetError(f"{path}: unknown key(s) {unknown}; valid: {list(YAML_KEYS)}")
    base = path.parent
    splits = {}
    for role in ("train", "val", "test"):
        entry = spec.get(role)
        if entry is None:
            continue
        if not isinstance(entry, dict) or not isinstance(entry.get("annotations"), str):
            raise DatasetError(f"{path}: {role} must be a mapping with 'annotations: FILE' (and 'images: FOLDER')")
        extra = sorted(set(entry) - {"annotations", "images"})
        if extra:
            raise DatasetError(f"{path}: {role}: unknown key(s) {extra}; valid: ['annotations', 'images']")
        ann = base / entry["annotations"]
        if not ann.is_file():
            raise DatasetError(f"{path}: {role}.annotations: {ann} not found")
        images = base / entry["images"] if entry.get("images") is not None else ann.parent
        if not images.is_dir():
            raise DatasetError(f"{path}: {role}.images: folder {images} not found")
        splits[role] = SplitFiles(ann, images)
    if not splits:
        raise DatasetError(f"{path}: no split given (train, val or test)")
    return DatasetSources("yaml", path, splits, _yaml_names(path, spec.get("names")))


def _yaml_names(path: Path, names: object) -> list[str] | dict[int, str] | None:
    if names is None:
        return None
    if isinstance(names, list) and all(isinstance(n, (str, int, float)) for n in names):
        return [str(n) for n in names]
    if isinstance(names, dict) and all(isinstance(k, int) for k in names):
        return {k: str(v) for k, v in names.items()}
    raise DatasetError(f"{path}: names must be a list of class names or a mapping category_id: name")


def _from_roboflow(root: Path) -> DatasetSources:
    splits = {}
    for folder, role in ROBOFLOW_SPLITS.items():
        ann = root / folder / ROBOFLOW_FILE
        if ann.is_file():
            splits[role] = splits[folder] = SplitFiles(ann, ann.parent)
    return DatasetSources("roboflow", root, splits)


def _from_annotations_folder(root: Path, train_split: str, val_split: str) -> DatasetSources:
    """ROOT layout (images in ``<split>/``) or CVAT export (images in ``images/``)."""
    found: dict[str, SplitFiles] = {}
    layout = "root"
    for ann in sorted((root / "annotations").glob("instances_*.json")):
        name = ann.stem.removeprefix("instances_")
        if (root / name).is_dir():
            images = root / name
        elif (root / "images" / name).is_dir():
            images, layout = root / "images" / name, "cvat"
        elif (root / "images").is_dir():
            images, layout = root / "images", "cvat"
        else:
            images = root / name  # missing: reported with the image files when the split is read
        found[name] = SplitFiles(ann, images)
    if not found:
        raise DatasetError(f"{root}: annotations/ holds no instances_<split>.json")
    splits = dict(found)
    for role, wanted in (("train", train_split), ("val", val_split)):
        for name in (wanted, f"{wanted}2017"):
            if name in found:
                splits[role] = found[name]
                break
    if layout == "cvat" and "train" not in splits and len(found) == 1:  # CVAT's single "default" subset
        splits["train"] = next(iter(found.values()))
    return DatasetSources(layout, root, splits)


def class_names_for(data: str | Path, cat_ids: list[int], layout: str | None = None) -> list[str]:
    """Display names of the categories ``cat_ids`` (a checkpoint's classes) as the dataset ``data``
    names them: for overlays of a model whose checkpoint carries no names. ``layout``: as for
    :func:`resolve_dataset`."""
    sources = resolve_dataset(data, layout=layout)
    split = next((s for s in ("train", "val", "test") if s in sources.splits), None)
    if split is None:
        raise DatasetError(f"{data}: no split to read class names from")
    index = with_classes(load_coco_json(sources.get(split).annotations), cat_ids)
    return sources.class_names(index)
