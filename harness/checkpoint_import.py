"""Import checkpoints saved by the public IDKL and AGW code into one of our run folders.

Our `idkl` / `baseline` / `agw` modules compute what the public code computes, under other
parameter names. This module reads such a file without executing code (``weights_only``, with
the few numpy types the AGW code's metric entries need), maps every name onto our modules,
and writes a run folder that ``vireid evaluate`` scores like a trained run:

    checkpoint.pt    our checkpoint format (model state, method, class count, params)
    params.yaml      resolved params: method, backbone, last stride and model options
    provenance.json  source file, its sha256, container, source entries (epoch, metrics),
                     and the reference entries our model has no use for, by group

The mapping is strict: every parameter and buffer of our model receives exactly one value of
the same shape; entries that the public code builds but never uses (unused copies of ResNet
stages, an unused attention block) are named by group with their count; anything else
unmatched is an error naming the keys. Name rules are prefix pairs (checkpoint -> ours).
"""
from __future__ import annotations

import dataclasses
import datetime
import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from vireid.harness.checkpoint import CheckpointError

PROVENANCE = "provenance.json"
FORMATS = ("idkl-official", "agw-official")
# How a report row names the code that trained an imported checkpoint.
FORMAT_LABELS = {"idkl-official": "IDKL code", "agw-official": "AGW code"}
FORMAT_SOURCES = {"idkl-official": "github.com/1KK077/IDKL",
                  "agw-official": "github.com/mangye16/Cross-Modal-Re-ID-baseline"}
# Keys under which the public code (or common wrappers) store the state dict.
STATE_KEYS = ("net", "state_dict", "model")
SHOWN = 5  # keys named per error line


class CheckpointImportError(CheckpointError):
    """A source checkpoint cannot be imported (unsafe, wrong container, or names that do not map)."""


# --------------------------------------------------------------------------------------------
# Reading the file safely
# --------------------------------------------------------------------------------------------
def _numpy_safe_globals() -> list:
    """numpy's array / scalar reconstruction, under numpy 2 and numpy 1 module names.

    The AGW code saves `cmc` as an ndarray and `mAP` / `mINP` as numpy float64 scalars."""
    try:
        from numpy._core import multiarray  # numpy 2
    except ImportError:  # numpy 1
        from numpy.core import multiarray

    items: list = [np.ndarray, np.dtype, multiarray._reconstruct, multiarray.scalar,
                   (multiarray._reconstruct, "numpy.core.multiarray._reconstruct"),
                   (multiarray.scalar, "numpy.core.multiarray.scalar")]
    for name in ("Float64DType", "Float32DType", "Int64DType", "Int32DType"):
        dtype_cls = getattr(np.dtypes, name, None)
        if dtype_cls is not None:
            items.append(dtype_cls)
    return items


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def load_source(path: str | Path) -> Any:
    """torch.load with weights_only=True and only numpy's array/scalar types allowed.

    A pickle that references anything else (a class, a function such as os.system) is refused
    before anything in it runs; the message names what it asked for."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointImportError(f"{path}: checkpoint not found")
    try:
        with torch.serialization.safe_globals(_numpy_safe_globals()):
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # UnpicklingError, zip errors, random bytes
        asked = []
        try:
            asked = torch.serialization.get_unsafe_globals_in_checkpoint(path)
        except Exception:  # not a zip checkpoint: the first line of torch's message says enough
            pass
        safe = {f"{getattr(g, '__module__', '')}.{getattr(g, '__qualname__', '')}" if not isinstance(g, tuple)
                else g[1] for g in _numpy_safe_globals()}
        asked = [a for a in asked if a not in safe]
        if asked:
            raise CheckpointImportError(
                f"{path}: refused without loading: the pickle references {', '.join(asked[:SHOWN])}, which is "
                "neither a tensor, a plain value nor a numpy array (it could run code). Only state dicts and "
                "their metric entries are accepted") from None
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise CheckpointImportError(f"{path}: not a readable checkpoint (truncated, corrupt, or holding objects "
                                    f"other than tensors, plain values and numpy arrays; {type(exc).__name__}: "
                                    f"{reason})") from None


def _plain(value: Any) -> Any:
    """A source entry as JSON (numpy arrays and scalars become lists and numbers)."""
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, torch.Tensor):
        return value.tolist() if value.numel() <= 1000 else f"tensor of shape {tuple(value.shape)}"
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return repr(value)


def _is_state_dict(obj: Any) -> bool:
    return isinstance(obj, dict) and bool(obj) and all(isinstance(k, str) and isinstance(v, torch.Tensor)
                                                       for k, v in obj.items())


def unwrap(obj: Any, source: str) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """(state dict, container description) from a bare state dict or {'net'|'state_dict'|'model': ...}.

    A ``module.`` prefix (DataParallel) on every key is removed."""
    entries: dict[str, Any] = {}
    if _is_state_dict(obj):
        state, container = obj, "bare state dict"
    elif isinstance(obj, dict) and any(_is_state_dict(obj.get(k)) for k in STATE_KEYS):
        key = next(k for k in STATE_KEYS if _is_state_dict(obj.get(k)))
        state = obj[key]
        entries = {str(k): _plain(v) for k, v in obj.items() if k != key}
        container = f"dict holding the state dict under {key!r}"
    else:
        if isinstance(obj, dict):
            found = ", ".join(f"{k!r} ({type(v).__name__})" for k, v in list(obj.items())[:8]) or "nothing"
            raise CheckpointImportError(f"{source}: expected a state dict (names -> tensors) or a dict holding "
                                        f"one under {', '.join(repr(k) for k in STATE_KEYS)}; found {found}")
        raise CheckpointImportError(f"{source}: expected a state dict or a dict holding one, got "
                                    f"{type(obj).__name__}")
    prefix = None
    with_prefix = [k for k in state if k.startswith("module.")]
    if with_prefix:
        if len(with_prefix) != len(state):
            other = next(k for k in state if not k.startswith("module."))
            raise CheckpointImportError(f"{source}: some keys carry the DataParallel prefix 'module.' and some do "
                                        f"not (e.g. {with_prefix[0]!r} and {other!r})")
        state = {k[len("module."):]: v for k, v in state.items()}
        prefix = "module."
    return dict(state), {"container": container, "prefix_stripped": prefix, "entries": entries}


# --------------------------------------------------------------------------------------------
# What the checkpoint tells: backbone, classes, model options
# --------------------------------------------------------------------------------------------
# (blocks per stage, bottleneck blocks) -> backbone; the tiny backbone has stage widths 16..128.
_BACKBONE_SHAPES = {((1, 1, 1, 1), False): "tiny", ((2, 2, 2, 2), False): "resnet18",
                    ((3, 4, 6, 3), False): "resnet34", ((3, 4, 6, 3), True): "resnet50"}


def infer_backbone(state: dict[str, torch.Tensor], prefix: str, source: str) -> str:
    """The backbone of the full ResNet stored under `prefix` (from its keys and conv1's width)."""
    blocks = []
    for stage in range(1, 5):
        found = {int(m.group(1)) for k in state
                 if (m := re.match(re.escape(f"{prefix}layer{stage}.") + r"(\d+)\.", k))}
        blocks.append(max(found) + 1 if found else 0)
    bottleneck = f"{prefix}layer1.0.conv3.weight" in state
    conv1 = state.get(f"{prefix}conv1.weight")
    name = _BACKBONE_SHAPES.get((tuple(blocks), bottleneck))
    if conv1 is None or name is None or (name == "tiny") != (conv1.shape[0] == 16):
        kind = "bottleneck" if bottleneck else "basic"
        raise CheckpointImportError(
            f"{source}: the ResNet under {prefix!r} has {blocks} blocks per stage ({kind} blocks"
            + (f", conv1 width {conv1.shape[0]}" if conv1 is not None else ", no conv1.weight")
            + "); supported backbones: tiny, resnet18, resnet34, resnet50")
    return name


def _num_classes(state: dict[str, torch.Tensor], key: str, source: str) -> int:
    if key not in state or state[key].dim() != 2:
        raise CheckpointImportError(f"{source}: no identity classifier {key!r} (a 2-d weight); is this a "
                                    "checkpoint of the format given?")
    return int(state[key].shape[0])


@dataclass
class Plan:
    """What to build and how names map: rules are (checkpoint prefix, our prefix) pairs."""

    method: str
    backbone: str
    num_classes: int
    options: dict[str, Any]
    rules: list[tuple[str, str]]
    unused: list[tuple[str, tuple[str, ...]]]  # (group description, checkpoint prefixes)
    notes: list[str] = field(default_factory=list)


_STEM = ("conv1.", "bn1.")
_FRONT = _STEM + ("layer1.", "layer2.")
_BACK = ("layer3.", "layer4.")


def plan_idkl(state: dict[str, torch.Tensor], source: str) -> Plan:
    """models/baseline.py `Baseline` + models/resnet.py `embed_net` of 1KK077/IDKL.

    Three full ResNets: the front (conv1..layer2) of `shared_module_fr.model_sh_fr`, layer3-4 of
    `shared_module_bh.model_sh_bh` and of `special.special_module`; the rest of each copy is
    never run. `decompose` adds mask1/mask2 (our purifier), the heads, and an unused
    `special_att` block; without it the checkpoint is our `baseline`."""
    fr, bh, sp = "backbone.shared_module_fr.model_sh_fr.", "backbone.shared_module_bh.model_sh_bh.", \
        "backbone.special.special_module."
    backbone = infer_backbone(state, fr, source)
    decompose = any(k.startswith(("backbone.mask1.", "backbone.mask2.", "classifier_sp.")) for k in state)
    rules = [(fr + p, "front." + p) for p in _FRONT] + [(bh + p, "shared_back." + p) for p in _BACK]
    rules += [("bn_neck.", "bn_neck."), ("classifier.", "classifier.")]
    unused = [("unused stages of the shared front's ResNet copy (layer3, layer4)", tuple(fr + p for p in _BACK)),
              ("unused stages of the shared back's ResNet copy (conv1, bn1, layer1, layer2)",
               tuple(bh + p for p in _FRONT)),
              ("center-loss centres (a training-only loss state)", ("center_loss.",))]
    if decompose:
        rules += [(sp + p, "specific_back." + p) for p in _BACK]
        rules += [("backbone.IN.", "purifier.instance_norm."),
                  ("backbone.mask1.channel_attention.", "purifier.mask_in."),
                  ("backbone.mask2.channel_attention.", "purifier.mask_f."), ("bn_neck_sp.", "bn_neck_sp."),
                  ("classifier_sp.", "classifier_sp."), ("C_sp_f.", "classifier_ip."),
                  ("D_special.", "modality_head."), ("D_shared_pseu.", "pseudo_modality_head.")]
        unused += [("unused stages of the specific branch's ResNet copy (conv1, bn1, layer1, layer2)",
                    tuple(sp + p for p in _FRONT)),
                   ("unused attention block (special_att)", ("backbone.special_att.",))]
        method = "idkl"
    else:
        unused += [("specific branch built but never run without decompose (ResNet copy, IN, bn_neck_sp)",
                    ("backbone.special.", "backbone.IN.", "bn_neck_sp."))]
        method = "baseline"
    return Plan(method, backbone, _num_classes(state, "classifier.weight", source), {}, rules, unused)


def _agw_non_local(state: dict[str, torch.Tensor], backbone: str, source: str) -> tuple[list[int], str]:
    """Non-local blocks per stage and our agw's `non_local_width` option ("code": 1 channel, "half")."""
    from vireid.methods.agw import AGW_NON_LOCAL
    from vireid.methods.backbones import build_resnet

    found: dict[int, set[int]] = {s: set() for s in range(1, 5)}
    for key in state:
        if m := re.match(r"NL_([1-4])\.(\d+)\.", key):
            found[int(m.group(1))].add(int(m.group(2)))
    counts = [max(found[s]) + 1 if found[s] else 0 for s in range(1, 5)]
    if not any(counts):
        raise CheckpointImportError(
            f"{source}: no non-local blocks (NL_1..NL_4): this checkpoint was trained by the AGW code's "
            "`--method base` (no non-local blocks, average pooling), which our `agw` does not implement")
    with torch.device("meta"):
        base = build_resnet(backbone)
    depths = [len(getattr(base, f"layer{s}")) for s in range(1, 5)]
    expected = [min(n, d) for n, d in zip(AGW_NON_LOCAL, depths)]
    if counts != expected:
        raise CheckpointImportError(f"{source}: non-local blocks per stage {counts}; our agw builds {expected} "
                                    f"for {backbone} (the AGW code's non_layers {list(AGW_NON_LOCAL)})")
    widths, halves = set(), True
    for key, value in state.items():
        if (m := re.match(r"NL_([1-4])\.\d+\.theta\.weight$", key)) and value.dim() == 4:
            widths.add(int(value.shape[0]))
            halves &= int(value.shape[0]) == max(int(value.shape[1]) // 2, 1)
    if not widths:
        raise CheckpointImportError(f"{source}: non-local blocks without a theta.weight (e.g. NL_2.0.theta.weight)")
    if halves:
        return counts, "half"
    if widths == {1}:
        return counts, "code"
    raise CheckpointImportError(f"{source}: the non-local blocks have inner widths {sorted(widths)}; our agw builds "
                                "1 for every block (the AGW code; non_local_width: code) or half of each stage's "
                                "channels (non_local_width: half)")


def plan_agw(state: dict[str, torch.Tensor], source: str) -> Plan:
    """model.py `embed_net` of mangye16/Cross-Modal-Re-ID-baseline (no_local='on', gm_pool='on').

    Three full ResNets: only conv1/bn1 of `visible_module.visible` and `thermal_module.thermal`
    run (our two stems), only layer1-4 of `base_resnet.base` (our trunk); NL_k.i are the
    non-local blocks of stage k, whose `g` is wrapped in a Sequential; `bottleneck` is our BN-neck."""
    vis, ir, base = "visible_module.visible.", "thermal_module.thermal.", "base_resnet.base."
    backbone = infer_backbone(state, base, source)
    counts, width = _agw_non_local(state, backbone, source)
    rules = [(vis + p, "visible_stem." + p) for p in _STEM] + [(ir + p, "infrared_stem." + p) for p in _STEM]
    rules += [(f"{base}layer{s}.", f"layer{s}.") for s in range(1, 5)]
    for stage, n in enumerate(counts):
        for i in range(n):
            src, dst = f"NL_{stage + 1}.{i}.", f"non_local.{stage}.{i}."
            rules += [(src + "g.0.", dst + "g."), (src + "theta.", dst + "theta."), (src + "phi.", dst + "phi."),
                      (src + "W.", dst + "W.")]
    rules += [("bottleneck.", "bn_neck."), ("classifier.", "classifier.")]
    layers = tuple(f"layer{s}." for s in range(1, 5))
    unused = [("per-modality layer1-layer4 of the visible module's ResNet copy", tuple(vis + p for p in layers)),
              ("per-modality layer1-layer4 of the thermal module's ResNet copy", tuple(ir + p for p in layers)),
              ("unused stem of the shared trunk's ResNet copy (conv1, bn1)", tuple(base + p for p in _STEM))]
    notes = [f"non-local inner width: {'half the channels' if width == 'half' else 1} (from theta's shape)"]
    return Plan("agw", backbone, _num_classes(state, "classifier.weight", source), {"non_local_width": width},
                rules, unused, notes)


PLANNERS = {"idkl-official": plan_idkl, "agw-official": plan_agw}


# --------------------------------------------------------------------------------------------
# The strict mapping
# --------------------------------------------------------------------------------------------
def _longest(prefixes: list[tuple[str, str]], key: str, side: int) -> tuple[str, str] | None:
    best = None
    for pair in prefixes:
        if key.startswith(pair[side]) and (best is None or len(pair[side]) > len(best[side])):
            best = pair
    return best


def _names(keys: list[str]) -> str:
    shown = ", ".join(keys[:SHOWN])
    return shown + (f" and {len(keys) - SHOWN} more" if len(keys) > SHOWN else "")


def map_state(plan: Plan, state: dict[str, torch.Tensor], own: dict[str, torch.Tensor],
              source: str) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Our state dict from the checkpoint's; raises naming missing, unexpected and mis-shaped keys."""
    mapped: dict[str, torch.Tensor] = {}
    origin: dict[str, str] = {}
    unused_counts = {group: 0 for group, _ in plan.unused}
    unexpected, shapes, casts = [], [], 0
    for key, value in state.items():
        rule = _longest(plan.rules, key, 0)
        target = rule[1] + key[len(rule[0]):] if rule else None
        if target is not None and target in own:
            mine = own[target]
            if tuple(value.shape) != tuple(mine.shape):
                shapes.append(f"{key} {tuple(value.shape)} -> {target} {tuple(mine.shape)}")
                continue
            if value.dtype != mine.dtype:
                if not (value.is_floating_point() and mine.is_floating_point()):
                    shapes.append(f"{key} dtype {value.dtype} -> {target} {mine.dtype}")
                    continue
                casts += 1
            mapped[target] = value.to(mine.dtype)
            origin[target] = key
            continue
        group = next((g for g, prefixes in plan.unused if key.startswith(prefixes)), None)
        if group is not None and target is None:
            unused_counts[group] += 1
        else:
            unexpected.append(key)
    missing = [k for k in own if k not in mapped]
    if missing or unexpected or shapes:
        lines = []
        if missing:
            expected = []
            for k in missing:
                rule = _longest(plan.rules, k, 1)
                expected.append(f"{k} (from {rule[0] + k[len(rule[1]):]})" if rule else k)
            lines.append(f"{len(missing)} of our parameters/buffers receive no value: {_names(expected)}")
        if unexpected:
            lines.append(f"{len(unexpected)} checkpoint entries match nothing in our {plan.method} model: "
                         f"{_names(unexpected)}")
        if shapes:
            lines.append(f"{len(shapes)} shape mismatches: {_names(shapes)}")
        raise CheckpointImportError(f"{source}: does not map onto our {plan.method} ({plan.backbone}, "
                                    f"{plan.num_classes} classes): " + "; ".join(lines))
    report = {"mapped": len(mapped), "cast_to_our_dtype": casts,
              "unused": [{"group": g, "prefixes": list(p), "count": unused_counts[g]} for g, p in plan.unused
                         if unused_counts[g]]}
    return mapped, report


# --------------------------------------------------------------------------------------------
# Import: file -> model state + provenance
# --------------------------------------------------------------------------------------------
@dataclass
class Imported:
    plan: Plan
    state: dict[str, torch.Tensor]
    provenance: dict[str, Any]


def build_for(plan: Plan, last_stride: int = 1) -> torch.nn.Module:
    from vireid.methods import build_model

    return build_model(plan.method, num_classes=plan.num_classes, backbone=plan.backbone, weights="none",
                       last_stride=last_stride, **plan.options)


def import_checkpoint(path: str | Path, fmt: str, last_stride: int = 1) -> Imported:
    """Read `path` (a checkpoint of the public code `fmt`) and map it onto our model."""
    if fmt not in PLANNERS:
        raise CheckpointImportError(f"unknown checkpoint format {fmt!r}; known formats: {', '.join(FORMATS)}")
    path = Path(path)
    source = str(path)
    raw = load_source(path)
    state, container = unwrap(raw, source)
    plan = PLANNERS[fmt](state, source)
    model = build_for(plan, last_stride)
    mapped, report = map_state(plan, state, model.state_dict(), source)
    model.load_state_dict(mapped, strict=True)  # the mapping is complete; this checks it once more
    provenance = {
        "format": fmt, "source_label": FORMAT_LABELS[fmt], "source_code": FORMAT_SOURCES[fmt],
        "file": str(path.resolve()), "sha256": sha256_of(path), "size_bytes": path.stat().st_size,
        "imported_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "container": container["container"], "prefix_stripped": container["prefix_stripped"],
        "source_entries": container["entries"], "source_tensors": len(state),
        "method": plan.method, "backbone": plan.backbone, "num_classes": plan.num_classes,
        "last_stride": last_stride, "model_options": dict(plan.options), "notes": list(plan.notes), **report,
    }
    return Imported(plan, model.state_dict(), provenance)


def imported_params(imported: Imported, base: Any, name: str) -> Any:
    """`base` params with the model the checkpoint needs; the loss block left at the method's defaults
    (every module the checkpoint holds is then built)."""
    plan, prov = imported.plan, imported.provenance
    model = dataclasses.replace(base.model, method=plan.method, backbone=plan.backbone, weights="none",
                                last_stride=prov["last_stride"], options=dict(plan.options))
    experiment = dataclasses.replace(base.experiment, name=name,
                                     label=f"{name} (imported: {FORMAT_LABELS[prov['format']]})",
                                     ablation_order=None)
    return dataclasses.replace(base, model=model, loss={}, experiment=experiment)


def write_run(imported: Imported, params: Any, out: str | Path) -> Path:
    """Write checkpoint.pt, params.yaml and provenance.json into a new (or empty) folder `out`."""
    from vireid.harness.checkpoint import save_checkpoint
    from vireid.harness.config import dump_params
    from vireid.harness.io import atomic_write_json
    from vireid.harness.runner import CHECKPOINT
    from vireid.harness.tracking import git_commit

    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise CheckpointImportError(f"{out}: exists and is not an empty folder; import into a new folder")
    out.mkdir(parents=True, exist_ok=True)
    prov = dict(imported.provenance, run_params=str(out / "params.yaml"), git_commit=git_commit())
    save_checkpoint(out / CHECKPOINT, {"model": imported.state, "method": imported.plan.method,
                                       "num_classes": imported.plan.num_classes, "params": params.to_dict(),
                                       "imported": prov})
    dump_params(params, out / "params.yaml")
    atomic_write_json(out / PROVENANCE, prov)
    return out
