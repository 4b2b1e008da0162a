"""`vireid eval-features`: evaluate a features file (.npz) under one named protocol.

Prints a table; ``--json OUT`` also writes the full result dict (docs/evaluation.md).
"""
from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    from vireid.harness.evaluation.protocols import protocol_names
    from vireid.harness.evaluation.rerank import VARIANTS

    from vireid.harness.commands.common import add_command

    p = add_command(subparsers, "eval-features", "evaluate a features file (.npz) under a protocol",
                    "Score query/gallery features saved by any code (the `eval-features` .npz format: "
                    "query_/gallery_ feats, ids, cams, paths) under one named protocol, with or without "
                    "re-ranking.",
                    ["vireid eval-features feats.npz --protocol sysu/all/single --perm exp/rand_perm_cam.mat",
                     "vireid eval-features feats.npz --protocol regdb/v2i --rerank --json out.json"])
    p.add_argument("file", help="features .npz (query_/gallery_ feats, ids, cams, paths)")
    p.add_argument("--protocol", required=True, choices=protocol_names(), metavar="NAME",
                   help="one of: " + ", ".join(protocol_names()))
    p.add_argument("--trials", type=int, nargs="+", default=None, metavar="T",
                   help="trial indices (default: every trial of the protocol; SYSU-MM01 has 0..9)")
    p.add_argument("--perm", default=None, metavar="PATH",
                   help="SYSU-MM01 permutation file (the dataset's exp/rand_perm_cam.mat); required for sysu/*")
    p.add_argument("--rerank", action="store_true", help="k-reciprocal re-ranking (off by default)")
    # Defaults: params.yaml's eval block (`--params FILE` reads another), the one source of them.
    p.add_argument("--k1", type=int, default=None, help="re-ranking k1 (default: eval.rerank_params.k1)")
    p.add_argument("--k2", type=int, default=None, help="re-ranking k2 (default: eval.rerank_params.k2)")
    p.add_argument("--lambda", dest="lam", type=float, default=None,
                   help="re-ranking lambda (default: eval.rerank_params.lam)")
    p.add_argument("--rerank-variant", dest="variant", default=None, choices=VARIANTS,
                   help="what re-ranking ranks neighbours by: standard (the distances) or idkl-sysu (the public "
                        "IDKL code's SYSU-MM01 call: neighbours among the queries only); default: "
                        "eval.rerank_params.variant")
    p.add_argument("--device", default="auto", help="distance computation: auto (CUDA if available), cpu, cuda")
    p.add_argument("--max-mib", type=int, default=None, metavar="MIB",
                   help="refuse a features file whose arrays would take more memory (default: "
                        "eval.max_features_mib)")
    p.add_argument("--params", default=None, help="parameter file of the defaults (default: params.yaml)")
    p.add_argument("--json", dest="json_out", default=None, metavar="OUT", help="write the result as JSON")
    p.add_argument("--debug", action="store_true", help="show tracebacks for errors")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from vireid.harness.evaluation.evaluate import evaluate_protocol_arrays, format_results
    from vireid.harness.evaluation.features_file import load_features
    from vireid.harness.evaluation.protocols import ProtocolError, get_protocol
    from vireid.harness.io import atomic_write_json

    from vireid.harness.config import load_params

    cfg = load_params(args.params).eval
    given = {"k1": args.k1, "k2": args.k2, "lam": args.lam, "variant": args.variant}
    rerank = {key: getattr(cfg.rerank_params, key) if value is None else value for key, value in given.items()}
    max_mib = cfg.max_features_mib if args.max_mib is None else args.max_mib
    protocol = get_protocol(args.protocol)
    if protocol.needs_perm and args.perm is None:
        raise ProtocolError(f"{protocol.name} draws its galleries from the official permutation file: "
                            f"pass --perm PATH (the dataset's {protocol.perm_file})")
    arrays = load_features(args.file, max_bytes=max_mib << 20)
    try:
        result = evaluate_protocol_arrays(arrays, protocol.name, trials=args.trials, rerank=args.rerank,
                                          **rerank, perm=args.perm, device=args.device)
    except ProtocolError as exc:
        raise ProtocolError(f"{args.file}: {exc}") from None
    print(format_results([result]), end="")
    if args.json_out:
        atomic_write_json(args.json_out, result)
        print(f"wrote {args.json_out}")
    return 0
