"""Regenerates `builder/imagenet_weights.json` from the installed keras.applications.

Each keras.applications constructor the zoo mirrors is called with `weights="imagenet"` for every
selection a zoo spec can make (its vars, and the input size where keras' file depends on it),
with `keras.utils.get_file` replaced by a recorder: the file name, URL and hash written here are
the ones keras itself would download, and nothing is downloaded. A selection keras refuses (a
`ValueError`, such as MobileNet alpha 0.3) gets no row.

    python -m blockspec.tools.gen_imagenet_table     # 172 models built: 4-5 min on CPU
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path

TABLE = Path(__file__).resolve().parent.parent / "builder" / "imagenet_weights.json"

ABOUT = (
    "keras.applications' ImageNet weight files for the zoo specs built like them, written by "
    "tools/gen_imagenet_table.py from the installed keras (do not edit by hand). Per spec: "
    "`select` names the vars (and `rows`, the input's height = width) that choose the file; "
    "each row of `files` gives their values and, with (`top`) and without (`notop`) the "
    "classifier, [cache file name, URL, the hash keras checks (md5 or sha256; null: none)]."
)

# spec -> (keras constructor, select, rows of selector values -> constructor keyword arguments)
MOBILENET_ALPHAS = (0.25, 0.5, 0.75, 1.0, 0.3)  # 0.3: keras refuses it, so no row
MOBILENET_V2_ALPHAS = (0.35, 0.5, 0.75, 1.0, 1.3, 1.4)


def families() -> dict:
    """Per spec: (constructor name, select, [(selection, keyword arguments)])."""
    size = {"input_shape": (224, 224, 3)}
    return {
        "resnet50": ("ResNet50", ["variant"], [({"variant": "v1"}, {})]),
        "resnet101": ("ResNet101", ["variant"], [({"variant": "v1"}, {})]),
        "resnet152": ("ResNet152", ["variant"], [({"variant": "v1"}, {})]),
        "resnet_v2": (
            None,
            ["depth"],
            [({"depth": d}, {"_fn": f"ResNet{d}V2"}) for d in (50, 101, 152)],
        ),
        "densenet": (
            None,
            ["depth"],
            [({"depth": d}, {"_fn": f"DenseNet{d}"}) for d in (121, 169, 201)],
        ),
        "vgg16": ("VGG16", [], [({}, {})]),
        "vgg19": ("VGG19", [], [({}, {})]),
        "inception_v3": ("InceptionV3", [], [({}, {})]),
        "inception_resnet_v2": ("InceptionResNetV2", [], [({}, {})]),
        "xception": ("Xception", [], [({}, {})]),
        "mobilenet": (
            "MobileNet",
            ["alpha", "depth_multiplier", "rows"],
            [
                (
                    {"alpha": a, "depth_multiplier": 1, "rows": r},
                    {"alpha": a, "input_shape": (r, r, 3)},
                )
                for a, r in itertools.product(MOBILENET_ALPHAS, (128, 160, 192, 224))
            ],
        ),
        "mobilenet_v2": (
            "MobileNetV2",
            ["alpha", "rows"],
            [
                ({"alpha": a, "rows": r}, {"alpha": a, "input_shape": (r, r, 3)})
                for a, r in itertools.product(MOBILENET_V2_ALPHAS, (96, 128, 160, 192, 224))
            ],
        ),
        "mobilenet_v3": (
            "MobileNetV3Large",
            ["alpha"],
            [({"alpha": a}, {"alpha": a, **size}) for a in (0.75, 1.0)],
        ),
        "mobilenet_v3_small": (
            "MobileNetV3Small",
            ["alpha"],
            [({"alpha": a}, {"alpha": a, **size}) for a in (0.75, 1.0)],
        ),
        "efficientnet": (
            None,
            ["variant"],
            [({"variant": v}, {"_fn": f"EfficientNetB{v}"}) for v in range(8)],
        ),
        "efficientnetv2": (
            None,
            ["variant"],
            [
                ({"variant": v}, {"_fn": f"EfficientNetV2{v.upper()}"})
                for v in ("b0", "b1", "b2", "b3", "s", "m", "l")
            ],
        ),
        "convnext": (
            None,
            ["size"],
            [
                ({"size": s}, {"_fn": f"ConvNeXt{n}"})
                for s, n in (
                    ("tiny", "Tiny"),
                    ("small", "Small"),
                    ("base", "Base"),
                    ("large", "Large"),
                    ("xlarge", "XLarge"),
                )
            ],
        ),
        "nasnet": (
            None,
            ["size"],
            [
                ({"size": "mobile"}, {"_fn": "NASNetMobile"}),
                ({"size": "large"}, {"_fn": "NASNetLarge"}),
            ],
        ),
    }


class _Recorded(Exception):
    """Raised by the recorder in place of a download."""


def record(constructor, kwargs: dict, include_top: bool) -> list | None:
    """[file name, URL, hash] keras asks `get_file` for, or None when keras refuses."""
    from keras.src.utils import file_utils

    seen = []
    original = file_utils.get_file

    def recorder(fname=None, origin=None, *args, file_hash=None, **more):
        seen.append([fname, origin, file_hash])
        raise _Recorded

    file_utils.get_file = recorder
    try:
        constructor(weights="imagenet", include_top=include_top, **kwargs)
    except _Recorded:
        return seen[0]
    except ValueError:
        return None
    finally:
        file_utils.get_file = original
    raise RuntimeError(f"{constructor.__name__}({kwargs}) asked for no file")


def build_table() -> dict:
    import keras

    table: dict = {"_about": ABOUT}
    for spec, (name, select, rows) in families().items():
        files = []
        for selection, kwargs in rows:
            kwargs = dict(kwargs)
            constructor = getattr(keras.applications, kwargs.pop("_fn", None) or name)
            top, notop = record(constructor, kwargs, True), record(constructor, kwargs, False)
            if top is None or notop is None:
                continue
            files.append({"when": selection, "top": top, "notop": notop})
            keras.backend.clear_session()
        table[spec] = {"select": select, "files": files}
    return table


def main() -> None:
    table = build_table()
    lines = ["{", f'  "_about": {json.dumps(table.pop("_about"))},']
    specs = list(table)
    for n, spec in enumerate(specs):
        entry = table[spec]
        lines.append(f'  "{spec}": {{"select": {json.dumps(entry["select"])}, "files": [')
        for m, row in enumerate(entry["files"]):
            end = "," if m < len(entry["files"]) - 1 else ""
            lines.append(f"    {json.dumps(row)}{end}")
        lines.append("  ]}" + ("," if n < len(specs) - 1 else ""))
    lines.append("}")
    TABLE.write_text("\n".join(lines) + "\n", encoding="utf-8")
    print(f"{TABLE}: {sum(len(e['files']) for e in table.values())} selections, {len(specs)} specs")


if __name__ == "__main__":
    main()
