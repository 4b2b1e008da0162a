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

# Defaults per dataset: the test protocols the trainer runs at the end.
DEFAULT_PROTOCOLS = {
    "sysu": ["sysu/all/single", "sysu/all/multi", "sysu/indoor/single", "sysu/indoor/multi"],
    "regdb": ["regdb/v2i", "regdb/i2v"],
    "llcm": ["llcm/v2i", "llcm/i2v"],
}


@dataclass
class SynthConfig:
    """Generate a synthetic dataset in the real layout of `data.dataset` before preparing."""

    enabled: bool = False
    seed: int = 0
    n_ids: int = field(default=100, metadata={"ge": 4})
    images_per_cam: int = field(default=4, metadata={"ge": 1})
    height: int = field(default=96, metadata={"ge": 8, "le": 4096})
    width: int = field(default=48, metadata={"ge": 4, "le": 4096})
    difficulty: float = field(default=0.5, metadata={"ge": 0.0, "le": 1.0})
    cue_correlation: float = field(default=0.5, metadata={"ge": 0.0, "le": 1.0})
    ir_model: str | None = None  # nir | thermal; null: the layout's real kind (SYSU, LLCM nir; RegDB thermal)
    test_fraction: float | None = field(default=None, metadata={"gt": 0.0, "lt": 1.0})  # null: the layout's


@dataclass
class DataConfig:
    dataset: Literal["sysu", "regdb", "llcm"] = "sysu"
    name: str = "synth-sysu"
    label: str = "synthetic (SYSU-MM01 layout)"
    root: str = "data/synth-sysu"
    regdb_split: int = field(default=1, metadata={"ge": 1, "le": 10})
    prepared_dir: str = "data/prepared/synth-sysu"
    image_height: int = field(default=64, metadata={"ge": 8, "le": 4096})
    image_width: int = field(default=32, metadata={"ge": 4, "le": 4096})
    cache_workers: int = field(default=2, metadata={"ge": 1, "le": 1024})
    # Images whose header claims more pixels are refused before decoding (decompression bombs).
    max_image_pixels: int = field(default=25_000_000, metadata={"ge": 1})
    synthetic: SynthConfig = field(default_factory=SynthConfig)


@dataclass
class ModelConfig:
    method: str = "idkl"
    backbone: Literal["tiny", "resnet18", "resnet34", "resnet50"] = "tiny"
    weights: str = "none"
    last_stride: int = field(default=1, metadata={"ge": 1, "le": 2})
    # The method's own options (its options dataclass, e.g. AGW's non_local_width); {}: its defaults.
    options: dict[str, Any] = field(default_factory=dict)


@dataclass
class AugmentConfig:
    flip: bool = True
    pad: int = field(default=10, metadata={"ge": 0})
    pad_fill: int = field(default=127, metadata={"ge": 0, "le": 255})
    random_erasing: float = field(default=0.5, metadata={"ge": 0.0, "le": 1.0})
    channel_aug: bool = False


@dataclass
class TrainConfig:
    epochs: int = field(default=12, metadata={"ge": 1})
    p: int = field(default=8, metadata={"ge": 2})
    k: int = field(default=4, metadata={"ge": 2})
    optimizer: Literal["adam", "sgd"] = "adam"
    lr: float = field(default=3.5e-4, metadata={"gt": 0.0})
    weight_decay: float = field(default=5e-3, metadata={"ge": 0.0})
    momentum: float = field(default=0.9, metadata={"ge": 0.0, "lt": 1.0})
    milestones: list[int] = field(default_factory=lambda: [55, 95])
    gamma: float = field(default=0.1, metadata={"gt": 0.0, "le": 1.0})
    warmup_epochs: int = field(default=0, metadata={"ge": 0})
    warmup_factor: float = field(default=0.1, metadata={"gt": 0.0, "le": 1.0})
    # factor: from warmup_factor at epoch 0 linearly to 1 at warmup_epochs; ramp: (epoch + 1) / warmup_epochs (AGW code)
    warmup_rule: Literal["factor", "ramp"] = "factor"
    amp: Literal["auto", "off", "bf16", "fp16"] = "auto"
    channels_last: Literal["auto", "on", "off"] = "auto"
    compile: bool = False
    grad_clip: float | None = field(default=None, metadata={"gt": 0.0})
    seed: int = 1
    deterministic: bool = False
    device: str = "auto"
    threads: int | None = field(default=None, metadata={"ge": 1, "le": 4096})
    steps_per_epoch: int | None = field(default=None, metadata={"ge": 1})
    val_fraction: float = field(default=0.2, metadata={"ge": 0.0, "lt": 1.0})
    val_every: int = field(default=2, metadata={"ge": 1})
    select: Literal["last", "best"] = "last"
    select_metric: Literal["mAP", "r1", "mINP"] = "mAP"
    checkpoint_every: int = field(default=1, metadata={"ge": 1})
    eval_batch_size: int = field(default=256, metadata={"ge": 1})
    sync_bn: bool = False
    augment: AugmentConfig = field(default_factory=AugmentConfig)

    def validate(self, path: str) -> None:
        if self.k % 2:
            raise ConfigError(f"{path}.k: expected an even number (K/2 infrared + K/2 visible), got {self.k}")


@dataclass
class RerankConfig:
    k1: int = field(default=20, metadata={"ge": 1})
    k2: int = field(default=6, metadata={"ge": 1})
    lam: float = field(default=0.3, metadata={"ge": 0.0, "le": 1.0})
    # What the neighbours are ranked by: the distances, or the public IDKL code's SYSU-MM01
    # ranking (gallery columns at the matrix maximum); docs/evaluation.md.
    variant: Literal["standard", "idkl-sysu"] = "standard"


@dataclass
class EvalConfig:
    protocols: list[str] | None = None
    trials: list[int] | None = None
    rerank: bool = False
    rerank_params: RerankConfig = field(default_factory=RerankConfig)
    # The evaluate stage reports every protocol with and without re-ranking.
    rerank_modes: list[bool] = field(default_factory=lambda: [False, True])
    # A features file whose arrays would take more memory is refused (decompression bound).
    max_features_mib: int = field(default=1024, metadata={"ge": 1})


@dataclass
class TrackingConfig:
    enabled: bool = True
    uri: str | None = None  # None: $MLFLOW_TRACKING_URI, else sqlite:///<repo>/mlflow.db
    experiment: str = "vireid-bench"


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
    study_name: str = "idkl-loss-weights"
    storage: str = "sqlite:///tune/optuna.db"
    experiment: str = "idkl"
    n_trials: int = field(default=6, metadata={"ge": 1})
    timeout: float | None = field(default=None, metadata={"gt": 0.0})
    seed: int = 0
    metric: Literal["mAP", "r1", "mINP"] = "mAP"
    pruner: Literal["median", "none"] = "median"
    n_startup_trials: int = field(default=2, metadata={"ge": 0})
    n_warmup_steps: int = field(default=1, metadata={"ge": 0})
    jobs: int = field(default=1, metadata={"ge": 1})
    # RDB storages (SQLite, PostgreSQL): a trial whose worker sent no heartbeat for grace_period s is failed
    heartbeat_interval: int | None = field(default=60, metadata={"ge": 1})
    grace_period: int | None = field(default=180, metadata={"ge": 1})
    overrides: dict[str, Any] = field(default_factory=dict)
    search_space: dict[str, SearchParam] = field(default_factory=dict)


@dataclass
class ReportConfig:
    runs_dir: str = "results/metrics"
    out_dir: str = "reports"
    published_csv: str = "reports/published_results.csv"


@dataclass
class StudyConfig:
    """The DVC matrix axes (dvc.yaml reads these) and the dataset the tuner uses."""

    variants: list[str] = field(default_factory=lambda: ["idkl"])
    datasets: list[str] = field(default_factory=lambda: ["synth-sysu"])
    seeds: list[int] = field(default_factory=lambda: [0])
    tune_dataset: str = "synth-sysu"


@dataclass
class ExperimentMeta:
    name: str = "default"
    label: str = ""
    description: str = ""
    ablation_order: int | None = None
    # "params": the experiment's `loss:` overlays params.yaml's loss block (IDKL family);
    # "method": it replaces it, starting from the method's own defaults (e.g. AGW, whose
    # loss terms differ from IDKL's).
    loss_base: Literal["params", "method"] = "params"


@dataclass
class Params:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: dict[str, Any] = field(default_factory=dict)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    tune: TuneConfig = field(default_factory=TuneConfig)
    report: ReportConfig = field(default_factory=ReportConfig)
    study: StudyConfig = field(default_factory=StudyConfig)
    experiment: ExperimentMeta = field(default_factory=ExperimentMeta)

    def validate(self, path: str) -> None:
        from vireid.methods import resolve_options, validate_loss_config

        # The loss block and model.options are validated against the method's own schemas.
        validate_loss_config(self.model.method, self.loss, path="loss")
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
        return list(self.eval.protocols or DEFAULT_PROTOCOLS[self.data.dataset])

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


def parse_override(text: str) -> tuple[list[str], Any]:
    from vireid.harness import yamlsafe
    from vireid.harness.schema import shown

    if "=" not in text:
        raise ConfigError(f"--set {shown(text)}: expected key.path=value")
    key, raw = text.split("=", 1)
    key = key.strip()
    if not key or any(not part for part in key.split(".")):
        raise ConfigError(f"--set {shown(text)}: expected key.path=value with a non-empty key path")
    try:
        value = yamlsafe.load(raw, f"--set {key}") if raw.strip() else ""
    except yamlsafe.YAMLSyntaxError:
        value = raw
    return key.split("."), value


def apply_override(data: dict[str, Any], keys: list[str], value: Any) -> None:
    """Set one key; a mapping value merges into the mapping already there (like an overlay),
    so `--set 'train.augment={flip: false}'` keeps the other `augment` keys."""
    node = data
    for i, key in enumerate(keys[:-1]):
        child = node.get(key)
        if child is None:
            child = node[key] = {}
        if not isinstance(child, dict):
            raise ConfigError(f"--set {'.'.join(keys)}: {'.'.join(keys[: i + 1])} is not a mapping")
        node = child
    if isinstance(value, dict) and isinstance(node.get(keys[-1]), dict):
        value = deep_merge(node[keys[-1]], value)
    node[keys[-1]] = value


# A dataset overlay names the data and may carry that dataset's training recipe (the paper's
# backbone, image size, schedule), so switching `study.datasets` is one parameter change.
DATASET_OVERLAY_KEYS = {"data", "model", "train", "eval"}


def dataset_overlay(name: str) -> dict[str, Any]:
    """`experiments/data/<name>.yaml`: a `data:` block naming one dataset (+ its recipe)."""
    path = EXPERIMENTS_DIR / "data" / f"{name}.yaml"
    if not path.is_file():
        known = ", ".join(sorted(p.stem for p in (EXPERIMENTS_DIR / "data").glob("*.yaml")))
        raise ConfigError(f"unknown dataset {name!r}: no {path}; known datasets: {known}")
    overlay = read_yaml(path)
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


def load_params(
    params_path: str | Path | None = None,
    experiment: str | None = None,
    overrides: list[str] | tuple[str, ...] = (),
    dataset: str | None = None,
) -> Params:
    """Resolve params.yaml + dataset overlay + experiment overlay (+ its recipe for the dataset)
    + `--set` overrides."""
    params_path = Path(params_path) if params_path else REPO_ROOT / "params.yaml"
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
        if overlay.get("experiment", {}).get("loss_base") == "method":
            data["loss"] = copy.deepcopy(overlay.get("loss") or {})
        if dataset in recipes:
            data = deep_merge(data, recipes[dataset])
        data.setdefault("experiment", {})
        data["experiment"].setdefault("name", Path(path).stem)
    for text in overrides:
        keys, value = parse_override(text)
        apply_override(data, keys, value)
    return build(Params, data, "")


def dump_params(params: Params, path: str | Path) -> None:
    from vireid.harness.io import atomic_write_text

    atomic_write_text(path, yaml.safe_dump(params.to_dict(), sort_keys=False))
