"""`vireid data`: check a dataset, generate synthetic data, prepare the cache, draw a contact sheet."""
from __future__ import annotations

import argparse
import json
import warnings
from pathlib import Path
from typing import Any


def register(subparsers: argparse._SubParsersAction) -> None:
    from vireid.harness.commands.common import add_command, add_params_args, bounded_int

    p = add_command(subparsers, "data", "dataset tools: check, synth, prepare, audit, contact-sheet",
                    "Validate datasets, write manifests, generate synthetic data and build the uint8 image "
                    "cache that training reads.",
                    ["vireid data prepare --data synth-sysu",
                     "vireid data check --dataset sysu --root /data/SYSU-MM01"])
    sub = p.add_subparsers(dest="data_command", metavar="ACTION")
    sub.required = True

    check = add_command(sub, "check", "validate a dataset on disk and write its manifest",
                        "Read the dataset's real layout, decode every image, check index files and identity "
                        "splits, then write the manifest (records + sidecar JSON).",
                        ["vireid data check --dataset sysu --root /data/SYSU-MM01",
                         "vireid data check --dataset regdb --root /data/RegDB --split 2 --out regdb2.parquet"])
    check.add_argument("--dataset", required=True, choices=_datasets(), help="layout of the dataset")
    check.add_argument("--root", required=True, metavar="DIR", help="dataset root folder")
    check.add_argument("--out", default=None, metavar="FILE",
                       help="manifest file, .parquet or .csv (default: <root>/manifest.parquet)")
    check.add_argument("--split", type=int, default=1, help="RegDB trial 1..10 (default 1)")
    check.add_argument("--workers", type=bounded_int(1, 1024), default=2, help="threads decoding images (default 2)")
    check.add_argument("--max-image-pixels", type=bounded_int(1, 2**62), default=None, metavar="N",
                       help="refuse images of more pixels before decoding them (default 25000000)")
    check.add_argument("--debug", action="store_true", help="show tracebacks for errors")
    check.set_defaults(handler=run_check)

    synth = add_command(sub, "synth", "write a synthetic cross-modal dataset in a real layout",
                        "Generate synthetic identities seen by visible and infrared cameras, written exactly as "
                        "the real dataset is laid out. Deterministic per seed. Each setting defaults to "
                        "params.yaml's data.synthetic block (--data NAME: a dataset overlay's); a flag is "
                        "--set data.synthetic.<name>=VALUE, checked the same way.",
                        ["vireid data synth --layout sysu --out data/my-synth --seed 0 --ids 200",
                         "vireid data synth --layout regdb --out data/synth-regdb --data synth-pretrain"])
    synth.add_argument("--layout", required=True, choices=_datasets(), help="which real layout to write")
    synth.add_argument("--out", required=True, metavar="DIR", help="output folder (new, empty, or an older "
                                                                   "synthetic set, which is replaced)")
    add_synth_flags(synth)
    add_params_args(synth, experiment=False)
    synth.set_defaults(handler=run_synth)

    prep = add_command(sub, "prepare", "(synthesise,) validate and cache the dataset of the params",
                       "Resolve params.yaml (+ --data/--experiment/--set), generate the synthetic dataset if "
                       "`data.synthetic.enabled`, write <prepared_dir>/manifest.parquet and the uint8 image cache. "
                       "Does nothing when everything is up to date.",
                       ["vireid data prepare --data sysu", "vireid data prepare --data synth-sysu --for-study"])
    add_params_args(prep)
    prep.add_argument("--for-study", action="store_true",
                      help="also cache every other image size that a variant of `study.variants` trains at on "
                           "this dataset (e.g. AGW's 288x144 recipe beside IDKL's 384x144)")
    prep.set_defaults(handler=run_prepare)

    aud = add_command(sub, "audit", "reference points of a prepared dataset: chance, pixel matchers, cue shuffle",
                      "Measure on the prepared test split what a trained model must beat: chance, nearest "
                      "neighbours on raw pixels and gradients, a closed-form linear cross-modal matcher, "
                      "same-modality retrieval and (synthetic data) a cue-shuffle table. Writes audit.json and "
                      "audit.md.",
                      ["vireid data audit --data synth-sysu --out reports/audit/synth-sysu"])
    add_params_args(aud)
    aud.add_argument("--out", default=None, metavar="DIR", help="output folder (default reports/audit/<data.name>)")
    aud.add_argument("--doc", default=None, metavar="FILE",
                     help="also write the tables into FILE's audit region (between '<!-- vireid:audit:begin' and "
                          "'<!-- vireid:audit:end' lines), e.g. docs/synthetic-dataset.md")
    aud.add_argument("--from-audit", default=None, metavar="DIR",
                     help="with --doc: copy DIR/audit.md into the region, measuring nothing")
    aud.set_defaults(handler=run_audit)

    sheet = add_command(sub, "contact-sheet", "draw a few identities in both modalities into a PNG",
                        "Draw a few identities of a dataset on disk, visible and infrared side by side, into one "
                        "PNG (the README's sample images).",
                        ["vireid data contact-sheet --root data/prepared/synth-sysu/dataset --out sheet.png"])
    sheet.add_argument("--root", required=True, metavar="DIR", help="dataset root folder")
    sheet.add_argument("--dataset", default="sysu", choices=_datasets(), help="layout (default sysu)")
    sheet.add_argument("--out", default="reports/assets/synthetic_contact_sheet.png", metavar="FILE")
    sheet.add_argument("--ids", type=int, default=6, help="identities to show (default 6)")
    sheet.add_argument("--per-modality", type=int, default=4, help="images per modality (default 4)")
    sheet.add_argument("--split", type=int, default=1, help="RegDB trial (default 1)")
    sheet.add_argument("--debug", action="store_true", help="show tracebacks for errors")
    sheet.set_defaults(handler=run_contact_sheet)


def _datasets() -> list[str]:
    from vireid.datasets.registry import list_datasets

    return list_datasets()


def format_counts(counts: dict[str, Any]) -> str:
    lines = [f"{'split':6s} {'modality':9s} {'ids':>6s} {'images':>8s}"]
    for split in ("train", "test"):
        block = counts.get(split, {})
        for modality in ("visible", "infrared"):
            c = block.get(modality, {"ids": 0, "images": 0})
            lines.append(f"{split:6s} {modality:9s} {c['ids']:6d} {c['images']:8d}")
        lines.append(f"{split:6s} {'all':9s} {block.get('ids', 0):6d} {block.get('images', 0):8d}")
    return "\n".join(lines)


def _print_warnings(messages: list[str]) -> None:
    for message in messages:
        print(f"warning: {message}")


def run_check(args: argparse.Namespace) -> int:
    from vireid.datasets.errors import DatasetWarning
    from vireid.datasets.images import pixel_limit
    from vireid.datasets.manifest import build_manifest, write_manifest

    out = Path(args.out) if args.out else Path(args.root) / "manifest.parquet"
    with warnings.catch_warnings(), pixel_limit(args.max_image_pixels):
        warnings.simplefilter("ignore", DatasetWarning)  # printed below, once, without a source line
        manifest = build_manifest(args.dataset, args.root, split=args.split, workers=args.workers, progress=True)
    records_file, sidecar = write_manifest(manifest, out)
    print(f"{args.dataset} at {manifest.root}: {manifest.counts['images']} images, "
          f"{manifest.counts['ids']} identities")
    print(format_counts(manifest.counts))
    _print_warnings(manifest.warnings)
    print(f"fingerprint: {manifest.fingerprint}")
    print(f"wrote {records_file} and {sidecar}")
    return 0


# `vireid data synth` flags: one per data.synthetic field (the generator's settings), named after it.
SYNTH_FLAG_NAMES = {"n_ids": ("--ids", "--n-ids")}


def add_synth_flags(parser: argparse.ArgumentParser) -> None:
    """A flag per `data.synthetic` field (less `enabled`), so a new generator setting needs no edit here."""
    import dataclasses

    from vireid.harness.config import SynthConfig

    for f in dataclasses.fields(SynthConfig):
        if f.name != "enabled":
            flags = SYNTH_FLAG_NAMES.get(f.name, ("--" + f.name.replace("_", "-"),))
            parser.add_argument(*flags, dest=f"synth_{f.name}", default=None, metavar="VALUE",
                                help=f"default: params.yaml data.synthetic.{f.name}")


def synth_flag_overrides(args: argparse.Namespace) -> list[str]:
    prefix = "synth_"
    return [f"data.synthetic.{key[len(prefix):]}={value}" for key, value in vars(args).items()
            if key.startswith(prefix) and value is not None]


def run_synth(args: argparse.Namespace) -> int:
    from vireid.datasets.synth import SynthSettings, ensure_synthetic
    from vireid.harness.commands.common import resolve
    from vireid.harness.data import synth_settings

    params = resolve(args, extra=synth_flag_overrides(args))
    settings = SynthSettings.from_dict(synth_settings(params.data.synthetic))
    summary = ensure_synthetic(args.out, args.layout, settings)
    if summary is None:
        print(f"{args.out}: already holds this synthetic dataset (same settings); nothing to do")
    else:
        print(f"wrote {summary['images']} images of {summary['ids']} identities in the {args.layout} layout to "
              f"{summary['root']} in {summary['seconds']:.1f} s")
    return 0


def run_prepare(args: argparse.Namespace) -> int:
    from vireid.datasets.errors import DatasetWarning
    from vireid.harness.commands.common import resolve
    from vireid.harness.data import prepare_from_params

    params = resolve(args)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DatasetWarning)
        summary = prepare_from_params(params.data)
        if getattr(args, "for_study", False):
            sizes = {(params.data.image_height, params.data.image_width)}
            for variant in params.study.variants:
                other = resolve(argparse.Namespace(**{**vars(args), "experiment": variant})).data
                size = (other.image_height, other.image_width)
                if size not in sizes:
                    sizes.add(size)
                    extra = prepare_from_params(other)
                    print(f"cache for {variant}: {extra['cache']} ({size[0]}x{size[1]})")
    if summary["generated"]:
        print(f"generated {summary['generated']['images']} synthetic images at {summary['root']}")
    manifest_state = "reused" if summary["manifest_reused"] else "written"
    cache_state = "reused" if summary["cache_reused"] else "built"
    if summary.get("cache_rebuilt_because"):
        cache_state = f"rebuilt ({summary['cache_rebuilt_because']})"
    print(f"{summary['dataset']} at {summary['root']}: {summary['images']} images")
    print(format_counts(summary["counts"]))
    _print_warnings(summary["warnings"])
    print(f"manifest {manifest_state}: {summary['manifest']}")
    print(f"cache {cache_state}: {summary['cache']} ({summary['size'][0]}x{summary['size'][1]})")
    print(f"fingerprint: {summary['fingerprint']}  ({summary['seconds']:.1f} s)")
    return 0


def run_audit(args: argparse.Namespace) -> int:
    from vireid.harness.audit import audit, audit_markdown
    from vireid.harness.commands.common import resolve
    from vireid.harness.data import load_prepared
    from vireid.harness.io import atomic_write_text

    from vireid.harness.report.summary import check_readme, write_readme

    if args.doc is not None:
        check_readme(args.doc, "audit")
    if args.from_audit is not None:
        if args.doc is None:
            raise ValueError("--from-audit needs --doc FILE")
        text = (Path(args.from_audit) / "audit.md").read_text(encoding="utf-8")
        write_readme(args.doc, text, "audit")
        print(f"wrote the audit region of {args.doc} from {Path(args.from_audit) / 'audit.md'}")
        return 0
    params = resolve(args)
    backbone = None
    if str(params.model.weights) not in ("none", ""):  # the runs' starting point, measured untrained
        import torch

        if params.train.threads:
            torch.set_num_threads(params.train.threads)
        backbone = {"weights": params.model.weights, "arch": params.model.backbone,
                    "last_stride": params.model.last_stride}
    result = audit(load_prepared(params.data), params.protocols(), backbone)
    out = Path(args.out or Path("reports") / "audit" / params.data.name)
    out.mkdir(parents=True, exist_ok=True)
    text = audit_markdown(result)
    atomic_write_text(out / "audit.json", json.dumps(result, indent=2) + "\n")
    atomic_write_text(out / "audit.md", text)
    print(text, end="")
    print(f"wrote {out / 'audit.json'} and {out / 'audit.md'}")
    if args.doc is not None:
        write_readme(args.doc, text, "audit")
        print(f"wrote the audit region of {args.doc}")
    return 0


def run_contact_sheet(args: argparse.Namespace) -> int:
    from vireid.datasets.contact_sheet import contact_sheet

    out = contact_sheet(args.root, args.out, n_ids=args.ids, dataset=args.dataset, per_modality=args.per_modality,
                        split=args.split)
    print(f"wrote {out}")
    return 0
