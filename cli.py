"""The `blockspec` command line: parse the arguments, run one command, map errors to exit codes.

Each command is two functions side by side, `_args_<name>(parser)` (its arguments) and
`cmd_<name>(args)` (what it does), and one row of `COMMANDS`: adding a flag is one line in its
`_args_` function, adding a command two functions and a row. Errors are mapped to exit codes in
one place, `EXIT_CODES`; none reaches the user as a traceback.

Every command checks what needs no TensorFlow first (the spec exists and validates, the options
make sense) and only then imports TensorFlow, quietly unless `-v` is given. `validate`, `render`,
`list`, `schema`, `init` and `diff` never import it.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from blockspec import __version__
from blockspec.builder.errors import SpecError, clip
from blockspec.builder.weights import WeightsError
from blockspec.cli_support import (
    build_resolved,
    full_lines,
    import_tensorflow,
    keras_file,
    limits_of,
    make_console,
    override_args,
    page_columns,
    parse_overrides,
    plural,
    resolve_args,
    set_item,
    sigterm_interrupts,
    spec_args,
)
from blockspec.errors import MissingTool, Terminated, UsageError
from blockspec.training.errors import TrainingError

# The whole error hierarchy a user can meet, and what each exits with. `TrainingError` covers
# its `DataError`; `GraphvizMissing` is a `MissingTool`. Anything else is a bug: one line and
# exit 1 (`-v`: the traceback).
EXIT_CODES: tuple[tuple[type[BaseException], int], ...] = (
    (SpecError, 2),
    (UsageError, 2),
    (MissingTool, 2),
    (TrainingError, 2),
    (WeightsError, 2),
    (Terminated, 143),
    (KeyboardInterrupt, 130),
)

# ------------------------------------------------------------------ spec commands (no TensorFlow)


def _args_validate(p: argparse.ArgumentParser) -> None:
    spec_args(p, many=True)
    p.add_argument(
        "--shapes",
        action="store_true",
        help="also build each model symbolically (no weights allocated; imports TensorFlow) "
        "and check every step's shapes and each output against its loss",
    )


def cmd_validate(args) -> int:
    failed = 0
    for spec in args.spec:
        try:
            resolved = resolve_args(spec, args)
        except SpecError as e:
            failed += 1
            print(f"FAIL {spec}: {e}", file=sys.stderr)
            continue
        if args.shapes:
            import_tensorflow(args)
            from blockspec.builder.shapes import check_shapes

            problems = check_shapes(resolved)
            if problems:
                failed += 1
                print(f"FAIL {spec}: {SpecError(problems)}", file=sys.stderr)
                continue
        counts = [
            plural(_count_steps(resolved.network), "step"),
            plural(len(resolved.outputs), "output"),
        ]
        if resolved.hyperparameters:
            counts.append(plural(len(resolved.hyperparameters), "search space"))
        print(f"ok   {spec}: {', '.join(counts)}")
        for warning in resolved.warnings:
            print(f"warning: {warning}", file=sys.stderr)
    return 2 if failed else 0


def _count_steps(steps) -> int:
    return sum(1 + sum(_count_steps(c) for c in s.children) for s in steps)


def _args_render(p: argparse.ArgumentParser) -> None:
    spec_args(p)


def cmd_render(args) -> int:
    from blockspec.views.render import render

    print(render(resolve_args(args.spec, args)), end="")
    return 0


def _args_schema(p: argparse.ArgumentParser) -> None:
    p.add_argument("-o", "--output", metavar="FILE", help="write it to FILE instead of stdout")


def cmd_schema(args) -> int:
    from blockspec.views.schema import schema_text

    text = schema_text()
    if args.output:
        Path(args.output).write_text(text, encoding="utf-8")
        print(f"wrote {args.output}", file=sys.stderr)
    else:
        sys.stdout.write(text)
    return 0


def _args_init(p: argparse.ArgumentParser) -> None:
    p.add_argument("file", nargs="?", default="my_net.yaml", help="the new file (- for stdout)")
    p.add_argument(
        "--from", dest="from_spec", metavar="SPEC", help="start from a zoo spec (extends)"
    )
    p.add_argument("--force", action="store_true", help="replace an existing file")


def cmd_init(args) -> int:
    from blockspec.views.scaffold import scaffold

    text = scaffold(args.file, args.from_spec)
    if args.file == "-":
        sys.stdout.write(text)
        return 0
    if os.path.exists(args.file) and not args.force:
        raise UsageError(f"{args.file} exists; add --force to replace it")
    Path(args.file).write_text(text, encoding="utf-8")
    print(f"wrote {args.file}; next: blockspec validate {args.file}")
    return 0


def _args_list(p: argparse.ArgumentParser) -> None:
    pass


def cmd_list(args) -> int:
    from blockspec.views.catalog import tables

    console = make_console()
    for table in tables():
        console.print(table)
    console.print("Any keras.layers class works too, by its exact name (e.g. Conv2DTranspose).")
    return 0


def _args_diff(p: argparse.ArgumentParser) -> None:
    p.add_argument("a", metavar="A", help="a spec file or a zoo name")
    p.add_argument("b", metavar="B", help="a spec file or a zoo name")
    override_args(p, "override a key in both (repeatable)")
    p.add_argument(
        "--set-b", action="append", type=set_item, metavar="KEY=VALUE", help="override in B only"
    )
    p.add_argument("--unified", action="store_true", help="a line diff of the resolved YAML")
    p.add_argument("--context", type=int, default=3, metavar="N", help="with --unified: context")
    p.add_argument("--params", action="store_true", help="also build both and compare parameters")


def cmd_diff(args) -> int:
    from blockspec.views.diff import diff_specs, stats_rows

    a, b = resolve_args(args.a, args), resolve_args(args.b, args, args.set_b)
    labels = (args.a, args.b) if args.a != args.b else (f"{args.a} (A)", f"{args.b} (B)")
    result = diff_specs(a, b, labels)
    if result.same:
        print(f"no differences: {labels[0]} and {labels[1]} resolve to the same spec")
    elif args.unified:
        _print_diff(result.unified(args.context))
    else:
        width = max(80, page_columns())
        print(f"A = {labels[0]}\nB = {labels[1]}")
        _print_diff([line for change in result.changes for line in change.lines(width)])
        counts = result.counts()
        legend = {"changed": "changed (~)", "removed": "only in A (-)", "added": "only in B (+)"}
        print(", ".join(f"{n} {legend[kind]}" for kind, n in counts.items() if n))
    if args.params:
        from rich.table import Table

        table = Table(title="built")
        for column, justify in (("", "left"), ("A", "right"), ("B", "right"), ("B - A", "right")):
            table.add_column(column, justify=justify)
        for row in stats_rows(build_resolved(a, args), build_resolved(b, args)):
            table.add_row(*row)
        make_console().print(table)
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


# ------------------------------------------------------------------ commands that build


def _args_build(p: argparse.ArgumentParser) -> None:
    spec_args(p)
    p.add_argument("--save", metavar="F.keras", type=keras_file, help="save the model (.keras)")
    p.add_argument("--inference", action="store_true", help="drop train-only outputs (aux heads)")
    _weights_args(p)


def _weights_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--weights",
        metavar="PATH",
        help="start from these weights (.keras, .weights.h5, legacy .h5, or imagenet): "
        "by layer name and shape, then by structure",
    )
    p.add_argument(
        "--weights-strict", action="store_true", help="refuse weights that do not all load"
    )


def _load_weights(model, resolved, args) -> None:
    from blockspec.builder.spec_weights import load_spec_weights

    load_spec_weights(model, resolved, args.weights, True if args.weights_strict else None)


def _shapes_checked(resolved, args):
    """Every step's shapes and each output against its loss, before any data is read or any
    file written (`build`, `train`, `tune`); refused as a located `SpecError`."""
    import_tensorflow(args)
    from blockspec.builder.shapes import check_shapes

    problems = check_shapes(resolved)
    if problems:
        raise SpecError(problems)
    return resolved


def cmd_build(args) -> int:
    resolved = resolve_args(args.spec, args)
    # Building reports every step's shape problem itself (located); the shape check's output
    # rules then run on the model just built, instead of building it twice.
    built = build_resolved(resolved, args, inference=args.inference)
    from blockspec.builder.shapes import output_problems

    shapes = {o.name: tuple(built.tensors[o.source].shape) for o in resolved.outputs}
    # A spec that says nothing of training (a feature extractor, a backbone to save) is not
    # held to the default loss; `train` and `tune` check it before they start.
    trained = resolved.train or any(o.loss is not None for o in resolved.outputs)
    problems = output_problems(resolved, shapes) if trained else []
    if problems:
        raise SpecError(problems)
    _load_weights(built.model, resolved, args)
    built.model.summary(line_length=min(120, max(80, page_columns())))
    if args.save:
        built.model.save(args.save)
        print(f"saved {args.save}")
    return 0


def _args_summary(p: argparse.ArgumentParser) -> None:
    spec_args(p, many=True)
    p.add_argument(
        "--by-block", action="store_true", help="also group parameters and multiply-adds by block"
    )


def cmd_summary(args) -> int:
    from blockspec.views.summary import block_table, stats, step_table, totals_table

    resolved = [
        resolve_args(spec, args) for spec in args.spec
    ]  # every spec checked before building
    builts = [build_resolved(spec, args) for spec in resolved]
    all_stats = [stats(built) for built in builts]
    console = make_console()
    for s in all_stats:
        console.print(step_table(s))
    console.print(totals_table(all_stats))
    if args.by_block:
        for built, s in zip(builts, all_stats, strict=True):
            console.print(block_table(built, s))
    return 0


def _args_plot(p: argparse.ArgumentParser) -> None:
    spec_args(p)
    p.add_argument(
        "-o", "--output", metavar="F.png", help="png, svg, pdf or dot (default <name>.png)"
    )
    p.add_argument("--expand", action="store_true", help="draw the Keras layers inside each block")
    p.add_argument("--shapes", action="store_true", help="label each step with its output shape")
    p.add_argument(
        "--direction", choices=("TB", "LR"), default="TB", help="top to bottom or left to right"
    )


def cmd_plot(args) -> int:
    from blockspec.views.plot import plot_graph, require_dot, write_plot

    resolved = resolve_args(args.spec, args)
    output = args.output or f"{resolved.name}.png"
    if not output.endswith((".dot", ".gv")):
        require_dot()  # before a slow build, not after
    built = build_resolved(resolved, args) if args.expand or args.shapes else None
    graph = plot_graph(resolved, built, expand=args.expand, direction=args.direction)
    print(f"wrote {write_plot(graph, output)}")
    return 0


def _args_bench(p: argparse.ArgumentParser) -> None:
    spec_args(p)
    p.add_argument(
        "--batch", type=int, metavar="N", help="images per step (default train.batch_size or 32)"
    )
    p.add_argument("--steps", type=int, default=20, metavar="N", help="timed steps (default 20)")
    p.add_argument("--warmup", type=int, default=3, metavar="N", help="untimed steps (default 3)")
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


def _args_export(p: argparse.ArgumentParser) -> None:
    from blockspec.training.exporting import add_arguments

    add_arguments(p)


def cmd_export(args) -> int:
    import_tensorflow(args)
    from blockspec.training.exporting import export_command

    return export_command(args.source, args.format, args.output, args.quantize)


def cmd_bench(args) -> int:
    import json

    resolve_args(args.spec, args)
    import_tensorflow(args)
    from blockspec.views.bench import bench_spec

    try:
        report = bench_spec(
            args.spec,
            parse_overrides(args.set),
            batch=args.batch,
            steps=args.steps,
            warmup=args.warmup,
            precision=args.precision,
            jit=args.jit,
            limits=limits_of(args),
        )
    except ValueError as e:
        if isinstance(e, SpecError):
            raise
        raise UsageError(str(e)) from e
    print(json.dumps(report.to_dict(), indent=2) if args.json else report.text())
    return 0


# ------------------------------------------------------------------ train, evaluate, tune


def _args_train(p: argparse.ArgumentParser) -> None:
    spec_args(p)
    p.add_argument("--out", metavar="DIR", help="run folder (default runs/<spec name>)")
    p.add_argument(
        "--resume", action="store_true", help="continue a stopped run from its last completed epoch"
    )
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="replace the run in --out (deletes only the files blockspec wrote there)",
    )
    _weights_args(p)


def cmd_train(args) -> int:
    _shapes_checked(resolve_args(args.spec, args), args)
    from blockspec.training.commands import train_command

    return train_command(
        args.spec,
        parse_overrides(args.set),
        args.out,
        args.resume,
        limits_of(args),
        overwrite=args.overwrite,
        weights=args.weights,
        weights_strict=True if args.weights_strict else None,
    )


def _tta_list(text: str) -> list[str]:
    from blockspec.training.config import TTA_VIEWS

    views = [v.strip() for v in text.split(",") if v.strip()]
    bad = [v for v in views if v not in TTA_VIEWS]
    if bad:
        raise argparse.ArgumentTypeError(
            f"unknown view {', '.join(map(repr, bad))}; the views are {', '.join(TTA_VIEWS)} "
            "(comma-separated; --tta '' for none)"
        )
    return views


def _args_evaluate(p: argparse.ArgumentParser) -> None:
    p.add_argument("run_dir", metavar="DIR", help="a run folder written by `blockspec train`")
    p.add_argument(
        "--tta",
        type=_tta_list,
        metavar="LIST",
        help="test-time augmentation, comma-separated: flip, crops (default: the spec's "
        "train.evaluate.tta, none unless it says)",
    )


def cmd_evaluate(args) -> int:
    if not Path(args.run_dir).is_dir():
        raise UsageError(
            f"no run folder {args.run_dir!r}; `blockspec train SPEC --out DIR` writes one"
        )
    import_tensorflow(args)
    from blockspec.training.commands import evaluate_command

    return evaluate_command(args.run_dir, args.tta)


def _worker_number(text: str) -> int:
    if not text.isdigit():
        raise argparse.ArgumentTypeError(f"takes a number >= 0; got {text!r}")
    return int(text)


def _oracle_address(text: str) -> str:
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise argparse.ArgumentTypeError(f"takes HOST:PORT (e.g. 127.0.0.1:8000); got {text!r}")
    return text


def _args_tune(p: argparse.ArgumentParser) -> None:
    spec_args(p)
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
        "--worker", type=_worker_number, metavar="N", help="run trials for the chief as worker N"
    )
    p.add_argument(
        "--oracle",
        type=_oracle_address,
        metavar="HOST:PORT",
        help="the chief's address (default 127.0.0.1:8000)",
    )


def cmd_tune(args) -> int:
    _shapes_checked(resolve_args(args.spec, args), args)
    from blockspec.tuning.commands import tune_command

    return tune_command(
        args.spec,
        parse_overrides(args.set),
        args.out,
        args.overwrite,
        chief=args.chief,
        worker=args.worker,
        oracle=args.oracle,
        limits=limits_of(args),
    )


# ------------------------------------------------------------------ the parser and main


@dataclass(frozen=True)
class Command:
    name: str
    help: str
    example: str
    arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]


COMMANDS = (
    Command("validate", "load and check specs; print every error; exit 2 on any",
            "blockspec validate specs/googlenet.yaml my_net.yaml", _args_validate, cmd_validate),
    Command("build", "build a spec and print the Keras summary; optionally save it",
            "blockspec build resnet50 --set vars.classes=10 --set input=[64,64,3] --save r50.keras",
            _args_build, cmd_build),
    Command("summary",
            "per step: output shape, neurons, parameters, multiply-adds; several specs side by side",
            "blockspec summary alexnet vgg16 googlenet resnet50", _args_summary, cmd_summary),
    Command("render", "print the resolved spec as YAML (extends, imports, vars, defaults applied)",
            "blockspec render googlenet --set vars.classes=10", _args_render, cmd_render),
    Command("schema", "print the JSON Schema of the spec language, for editors",
            "blockspec schema > blockspec.schema.json", _args_schema, cmd_schema),
    Command("plot", "draw the network: blocks as boxes, branches, merges, aux heads",
            "blockspec plot googlenet -o googlenet.png", _args_plot, cmd_plot),
    Command("diff", "what differs between two specs, resolved; exit 1 if they differ",
            "blockspec diff resnet50 resnet101", _args_diff, cmd_diff),
    Command("init", "write a new spec with comments, to start from",
            "blockspec init my_net.yaml --from resnet18", _args_init, cmd_init),
    Command("list", "list the zoo specs and step types", "blockspec list", _args_list, cmd_list),
    Command("train", "fit a spec as its `train` section says",
            "blockspec train digits_googlenet --set train.epochs=2 --out runs/try1",
            _args_train, cmd_train),
    Command("evaluate", "evaluate a run, with and without test-time augmentation",
            "blockspec evaluate runs/digits_googlenet --tta crops", _args_evaluate, cmd_evaluate),
    Command("tune", "search the spec's search spaces as its `tune` section says",
            "blockspec tune specs/examples/digits_tune.yaml --out runs/tune1", _args_tune, cmd_tune),
    Command("bench", "training and inference images/s and peak memory of a spec on this device "
            "(GPU default: mixed precision + XLA)",
            "blockspec bench resnet50 --batch 64 --steps 20", _args_bench, cmd_bench),
    Command("export", "write a run's model for serving (saved_model, onnx, litert); check it",
            "blockspec export runs/digits_googlenet --format litert --quantize int8",
            _args_export, cmd_export),
)  # fmt: skip


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="blockspec",
        description="Declarative architecture builder for Keras 3: "
        "YAML specs of reusable blocks -> Keras models.",
        epilog="Example: blockspec validate specs/googlenet.yaml",
    )
    parser.add_argument("--version", action="version", version=f"blockspec {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help=_VERBOSE_HELP)
    # `-v` also after the command; SUPPRESS keeps a `-v` given before it.
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "-v", "--verbose", action="store_true", default=argparse.SUPPRESS, help=_VERBOSE_HELP
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in COMMANDS:
        p = sub.add_parser(
            command.name,
            help=command.help,
            description=command.help,
            epilog=f"Example: {command.example}",
            parents=[common],
        )
        command.arguments(p)
        p.set_defaults(run=command.run)
    return parser


_VERBOSE_HELP = "show TensorFlow's own log lines (hidden by default)"


def main(argv: list[str] | None = None) -> int:
    """Runs one command; returns its exit code (see `EXIT_CODES`).

    A mistake argparse can see (an unknown option, `--limit x`, `--tta flipp`) exits 2 through
    argparse's own `SystemExit`, with the command's usage line; so do `--help` and `--version` (0).
    """
    args = build_parser().parse_args(argv)
    if not args.verbose:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
        os.environ.setdefault("GRPC_VERBOSITY", "ERROR")
    try:
        with full_lines(), sigterm_interrupts():
            return int(args.run(args) or 0)
    except BrokenPipeError:  # `blockspec render x | head`
        sys.stderr.close()
        return 0
    except tuple(cls for cls, _ in EXIT_CODES) as e:
        code = next(code for cls, code in EXIT_CODES if isinstance(e, cls))
        print(_interrupted(e) if code in (130, 143) else f"error: {e}", file=sys.stderr)
        return code
    except Exception as e:  # not foreseen: a bug, or a library failing in a way not checked for
        if args.verbose:
            raise
        print(
            f"error: blockspec failed unexpectedly: {clip(f'{type(e).__name__}: {e}', 300)}\n"
            "(rerun with -v for the traceback; please report it)",
            file=sys.stderr,
        )
        return 1


def _interrupted(error: BaseException) -> str:
    return "terminated (SIGTERM)" if isinstance(error, Terminated) else "interrupted"


if __name__ == "__main__":
    sys.exit(main())
