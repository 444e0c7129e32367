"""`weights: imagenet` for every keras.applications family in the zoo, offline: which file (name,
URL, md5) a spec's vars and input size choose, the refusals, the table against the installed
keras sources, and a file already in a temporary Keras cache found without a download."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import pytest

from blockspec.builder import SpecError, resolve_spec, spec_weights
from blockspec.builder.spec_weights import (
    imagenet_file,
    imagenet_table,
    imagenet_weights,
    weights_sources,
)
from blockspec.builder.weights import WeightsError

KERAS_APPLICATIONS = "https://storage.googleapis.com/"


@pytest.fixture
def fetched(monkeypatch):
    """`fetch_file` recorded instead of run: [(file name, url, md5)]."""
    calls = []

    def fetch(file_name, url, md5, cache_dir=None):
        calls.append((file_name, url, md5))
        return Path("/cache/models") / file_name

    monkeypatch.setattr(spec_weights, "fetch_file", fetch)
    return calls


# ----------------------------------------------------------------------------- selection
@pytest.mark.parametrize(
    "name, spec_vars, shape, top, file_name, md5",
    [
        ("densenet", {"depth": 169}, None, True,
         "densenet169_weights_tf_dim_ordering_tf_kernels.h5", "d699b8f76981ab1b30698df4c175e90b"),
        ("densenet", {"depth": 201}, None, False,
         "densenet201_weights_tf_dim_ordering_tf_kernels_notop.h5",
         "c13680b51ded0fb44dff2d8f86ac8bb1"),
        ("resnet_v2", {"depth": 101}, None, True,
         "resnet101v2_weights_tf_dim_ordering_tf_kernels.h5", None),
        ("mobilenet", {"alpha": 0.5, "depth_multiplier": 1}, (160, 160, 3), True,
         "mobilenet_5_0_160_tf.h5", None),
        ("mobilenet", {"alpha": 1, "depth_multiplier": 1}, (224, 224, 3), False,
         "mobilenet_1_0_224_tf_no_top.h5", None),
        ("mobilenet_v2", {"alpha": 1.4}, (224, 224, 3), True,
         "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.4_224.h5", None),
        ("mobilenet_v2", {"alpha": 0.35}, (96, 96, 3), False,
         "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_0.35_96_no_top.h5", None),
        ("mobilenet_v3", {"alpha": 0.75}, None, True,
         "weights_mobilenet_v3_large_224_0.75_float.h5", "765b44a33ad4005b3ac83185abf1d0eb"),
        ("mobilenet_v3_small", {"alpha": 1.0}, None, False,
         "weights_mobilenet_v3_small_224_1.0_float_no_top_v2.h5",
         "d3e8ec802a04aa4fc771ee12a9a9b836"),
        ("efficientnet", {"variant": 3}, None, False, "efficientnetb3_notop.h5", None),
        ("efficientnetv2", {"variant": "s"}, None, True, "efficientnetv2-s.h5", None),
        ("convnext", {"size": "xlarge"}, None, False, "convnext_xlarge_notop.h5", None),
        ("nasnet", {"size": "large"}, None, True,
         "nasnet_large.h5", "11577c9a518f0070763c2b964a382f17"),
        ("xception", {}, None, False,
         "xception_weights_tf_dim_ordering_tf_kernels_notop.h5",
         "b0042744bf5b25fce3cb969f33bebb97"),
        ("inception_resnet_v2", {}, None, True,
         "inception_resnet_v2_weights_tf_dim_ordering_tf_kernels.h5",
         "e693bd0210a403b3192acc6073ad2e96"),
        ("resnet152", {"variant": "v1"}, None, False,
         "resnet152_weights_tf_dim_ordering_tf_kernels_notop.h5",
         "ee4c566cf9a93f14d82f913c2dc6dd0c"),
    ],
)  # fmt: skip
def test_vars_choose_the_file_keras_applications_uses(name, spec_vars, shape, top, file_name, md5):
    chosen = imagenet_file(name, spec_vars, shape, include_top=top)
    assert chosen.file_name == file_name
    assert chosen.url.startswith(KERAS_APPLICATIONS)
    if md5 is not None:
        assert chosen.file_hash == md5
    if name.startswith("mobilenet") and not name.startswith("mobilenet_v3"):
        assert chosen.file_hash is None  # keras checks no hash for MobileNet and MobileNetV2
        assert chosen.url.endswith("/" + file_name)


def test_nasnet_file_is_cached_under_another_name_than_its_url():
    chosen = imagenet_file("nasnet", {"size": "mobile"}, include_top=False)
    assert chosen.file_name == "nasnet_mobile_no_top.h5"
    assert chosen.url.endswith("/NASNet-mobile-no-top.h5")
    assert chosen.file_hash == "1ed92395b5b598bdda52abe5c0dbfd63"


@pytest.mark.parametrize(
    "name, spec_vars, shape, said",
    [
        ("mobilenet", {"alpha": 0.3, "depth_multiplier": 1}, (224, 224, 3),
         ["vars.alpha=0.3", "vars.alpha 0.25, 0.5, 0.75, 1.0", "input size 128x128, 160x160"]),
        ("mobilenet", {"alpha": 1.0, "depth_multiplier": 1}, (96, 96, 3),
         ["input size 96x96", "input size 128x128, 160x160, 192x192, 224x224"]),
        ("mobilenet", {"alpha": 1.0, "depth_multiplier": 2}, (224, 224, 3),
         ["vars.depth_multiplier=2", "vars.depth_multiplier 1"]),
        ("mobilenet_v2", {"alpha": 1.0}, (224, 200, 3),
         ["a non-square or unknown input size", "96x96"]),
        ("densenet", {"depth": 100}, None, ["vars.depth=100", "vars.depth 121, 169, 201"]),
        ("efficientnet", {}, None, ["no vars.variant", "vars.variant 0, 1, 2, 3, 4, 5, 6, 7"]),
        ("resnet50", {"variant": "v1.5"}, None, ["vars.variant='v1.5'", "vars.variant v1"]),
        ("convnext", {"size": "huge"}, None, ["tiny, small, base, large, xlarge"]),
    ],
)  # fmt: skip
def test_a_selection_without_a_file_says_what_exists(name, spec_vars, shape, said):
    with pytest.raises(WeightsError) as info:
        imagenet_file(name, spec_vars, shape)
    message = str(info.value)
    assert message.startswith(f"no ImageNet weights for `{name}` with "), message
    for text in said:
        assert text in message, message


def test_a_spec_keras_does_not_make_has_none():
    with pytest.raises(WeightsError, match=r"no ImageNet weights for `resnet18`; .*densenet"):
        imagenet_file("resnet18")


# ----------------------------------------------------------------------------- from a spec
def test_weights_imagenet_in_a_spec_follows_its_vars(fetched):
    resolved = resolve_spec("densenet", {"vars.depth": 169, "weights": "imagenet_notop"})
    (source,) = weights_sources(resolved)
    assert source.path.name == "densenet169_weights_tf_dim_ordering_tf_kernels_notop.h5"
    assert fetched[0][2] == "b8c4d4c20dd625c148057b9ff1c1176b"


def test_the_weights_option_follows_vars_and_input_size(fetched):
    resolved = resolve_spec("mobilenet_v2", {"vars.alpha": 0.75, "input": [128, 128, 3]})
    (source,) = weights_sources(resolved, "imagenet")
    assert source.path.name == "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_0.75_128.h5"
    resolved = resolve_spec("efficientnetv2", {"vars.variant": "b2"})
    assert weights_sources(resolved, "imagenet")[0].path.name == "efficientnetv2-b2.h5"


def test_a_zoo_name_takes_its_default_vars(fetched):
    assert imagenet_weights("convnext", include_top=False).name == "convnext_tiny_notop.h5"
    assert imagenet_weights("mobilenet_v3_small").name == (
        "weights_mobilenet_v3_small_224_1.0_float.h5"
    )


def test_a_var_written_as_an_expression_is_evaluated(tmp_path, fetched):
    path = tmp_path / "dn.yaml"
    path.write_text(
        "spec: 1\nextends: densenet\nname: densenet\nvars: {big: 1, depth: '${169 + 32 * big}'}\n"
    )
    (source,) = weights_sources(resolve_spec(str(path)), "imagenet")
    assert source.path.name == "densenet201_weights_tf_dim_ordering_tf_kernels.h5"


def test_a_tuned_var_takes_the_value_chosen(fetched):
    space = {"tune": "choice", "values": [121, 169], "default": 169}
    (source,) = weights_sources(resolve_spec("densenet", {"vars.depth": space}), "imagenet")
    assert source.path.name == "densenet169_weights_tf_dim_ordering_tf_kernels.h5"


def test_a_spec_with_no_file_is_refused_where_weights_is_written(tmp_path, fetched):
    path = tmp_path / "mn.yaml"
    path.write_text("spec: 1\nextends: mobilenet\nname: mobilenet\nvars: {alpha: 0.3}\n"
                    "weights: imagenet\n")  # fmt: skip
    with pytest.raises(SpecError) as info:
        weights_sources(resolve_spec(str(path)))
    message = str(info.value)
    assert "mn.yaml:5:" in message and "weights" in message
    assert "vars.alpha=0.3" in message and "vars.alpha 0.25, 0.5, 0.75, 1.0" in message
    assert fetched == []


# ----------------------------------------------------------------------------- the Keras cache
def test_a_file_in_the_keras_cache_is_found_without_a_download(tmp_path, monkeypatch):
    """MobileNet's files have no hash in keras: the cached file is taken as it is; the URL
    (an address nothing answers at here) is never asked."""
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    (tmp_path / "models").mkdir()
    cached = tmp_path / "models" / "mobilenet_7_5_192_tf_no_top.h5"
    cached.write_bytes(b"weights")
    resolved = resolve_spec("mobilenet", {"vars.alpha": 0.75, "input": [192, 192, 3]})
    (source,) = weights_sources(resolved, "imagenet_notop")
    assert source.path == cached


def test_a_hashed_file_in_the_cache_is_checked_and_found(tmp_path, monkeypatch):
    """DenseNet's files carry an md5 in keras: a cached file with the table's hash is taken (the
    table's hash is the placed file's here, as the real file is not at hand offline)."""
    table = imagenet_table()
    row = next(r for r in table["densenet"]["files"] if r["when"] == {"depth": 121})
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / row["top"][0]).write_bytes(b"densenet")
    row["top"] = [row["top"][0], "http://127.0.0.1:9/" + row["top"][0],
                  hashlib.md5(b"densenet").hexdigest()]  # fmt: skip
    monkeypatch.setattr(spec_weights, "IMAGENET_TABLE", tmp_path / "table.json")
    (tmp_path / "table.json").write_text(json.dumps(table))
    found = imagenet_weights(resolve_spec("densenet"), cache_dir=str(tmp_path))
    assert found == tmp_path / "models" / "densenet121_weights_tf_dim_ordering_tf_kernels.h5"


def test_offline_the_message_names_the_chosen_file(tmp_path, monkeypatch):
    table = imagenet_table()
    for row in table["efficientnet"]["files"]:
        row["top"][1] = "http://127.0.0.1:9/" + row["top"][0]
    monkeypatch.setattr(spec_weights, "IMAGENET_TABLE", tmp_path / "table.json")
    (tmp_path / "table.json").write_text(json.dumps(table))
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "kh"))
    resolved = resolve_spec("efficientnet", {"vars.variant": 5})
    with pytest.raises(WeightsError) as info:
        weights_sources(resolved, "imagenet")
    message = str(info.value)
    assert "cannot download efficientnetb5.h5" in message and "no network?" in message
    assert f"Put the file at {tmp_path / 'kh' / 'models' / 'efficientnetb5.h5'}" in message
    assert "or pass --weights PATH" in message


# ----------------------------------------------------------------------------- backbones
def test_a_backbone_takes_imagenet_for_its_own_spec_and_vars(tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    (tmp_path / "models").mkdir()
    cached = tmp_path / "models" / "mobilenet_5_0_224_tf_no_top.h5"
    cached.write_bytes(b"weights")
    path = tmp_path / "host.yaml"
    path.write_text(
        "spec: 1\ninput: [32, 32, 3]\nnetwork:\n"
        "  - backbone: {spec: mobilenet, until: conv1_relu, vars: {alpha: 0.5},"
        " weights: imagenet_notop}\n"
        "  - global_avg_pool: {}\n  - dense: 10\n"
    )
    (source,) = weights_sources(resolve_spec(str(path)))
    assert source.path == cached and source.step == "backbone"


# ----------------------------------------------------------------------------- the table
def _keras_sources() -> dict[str, str]:
    import keras

    folder = Path(keras.__file__).parent / "src" / "applications"
    return {
        p.name: p.read_text(encoding="utf-8")
        for p in folder.glob("*.py")
        if not p.name.endswith("_test.py")
    }


def test_the_table_agrees_with_the_installed_keras_sources():
    """Every hash in the table is one keras' sources carry, every URL begins with one of their
    download folders, and every hash of theirs is in the table but those of files no zoo spec
    takes (MobileNetV3's minimalistic models, ResNeXt's, the ImageNet class index)."""
    sources = _keras_sources()
    text = "\n".join(sources.values())
    theirs = set(re.findall(r'"([0-9a-f]{32}(?:[0-9a-f]{32})?)"', text))
    folders = set(re.findall(r'"(https://storage\.googleapis\.com/[^"]*/)"', text))
    ours, rows = set(), 0
    for name, entry in imagenet_table().items():
        if name.startswith("_"):
            continue
        for row in entry["files"]:
            assert sorted(row["when"]) == sorted(entry["select"]), name
            for file_name, url, md5 in (row["top"], row["notop"]):
                rows += 1
                assert any(url.startswith(f) for f in folders), url
                assert md5 is None or md5 in theirs, (name, file_name)
                ours.add(md5)
                if md5 is not None:  # keras names the cached file in its sources, or builds it
                    assert file_name in text or file_name.endswith(".h5"), file_name
    minimalistic = re.search(r'"large_minimalistic.*?"small_224_0\.75', text, re.S).group(0)
    minimalistic += re.search(r'"small_minimalistic.*?\)', text, re.S).group(0)
    unused = set(re.findall(r'"([0-9a-f]{32}(?:[0-9a-f]{32})?)"', minimalistic))
    unused |= set(re.findall(r'"([0-9a-f]{32}(?:[0-9a-f]{32})?)"', sources["imagenet_utils.py"]))
    for pair in re.findall(r'"resnext\d+": \(([^)]*)\)', sources["resnet.py"]):
        unused |= set(re.findall(r'"([0-9a-f]{32})"', pair))  # hashes of no keras constructor
    assert theirs - ours == unused
    assert rows == 2 * sum(len(e["files"]) for k, e in imagenet_table().items() if k[0] != "_")


def test_the_table_covers_every_keras_applications_spec_in_the_zoo():
    table = imagenet_table()
    expected = {
        "resnet50", "resnet101", "resnet152", "resnet_v2", "densenet", "vgg16", "vgg19",
        "inception_v3", "inception_resnet_v2", "xception", "mobilenet", "mobilenet_v2",
        "mobilenet_v3", "mobilenet_v3_small", "efficientnet", "efficientnetv2", "convnext",
        "nasnet",
    }  # fmt: skip
    assert set(table) - {"_about"} == expected
    counts = {name: len(table[name]["files"]) for name in expected}
    assert counts["mobilenet"] == 16 and counts["mobilenet_v2"] == 30
    assert counts["efficientnet"] == 8 and counts["efficientnetv2"] == 7
    assert counts["convnext"] == 5 and counts["densenet"] == 3 and counts["resnet_v2"] == 3
    for name in expected:  # every var the table selects on is one the spec declares
        resolved = resolve_spec(name)
        declared = resolved.document.get("vars") or {}
        assert all(k in declared for k in table[name]["select"] if k != "rows"), name
