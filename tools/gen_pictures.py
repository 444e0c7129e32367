"""Draws docs/pictures/<spec>.svg for every zoo spec (specs/*.yaml and specs/examples/*.yaml).

Each picture is what `blockspec plot SPEC --shapes -o SPEC.svg` draws: blocks as boxes, branches
and merges, auxiliary heads dashed, output shapes. It also draws docs/pictures/tutorial/my_net.svg,
the network `blockspec init` writes (the tutorial's). Rerun it after adding or changing a zoo
spec; it rewrites every picture and removes those whose spec is gone. Needs graphviz's `dot`.

    python tools/gen_pictures.py                # every zoo spec
    python tools/gen_pictures.py resnet50 nin   # some
    python tools/gen_pictures.py --no-shapes    # faster: no model is built
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from blockspec.builder.errors import SpecError  # noqa: E402
from blockspec.builder.load import zoo_names  # noqa: E402
from blockspec.builder.resolve import resolve_spec  # noqa: E402
from blockspec.views.plot import plot_graph, require_dot, write_plot  # noqa: E402

PICTURES = ROOT / "docs" / "pictures"


def draw(name: str, shapes: bool = True, target: Path | None = None) -> Path:
    """Writes docs/pictures/<name>.svg (or `target`) for the spec `name` (a zoo name or a path)."""
    resolved = resolve_spec(name)
    built = None
    if shapes:
        from blockspec.builder.compile import compile_spec

        built = compile_spec(resolved)
    return write_plot(plot_graph(resolved, built), target or PICTURES / f"{name}.svg")


def draw_tutorial(shapes: bool = True) -> Path:
    """docs/pictures/tutorial/my_net.svg: the spec `blockspec init` writes."""
    import tempfile

    from blockspec.views.scaffold import scaffold

    (PICTURES / "tutorial").mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as folder:
        spec = Path(folder) / "my_net.yaml"
        spec.write_text(scaffold(str(spec)))
        return draw(str(spec), shapes, PICTURES / "tutorial" / "my_net.svg")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", help="zoo specs to draw (default: all)")
    parser.add_argument("--no-shapes", action="store_true", help="do not build the models")
    args = parser.parse_args(argv)
    require_dot()
    PICTURES.mkdir(parents=True, exist_ok=True)
    names = args.names or zoo_names()
    failed = 0
    for name in names:
        start = time.time()
        try:
            path = draw(name, shapes=not args.no_shapes)
        except SpecError as e:
            failed += 1
            print(f"FAIL {name}: {e}", file=sys.stderr)
            continue
        finally:
            if not args.no_shapes:
                from blockspec.builder.lazy import keras

                keras.backend.clear_session()  # the zoo's models together do not fit in memory
        print(f"wrote {path.relative_to(ROOT)} ({time.time() - start:.1f} s)")
    if not args.names:
        print(f"wrote {draw_tutorial(not args.no_shapes).relative_to(ROOT)}")
        for stale in sorted(set(PICTURES.glob("*.svg")) - {PICTURES / f"{n}.svg" for n in names}):
            stale.unlink()
            print(f"removed {stale.relative_to(ROOT)} (no such zoo spec)")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
