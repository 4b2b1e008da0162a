"""`params.yaml` -> typed config objects, with experiment overlays and `--set` overrides.

`params.yaml` is the single source of every parameter. An experiment
(`experiments/<name>.yaml`) is a small overlay: an `experiment:` block describing the
variant plus any partial parameter blocks, deep-merged over `params.yaml`. `--set
key.path=value` overrides come last; values are parsed as YAML (`--set train.lr=1e-3`).
"""
from __future__ import annotations

import copy
import dataclasses
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from vireid.harness.schema import ConfigError, build, flatten, shown, to_dict

# Names that become folder names and words of DVC shell commands.
NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
REPO_ROOT = Path(__file__).resolve().parent.parent
EXPERIMENTS_DIR = REPO_ROOT / "experiments"

@dataclass
class SynthConfig:
    """Generate a synthetic dataset in the real layout of `data.dataset` before preparing: `enabled`
    and the fields of vireid.datasets.synth.SynthSettings (a test keeps the two the same)."""

    enabled: bool
    seed: int
    n_ids: int = field(metadata={"ge": 4})
    images_per_cam: int = field(metadata={"ge": 1})
    height: int = field(metadata={"ge": 8, "le": 4096})
    width: int = field(metadata={"ge": 4, "le": 4096})
    difficulty: float = field(metadata={"ge": 0.0, "le": 1.0})
    cue_correlation: float = field(metadata={"ge": 0.0, "le": 1.0})
    nir_luma_weight: float = field(metadata={"ge": 0.0, "le": 1.0})
    ir_model: str | None  # nir | thermal; null: the layout's real kind (its dataset spec)
    test_fraction: float | None = field(metadata={"gt": 0.0, "lt": 1.0})  # null: the layout's (its dataset spec)
    val_fraction: float = field(metadata={"ge": 0.0, "lt": 1.0})  # SYSU layout: training ids in exp/val_id.txt


@dataclass
class DataConfig:
    dataset: str  # a registered dataset (vireid.datasets.registry), checked in validate
    name: str
    label: str
    root: str
    regdb_split: int = field(metadata={"ge": 1})  # the split of data.dataset (its spec lists them)
    prepared_dir: str
    image_height: int = field(metadata={"ge": 8, "le": 4096})
    image_width: int = field(metadata={"ge": 4, "le": 4096})
    cache_workers: int = field(metadata={"ge": 1, "le": 1024})
    # Images whose header claims more pixels are refused before decoding (decompression bombs).
    max_image_pixels: int = field(metadata={"ge": 1})
    synthetic: SynthConfig

    def validate(self, path: str) -> None:
        from vireid.datasets.errors import DatasetError
        from vireid.datasets.registry import get_dataset

        try:
            spec = get_dataset(self.dataset)
        except DatasetError as exc:
            raise ConfigError(f"{path}.dataset: {exc}") from None
        if self.regdb_split not in spec.splits:
            raise ConfigError(f"{path}.regdb_split: {spec.label} has splits {list(spec.splits)}; "
                              f"got {self.regdb_split}")


@dataclass
class ModelConfig:
    method: str
    backbone: Literal["tiny", "resnet18", "resnet34", "resnet50"]
    weights: str
    last_stride: int = field(metadata={"ge": 1, "le": 2})
    # The method's own options (its options dataclass, e.g. AGW's non_local_width); {}: its defaults.
    options: dict[str, Any]


@dataclass
class AugmentConfig:
    flip: bool
    pad: int = field(metadata={"ge": 0})
    pad_fill: int = field(metadata={"ge": 0, "le": 255})
    random_erasing: float = field(metadata={"ge": 0.0, "le": 1.0})
    channel_aug: bool


@dataclass
class TrainConfig:
    epochs: int = field(metadata={"ge": 1})
    p: int = field(metadata={"ge": 2})
    k: int = field(metadata={"ge": 2})
    optimizer: Literal["adam", "sgd"]
    lr: float = field(metadata={"gt": 0.0})
    weight_decay: float = field(metadata={"ge": 0.0})
    momentum: float = field(metadata={"ge": 0.0, "lt": 1.0})
    milestones: list[int]
    gamma: float = field(metadata={"gt": 0.0, "le": 1.0})
    warmup_epochs: int = field(metadata={"ge": 0})
    warmup_factor: float = field(metadata={"gt": 0.0, "le": 1.0})
    # factor: from warmup_factor at epoch 0 linearly to 1 at warmup_epochs; ramp: (epoch + 1) / warmup_epochs (AGW code)
    warmup_rule: Literal["factor", "ramp"]
    amp: Literal["auto", "off", "bf16", "fp16"]
    channels_last: Literal["auto", "on", "off"]
    compile: bool
    grad_clip: float | None = field(metadata={"gt": 0.0})
    seed: int
    deterministic: bool
    device: str
    threads: int | None = field(metadata={"ge": 1, "le": 4096})
    steps_per_epoch: int | None = field(metadata={"ge": 1})
    val_fraction: float = field(metadata={"ge": 0.0, "lt": 1.0})
    val_every: int = field(metadata={"ge": 1})
    select: Literal["last", "best"]
    select_metric: Literal["mAP", "r1", "mINP"]
    checkpoint_every: int = field(metadata={"ge": 1})
    eval_batch_size: int = field(metadata={"ge": 1})
    sync_bn: bool
    augment: AugmentConfig

    def validate(self, path: str) -> None:
        if self.k % 2:
            raise ConfigError(f"{path}.k: expected an even number (K/2 infrared + K/2 visible), got {self.k}")


@dataclass
class RerankConfig:
    k1: int = field(metadata={"ge": 1})
    k2: int = field(metadata={"ge": 1})
    lam: float = field(metadata={"ge": 0.0, "le": 1.0})
    # What the neighbours are ranked by: the distances, or the public IDKL code's SYSU-MM01
    # ranking (gallery columns at the matrix maximum); docs/evaluation.md.
    variant: Literal["standard", "idkl-sysu"]


@dataclass
class EvalConfig:
    protocols: list[str] | None
    trials: list[int] | None
    rerank: bool
    rerank_params: RerankConfig
    # The evaluate stage reports every protocol with and without re-ranking.
    rerank_modes: list[bool]
    # A features file whose arrays would take more memory is refused (decompression bound).
    max_features_mib: int = field(metadata={"ge": 1})


@dataclass
class TrackingConfig:
    enabled: bool
    uri: str | None  # None: $MLFLOW_TRACKING_URI, else sqlite:///<repo>/mlflow.db
    experiment: str
    system_metrics: bool  # CPU/GPU/memory every 10 s from a background thread (needs psutil)
    log_checkpoint: bool  # checkpoint.pt and features.npz as run artifacts (large for ResNet-50)


@dataclass
class SearchParam:
    type: Literal["float", "int", "categorical"] = "float"
    low: float | None = None
    high: float | None = None
    log: bool = False
    choices: list[Any] | None = None

    def validate(self, path: str) -> None:
        if self.type == "categorical":
            if not self.choices:
                raise ConfigError(f"{path}.choices: expected a non-empty list for a categorical parameter")
        elif self.low is None or self.high is None or not self.low < self.high:
            raise ConfigError(f"{path}: expected low < high for a {self.type} parameter")


@dataclass
class TuneConfig:
    study_name: str
    storage: str
    experiment: str
    n_trials: int = field(metadata={"ge": 1})
    timeout: float | None = field(metadata={"gt": 0.0})
    seed: int
    metric: Literal["mAP", "r1", "mINP"]
    pruner: Literal["median", "none"]
    n_startup_trials: int = field(metadata={"ge": 0})
    n_warmup_steps: int = field(metadata={"ge": 0})
    jobs: int = field(metadata={"ge": 1})
    # RDB storages (SQLite, PostgreSQL): a trial whose worker sent no heartbeat for grace_period s is failed
    heartbeat_interval: int | None = field(metadata={"ge": 1})
    grace_period: int | None = field(metadata={"ge": 1})
    overrides: dict[str, Any]
    search_space: dict[str, SearchParam]


@dataclass
class ReportConfig:
    runs_dir: str
    out_dir: str
    published_csv: str


@dataclass
class StudyConfig:
    """The DVC matrix axes (dvc.yaml reads these) and the dataset the tuner uses."""

    variants: list[str]
    datasets: list[str]
    seeds: list[int]
    jobs: int = field(metadata={"ge": 1, "le": 256})  # `vireid repro-matrix`: stages at once
    tune_dataset: str


@dataclass
class ExperimentMeta:
    name: str = "default"
    label: str = ""
    description: str = ""
    ablation_order: int | None = None


@dataclass
class Params:
    data: DataConfig
    model: ModelConfig
    loss: dict[str, Any]
    train: TrainConfig
    eval: EvalConfig
    tracking: TrackingConfig
    tune: TuneConfig
    report: ReportConfig
    study: StudyConfig
    # Not a params.yaml block: an experiment overlay's description of itself.
    experiment: ExperimentMeta = field(default_factory=ExperimentMeta)

    def validate(self, path: str) -> None:
        from vireid.methods import resolve_options, resolved_loss_mapping

        # The loss block and model.options are checked against the method's own schemas; the loss
        # block is then written out in full (the method's defaults with the block overlaid), so a
        # run's params.yaml and MLflow record hold every loss setting it trained with.
        self.loss = resolved_loss_mapping(self.model.method, self.loss, path="loss")
        resolve_options(self.model.method, self.model.options, path="model.options")
        if self.train.select == "best" and self.train.val_fraction == 0:
            raise ConfigError("train.select: 'best' needs validation identities; set train.val_fraction > 0 "
                              "or train.select: last")
        self._check_protocols()
        for key, names in (("study.variants", self.study.variants), ("study.datasets", self.study.datasets),
                           ("study.tune_dataset", [self.study.tune_dataset]),
                           ("experiment.name", [self.experiment.name])):
            for name in names:
                if not NAME_RE.fullmatch(name):
                    raise ConfigError(f"{key}: {shown(name)} is not a valid name (letters, digits, '_', '-', "
                                      "'.'; starting with a letter or digit): names go into DVC commands and paths")

    def _check_protocols(self) -> None:
        """eval.protocols / eval.trials, checked before training instead of after it."""
        from vireid.harness.evaluation.protocols import ProtocolError, get_protocol

        for name in self.protocols():
            try:
                protocol = get_protocol(name)
            except ProtocolError as exc:
                raise ConfigError(f"eval.protocols: {exc}") from None
            if protocol.dataset != self.data.dataset:
                raise ConfigError(f"eval.protocols: {name!r} is a {protocol.dataset} protocol but data.dataset is "
                                  f"{self.data.dataset!r}")
            try:
                protocol.check_trials(self.eval.trials)
            except ProtocolError as exc:
                raise ConfigError(f"eval.trials: {exc}") from None

    def protocols(self) -> list[str]:
        from vireid.datasets.registry import get_dataset

        return list(self.eval.protocols or get_dataset(self.data.dataset).default_protocols)

    def to_dict(self) -> dict[str, Any]:
        return to_dict(self)

    def flat(self) -> dict[str, Any]:
        return flatten(self.to_dict())


def read_yaml(path: str | Path) -> dict[str, Any]:
    """Safe-load a YAML mapping; a clear error names the file when it is not one."""
    from vireid.harness import yamlsafe

    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: file not found")
    data = yamlsafe.load(yamlsafe.read_text(path), str(path))
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level, got {type(data).__name__}")
    return data


def deep_merge(base: dict[str, Any], overlay: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for key, value in overlay.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def experiment_path(name_or_path: str) -> Path:
    candidate = Path(name_or_path)
    if candidate.suffix in (".yaml", ".yml") and candidate.is_file():
        return candidate
    path = EXPERIMENTS_DIR / f"{name_or_path}.yaml"
    if not path.is_file():
        known = ", ".join(list_experiments())
        raise ConfigError(f"unknown experiment {name_or_path!r}: no {path}; known experiments: {known}")
    return path


def list_experiments() -> list[str]:
    return sorted(p.stem for p in EXPERIMENTS_DIR.glob("*.yaml"))


def list_dataset_overlays() -> list[str]:
    """The names `--data` accepts: experiments/data/<name>.yaml."""
    return sorted(p.stem for p in (EXPERIMENTS_DIR / "data").glob("*.yaml"))


def parse_override(text: str, flag: str = "--set") -> tuple[list[str], Any]:
    """``key.path=value`` -> (key parts, YAML value): the one override parser of every command."""
    from vireid.harness import yamlsafe
    from vireid.harness.schema import shown

    if "=" not in text:
        raise ConfigError(f"{flag} {shown(text)}: expected key.path=value")
    key, raw = text.split("=", 1)
    key = key.strip()
    if not key or any(not part for part in key.split(".")):
        raise ConfigError(f"{flag} {shown(text)}: expected key.path=value with a non-empty key path")
    try:
        value = yamlsafe.load(raw, f"{flag} {key}") if raw.strip() else ""
    except yamlsafe.YAMLSyntaxError:
        value = raw
    return key.split("."), value


def apply_override(data: dict[str, Any], keys: list[str], value: Any, flag: str = "--set") -> None:
    """Set one key; a mapping value merges into the mapping already there (like an overlay),
    so `--set 'train.augment={flip: false}'` keeps the other `augment` keys."""
    node = data
    for i, key in enumerate(keys[:-1]):
        child = node.get(key)
        if child is None:
            child = node[key] = {}
        if not isinstance(child, dict):
            raise ConfigError(f"{flag} {'.'.join(keys)}: {'.'.join(keys[: i + 1])} is not a mapping")
        node = child
    if isinstance(value, dict) and isinstance(node.get(keys[-1]), dict):
        value = deep_merge(node[keys[-1]], value)
    node[keys[-1]] = value


# A dataset overlay names the data and may carry that dataset's training recipe (the paper's
# backbone, image size, schedule), so switching `study.datasets` is one parameter change.
DATASET_OVERLAY_KEYS = {"data", "model", "train", "eval"}


SPLIT_SUFFIX = re.compile(r"^(?P<base>.+)-split(?P<split>[0-9]+)$")


def overlay_base(name: str) -> str:
    """The overlay file a dataset name reads: `regdb-split3` -> `regdb` (see dataset_overlay)."""
    match = SPLIT_SUFFIX.match(name)
    if match and not (EXPERIMENTS_DIR / "data" / f"{name}.yaml").is_file():
        return match.group("base")
    return name


def dataset_overlay(name: str) -> dict[str, Any]:
    """`experiments/data/<name>.yaml`: a `data:` block naming one dataset (+ its recipe).

    `<name>-split<N>` (e.g. `regdb-split3`) is `<name>`'s overlay on its official split N
    (`data.regdb_split`), prepared in its own folder (`<prepared_dir>-split<N>`): one entry per
    split in `study.datasets` runs the literature's RegDB protocol, one model per split, and the
    report averages over the splits. The runs keep the dataset's own `data.name`."""
    base = overlay_base(name)
    path = EXPERIMENTS_DIR / "data" / f"{base}.yaml"
    if not path.is_file():
        known = ", ".join(sorted(p.stem for p in (EXPERIMENTS_DIR / "data").glob("*.yaml")))
        raise ConfigError(f"unknown dataset {name!r}: no {path}; known datasets: {known} "
                          "(and <name>-split<N> for a dataset with official splits, e.g. regdb-split3)")
    overlay = read_yaml(path)
    if base != name:
        data = dict(overlay.get("data") or {})
        if "regdb_split" not in data:
            raise ConfigError(f"unknown dataset {name!r}: {path} has no official splits (data.regdb_split)")
        split = int(SPLIT_SUFFIX.match(name).group("split"))
        data["regdb_split"] = split
        data["prepared_dir"] = f"{data['prepared_dir']}-split{split}"
        overlay = {**overlay, "data": data}
    if "data" not in overlay or not set(overlay) <= DATASET_OVERLAY_KEYS:
        raise ConfigError(f"{path}: expected a 'data' block and optionally the dataset's recipe in "
                          f"{sorted(DATASET_OVERLAY_KEYS - {'data'})}; got {sorted(overlay)}")
    return overlay


def experiment_recipes(path: Path, overlay: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """An experiment's `recipes:` block: dataset overlay name -> partial params for that dataset.

    A method's own training recipe differs per dataset (AGW's SGD recipe on real data, IDKL's
    RegDB configuration); it applies when `--data <name>` names that dataset."""
    recipes = overlay.get("recipes") or {}
    if not isinstance(recipes, dict):
        raise ConfigError(f"{path}: recipes: expected a mapping of dataset name to parameter blocks, got {recipes!r}")
    known = sorted(p.stem for p in (EXPERIMENTS_DIR / "data").glob("*.yaml"))
    allowed = {f.name for f in dataclasses.fields(Params)} - {"study", "tune", "report"}
    for name, recipe in recipes.items():
        if name not in known:
            raise ConfigError(f"{path}: recipes.{name}: not a dataset; known datasets: {', '.join(known)}")
        if not isinstance(recipe, dict):
            raise ConfigError(f"{path}: recipes.{name}: expected a mapping of parameter blocks, got {recipe!r}")
        unknown = sorted(set(recipe) - allowed)
        if unknown:
            raise ConfigError(f"{path}: recipes.{name}: unknown key {unknown[0]!r}; allowed keys: "
                              + ", ".join(sorted(allowed)))
    return recipes


def default_params_file() -> Path:
    """The repository's params.yaml; in an installed wheel (no repository around it), the copy of it
    the wheel carries (harness/params.yaml links to it in the repository)."""
    repo = REPO_ROOT / "params.yaml"
    return repo if repo.is_file() else Path(__file__).with_name("params.yaml")


def load_params(
    params_path: str | Path | None = None,
    experiment: str | None = None,
    overrides: list[str] | tuple[str, ...] = (),
    dataset: str | None = None,
) -> Params:
    """Resolve params.yaml + dataset overlay + experiment overlay (+ its recipe for the dataset)
    + `--set` overrides."""
    params_path = Path(params_path) if params_path else default_params_file()
    data = read_yaml(params_path)
    if dataset:
        data = deep_merge(data, dataset_overlay(dataset))
    if experiment:
        path = experiment_path(experiment)
        overlay = read_yaml(path)
        allowed = [f.name for f in dataclasses.fields(Params)] + ["recipes"]
        unknown = sorted(set(overlay) - set(allowed))
        if unknown:
            raise ConfigError(f"{path}: unknown key {unknown[0]!r}; allowed top-level keys: " + ", ".join(allowed))
        recipes = experiment_recipes(path, overlay)
        overlay = {k: v for k, v in overlay.items() if k != "recipes"}
        data = deep_merge(data, overlay)
        if dataset and overlay_base(dataset) in recipes:
            data = deep_merge(data, recipes[overlay_base(dataset)])
        data.setdefault("experiment", {})
        data["experiment"].setdefault("name", Path(path).stem)
    for text in overrides:
        keys, value = parse_override(text)
        apply_override(data, keys, value)
    return build(Params, data, "")


def dump_params(params: Params, path: str | Path) -> None:
    from vireid.harness.io import atomic_write_text

    atomic_write_text(path, yaml.safe_dump(params.to_dict(), sort_keys=False))
