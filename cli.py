"""The `blockspec` command line.

A refused spec prints its problems, without a traceback, and exits 2. `validate`, `render` and
`list` never import TensorFlow, so they answer in well under a second.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from blockspec import __version__
from blockspec.builder.errors import SpecError
from blockspec.builder.load import Limits, parse_override

EXAMPLES = {
    "validate": "blockspec validate specs/googlenet.yaml my_net.yaml",
    "build": "blockspec build resnet50 --set vars.classes=10 --set input=[64,64,3] --save r50.keras",
    "summary": "blockspec summary alexnet vgg16 googlenet resnet50",
    "render": "blockspec render googlenet --set vars.classes=10",
    "list": "blockspec list",
    "train": "blockspec train digits_googlenet --set train.epochs=2 --out runs/try1",
    "evaluate": "blockspec evaluate runs/digits_googlenet --tta flip,crops",
    "tune": "blockspec tune specs/examples/digits_tune.yaml --out runs/tune1",
    "schema": "blockspec schema > blockspec.schema.json",
    "plot": "blockspec plot googlenet -o googlenet.png",
    "diff": "blockspec diff resnet50 resnet101",
    "init": "blockspec init my_net.yaml --from resnet18",
    "bench": "blockspec bench resnet50 --batch 64 --steps 20",
}


def _overrides(items: list[str] | None) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in items or []:
        key, value = parse_override(item)
        out[key] = value
    return out


def _limits(items: list[str] | None) -> Limits:
    limits = Limits()
    for item in items or []:
        key, _, value = item.partition("=")
        if not hasattr(limits, key) or not value.isdigit():
            names = ", ".join(limits.__dataclass_fields__)
            raise SpecError(f"--limit takes NAME=INTEGER, NAME one of {names}. Received: {item!r}")
        setattr(limits, key, int(value))
    return limits


def _spec_args(parser: argparse.ArgumentParser, many: bool = False) -> None:
    parser.add_argument(
        "spec", nargs="+" if many else None, help="a spec file or a zoo name (see `blockspec list`)"
    )
    parser.add_argument(
        "--set",
        action="append",
        metavar="KEY=VALUE",
        help="override a dotted key; VALUE is YAML (repeatable)",
    )
    parser.add_argument(
        "--limit",
        action="append",
        metavar="NAME=N",
        help="raise a safety limit, e.g. max_steps=50000",
    )


def _quiet_tensorflow() -> None:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def cmd_validate(args) -> int:
    from blockspec.builder.resolve import resolve_spec

    failed = 0
    limits = _limits(args.limit)
    for spec in args.spec:
        try:
            resolved = resolve_spec(spec, _overrides(args.set), limits=limits)
        except SpecError as e:
            failed += 1
            print(f"FAIL {spec}: {e}", file=sys.stderr)
            continue
        steps = _count_steps(resolved.network)
        spaces = (
            f", {len(resolved.hyperparameters)} search spaces" if resolved.hyperparameters else ""
        )
        print(f"ok   {spec}: {steps} steps, {len(resolved.outputs)} outputs{spaces}")
    return 2 if failed else 0


def _count_steps(steps) -> int:
    return sum(1 + sum(_count_steps(c) for c in s.children) for s in steps)


def _build(spec: str, args, inference: bool = False):
    _quiet_tensorflow()
    from blockspec.builder.compile import compile_spec
    from blockspec.builder.resolve import resolve_spec

    resolved = resolve_spec(spec, _overrides(args.set), limits=_limits(args.limit))
    return compile_spec(resolved, inference=inference)


def cmd_build(args) -> int:
    built = _build(args.spec, args, inference=args.inference)
    built.model.summary(line_length=min(120, max(80, _columns())))
    if args.save:
        built.model.save(args.save)
        print(f"saved {args.save}")
    return 0


def _columns() -> int:
    import shutil

    return shutil.get_terminal_size((100, 24)).columns


def cmd_summary(args) -> int:
    from blockspec.views.summary import human, references, stats
    from rich.console import Console
    from rich.table import Table

    console = Console(width=max(80, _columns()))
    builts = [_build(spec, args) for spec in args.spec]
    all_stats = [stats(built) for built in builts]
    if len(all_stats) == 1:
        s = all_stats[0]
        refs = references(s.name)
        published = refs.get("steps", {})
        caption = f"published: {refs['source']} (params / ops, as printed)" if refs else None
        table = Table(title=f"{s.name}", show_lines=False, caption=caption)
        columns = ["step", "type", "output shape", "neurons", "params", "mult-adds"]
        if published:
            columns.append("published")
        for column in columns:
            table.add_column(
                column,
                justify="left" if column in ("step", "type", "output shape") else "right",
                overflow="fold",  # long step names wrap rather than lose their end
            )
        for step in s.steps:
            shape = "x".join(str(d) for d in step.shape)
            row = [
                step.name,
                step.type,
                shape,
                f"{step.neurons:,}",
                f"{step.params:,}",
                human(step.madds),
            ]
            if published:
                ref = published.get(step.name) or {}
                row.append(f"{ref.get('params', '')} / {ref.get('ops', '')}" if ref else "")
            table.add_row(*row)
        console.print(table)
    table = Table(title="totals" if len(all_stats) == 1 else "side by side")
    table.add_column("")
    for s in all_stats:
        table.add_column(s.name, justify="right")
    rows = [
        ("parameters", lambda s: f"{s.params:,}"),
        ("trainable", lambda s: f"{s.trainable:,}"),
        ("conv parameters", lambda s: f"{s.conv_params:,}"),
        ("FC parameters", lambda s: f"{s.fc_params:,}"),
        ("FC / conv", lambda s: f"{s.fc_params / s.conv_params:.2f}x" if s.conv_params else "-"),
        ("multiply-adds", lambda s: human(s.madds)),
        ("depth (weighted layers)", lambda s: str(s.depth)),
        ("Keras layers", lambda s: str(s.layers)),
    ]
    if any(s.deployed_params != s.params for s in all_stats):
        # Train-only heads (GoogLeNet's aux classifiers) are not part of the deployed network.
        rows[4:4] = [
            ("deployed parameters", lambda s: f"{s.deployed_params:,}"),
            ("deployed FC parameters", lambda s: f"{s.deployed_fc_params:,}"),
        ]
    for label, fn in rows:
        table.add_row(label, *[fn(s) for s in all_stats])
    console.print(table)
    if args.by_block:
        for built, s in zip(builts, all_stats, strict=True):
            console.print(_by_block_table(built, s))
    return 0


def _by_block_table(built, totals):
    from blockspec.views.summary import by_block, human
    from rich.table import Table

    table = Table(title=f"{totals.name}: by block")
    for column in ("block", "kind", "uses", "params", "%", "mult-adds", "%"):
        table.add_column(column, justify="left" if column in ("block", "kind") else "right")

    def share(part: int, whole: int) -> str:
        return f"{100 * part / whole:.1f}" if whole else "-"

    for group in by_block(built):
        table.add_row(
            group.name,
            group.kind,
            str(group.count),
            f"{group.params:,}",
            share(group.params, totals.params),
            human(group.madds),
            share(group.madds, totals.madds),
        )
    return table


def cmd_render(args) -> int:
    from blockspec.builder.resolve import resolve_spec
    from blockspec.views.render import render

    print(render(resolve_spec(args.spec, _overrides(args.set), limits=_limits(args.limit))), end="")
    return 0


def cmd_schema(args) -> int:
    from blockspec.views.schema import schema_text

    text = schema_text()
    if args.output:
        with open(args.output, "w", encoding="utf-8") as f:
            f.write(text)
        print(f"wrote {args.output}", file=sys.stderr)
    else:
        sys.stdout.write(text)
    return 0


def cmd_plot(args) -> int:
    from blockspec.builder.resolve import resolve_spec
    from blockspec.views.plot import plot_graph, require_dot, write_plot

    resolved = resolve_spec(args.spec, _overrides(args.set), limits=_limits(args.limit))
    output = args.output or f"{resolved.name}.png"
    if not output.endswith((".dot", ".gv")):
        require_dot()  # before a slow build, not after
    built = None
    if args.expand or args.shapes:
        _quiet_tensorflow()
        from blockspec.builder.compile import compile_spec

        built = compile_spec(resolved)
    graph = plot_graph(resolved, built, expand=args.expand, direction=args.direction)
    print(f"wrote {write_plot(graph, output)}")
    return 0


def cmd_diff(args) -> int:
    from blockspec.builder.resolve import resolve_spec
    from blockspec.views.diff import diff_specs, stats_rows

    limits = _limits(args.limit)
    overrides = _overrides(args.set)
    a = resolve_spec(args.a, overrides, limits=limits)
    b = resolve_spec(args.b, {**overrides, **_overrides(args.set_b)}, limits=limits)
    labels = (args.a, args.b) if args.a != args.b else (f"{args.a} (A)", f"{args.b} (B)")
    result = diff_specs(a, b, labels)
    if result.same:
        print(f"no differences: {labels[0]} and {labels[1]} resolve to the same spec")
    elif args.unified:
        _print_diff(result.unified(args.context))
    else:
        width = max(80, _columns())
        print(f"A = {labels[0]}\nB = {labels[1]}")
        _print_diff([line for change in result.changes for line in change.lines(width)])
        counts = result.counts()
        legend = {"changed": "changed (~)", "removed": "only in A (-)", "added": "only in B (+)"}
        print(", ".join(f"{n} {legend[kind]}" for kind, n in counts.items() if n))
    if args.params:
        from rich.console import Console
        from rich.table import Table

        _quiet_tensorflow()
        from blockspec.builder.compile import compile_spec

        table = Table(title="built")
        for column, justify in (("", "left"), ("A", "right"), ("B", "right"), ("B - A", "right")):
            table.add_column(column, justify=justify)
        for row in stats_rows(compile_spec(a), compile_spec(b)):
            table.add_row(*row)
        Console(width=max(80, _columns())).print(table)
    return 0 if result.same else 1


def _print_diff(lines: list[str]) -> None:
    if not sys.stdout.isatty():
        print("\n".join(lines))
        return
    from rich.console import Console
    from rich.text import Text

    console = Console(highlight=False, soft_wrap=True)
    styles = {"+": "green", "-": "red", "@": "cyan", "~": "yellow"}
    for line in lines:
        style = "bold" if line.startswith(("+++", "---")) else styles.get(line[:1], "")
        console.print(Text(line, style=style))


def cmd_init(args) -> int:
    from blockspec.views.scaffold import scaffold

    text = scaffold(args.file, args.from_spec)
    if args.file == "-":
        sys.stdout.write(text)
        return 0
    if os.path.exists(args.file) and not args.force:
        print(f"error: {args.file} exists; add --force to replace it", file=sys.stderr)
        return 2
    with open(args.file, "w", encoding="utf-8") as f:
        f.write(text)
    print(f"wrote {args.file}; next: blockspec validate {args.file}")
    return 0


def cmd_list(args) -> int:
    from blockspec.builder import registry
    from blockspec.builder.load import SPECS_DIR, parse_yaml, read_text
    from rich.console import Console
    from rich.table import Table

    console = Console(width=max(80, _columns()))
    table = Table(title="zoo specs")
    table.add_column("name")
    table.add_column("description")
    for path in [
        *sorted(SPECS_DIR.glob("*.yaml")),
        *sorted((SPECS_DIR / "examples").glob("*.yaml")),
    ]:
        try:
            data = parse_yaml(read_text(path), str(path)).data or {}
        except SpecError:
            data = {}
        text = " ".join(str(data.get("description", "")).split())
        table.add_row(path.stem, text[:110])
    console.print(table)
    table = Table(title="step types")
    table.add_column("type")
    table.add_column("kind")
    table.add_column("does")
    for name, entry in sorted(registry.all_types().items(), key=lambda kv: (kv[1].kind, kv[0])):
        table.add_row(name, entry.kind, entry.summary_line())
    console.print(table)
    console.print("Any keras.layers class works too, by its exact name (e.g. Conv2DTranspose).")
    return 0


def cmd_train(args) -> int:
    _quiet_tensorflow()
    from blockspec.training.commands import train_command

    return train_command(
        args.spec,
        _overrides(args.set),
        args.out,
        args.resume,
        limits=_limits(args.limit),
        overwrite=args.overwrite,
    )


def cmd_evaluate(args) -> int:
    _quiet_tensorflow()
    from blockspec.training.commands import evaluate_command

    tta = [t for t in args.tta.split(",") if t] if args.tta else None
    return evaluate_command(args.run_dir, tta)


def cmd_tune(args) -> int:
    _quiet_tensorflow()
    from blockspec.tuning.commands import tune_command

    return tune_command(
        args.spec,
        _overrides(args.set),
        args.out,
        args.overwrite,
        chief=args.chief,
        worker=args.worker,
        oracle=args.oracle,
        limits=_limits(args.limit),
    )


def cmd_bench(args) -> int:
    _quiet_tensorflow()
    import json

    from blockspec.views.bench import bench_spec

    try:
        report = bench_spec(
            args.spec,
            _overrides(args.set),
            batch=args.batch,
            steps=args.steps,
            warmup=args.warmup,
            precision=args.precision,
            jit=args.jit,
            limits=_limits(args.limit),
        )
    except ValueError as e:
        if isinstance(e, SpecError):
            raise
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(json.dumps(report.to_dict(), indent=2) if args.json else report.text())
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="blockspec",
        description="Declarative architecture builder for Keras 3: YAML specs of reusable blocks -> Keras models.",
        epilog="Example: blockspec validate specs/googlenet.yaml",
    )
    parser.add_argument("--version", action="version", version=f"blockspec {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, help_text: str, fn):
        p = sub.add_parser(
            name, help=help_text, description=help_text, epilog=f"Example: {EXAMPLES[name]}"
        )
        p.set_defaults(fn=fn)
        return p

    p = command("validate", "load and check specs; print every error; exit 2 on any", cmd_validate)
    _spec_args(p, many=True)
    p = command("build", "build a spec and print the Keras summary; optionally save it", cmd_build)
    _spec_args(p)
    p.add_argument("--save", metavar="F.keras", help="save the model (.keras)")
    p.add_argument("--inference", action="store_true", help="drop train-only outputs (aux heads)")
    p = command(
        "summary",
        "per step: output shape, neurons, parameters, multiply-adds; several specs side by side",
        cmd_summary,
    )
    _spec_args(p, many=True)
    p.add_argument(
        "--by-block",
        action="store_true",
        help="also group parameters and multiply-adds by block type",
    )
    p = command(
        "render",
        "print the resolved spec as YAML (extends, imports, vars, defaults applied)",
        cmd_render,
    )
    _spec_args(p)
    p = command("schema", "print the JSON Schema of the spec language, for editors", cmd_schema)
    p.add_argument("-o", "--output", metavar="FILE", help="write it to FILE instead of stdout")
    p = command("plot", "draw the network: blocks as boxes, branches, merges, aux heads", cmd_plot)
    _spec_args(p)
    p.add_argument(
        "-o", "--output", metavar="F.png", help="png, svg, pdf or dot (default <name>.png)"
    )
    p.add_argument("--expand", action="store_true", help="draw the Keras layers inside each block")
    p.add_argument("--shapes", action="store_true", help="label each step with its output shape")
    p.add_argument(
        "--direction", choices=("TB", "LR"), default="TB", help="top to bottom or left to right"
    )
    p = command("diff", "what differs between two specs, resolved; exit 1 if they differ", cmd_diff)
    p.add_argument("a", metavar="A", help="a spec file or a zoo name")
    p.add_argument("b", metavar="B", help="a spec file or a zoo name")
    p.add_argument(
        "--set", action="append", metavar="KEY=VALUE", help="override a key in both (repeatable)"
    )
    p.add_argument("--set-b", action="append", metavar="KEY=VALUE", help="override a key in B only")
    p.add_argument("--limit", action="append", metavar="NAME=N", help="raise a safety limit")
    p.add_argument("--unified", action="store_true", help="a line diff of the resolved YAML")
    p.add_argument("--context", type=int, default=3, metavar="N", help="with --unified: context")
    p.add_argument("--params", action="store_true", help="also build both and compare parameters")
    p = command("init", "write a new spec with comments, to start from", cmd_init)
    p.add_argument("file", nargs="?", default="my_net.yaml", help="the new file (- for stdout)")
    p.add_argument(
        "--from", dest="from_spec", metavar="SPEC", help="start from a zoo spec (extends)"
    )
    p.add_argument("--force", action="store_true", help="replace an existing file")
    command("list", "list the zoo specs and step types", cmd_list)
    p = command("train", "fit a spec as its `train` section says", cmd_train)
    _spec_args(p)
    p.add_argument("--out", metavar="DIR", help="run folder (default runs/<spec name>)")
    p.add_argument(
        "--resume", action="store_true", help="continue a stopped run from its last completed epoch"
    )
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="replace the run in --out (deletes only the files blockspec wrote there)",
    )
    p = command("evaluate", "evaluate a run, with and without test-time augmentation", cmd_evaluate)
    p.add_argument("run_dir", metavar="DIR")
    p.add_argument("--tta", metavar="LIST", help="comma-separated: flip, crops")
    p = command("tune", "search the spec's search spaces as its `tune` section says", cmd_tune)
    _spec_args(p)
    p.add_argument("--out", metavar="DIR", help="search folder (default runs/<spec name>-tune)")
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="start afresh (default: resume the folder's search)",
    )
    role = p.add_mutually_exclusive_group()
    role.add_argument(
        "--chief", action="store_true", help="serve the oracle to workers (distributed search)"
    )
    role.add_argument(
        "--worker", type=int, metavar="N", help="run trials for the chief as worker N"
    )
    p.add_argument(
        "--oracle", metavar="HOST:PORT", help="the chief's address (default 127.0.0.1:8000)"
    )
    p = command(
        "bench",
        "training and inference images/s and peak memory of a spec on this device "
        "(GPU default: mixed precision + XLA)",
        cmd_bench,
    )
    _spec_args(p)
    p.add_argument(
        "--batch", type=int, metavar="N", help="images per step (default train.batch_size or 32)"
    )
    p.add_argument("--steps", type=int, default=20, metavar="N", help="timed steps (default 20)")
    p.add_argument(
        "--warmup", type=int, default=3, metavar="N", help="untimed steps first (default 3)"
    )
    p.add_argument(
        "--precision",
        choices=("auto", "float32", "mixed_float16", "mixed_bfloat16"),
        default="auto",
        help="dtype policy; auto = mixed_float16 on GPU, float32 on CPU",
    )
    p.add_argument(
        "--jit",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="XLA-compile the steps (default: on with a GPU, off on CPU)",
    )
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.fn(args) or 0)
    except SpecError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `blockspec render x | head`
        sys.stderr.close()
        return 0


if __name__ == "__main__":
    sys.exit(main())
