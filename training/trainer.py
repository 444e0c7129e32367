"""Fit a resolved spec as its `train` section says, and fill the run folder.

The run folder (`runs/<spec name>` by default; see `training.run_folder`) holds:
- `model.keras`: the inference model (train-only outputs removed, preprocessing inside);
- `spec.yaml`: the resolved spec; `run.json`: what `evaluate` needs (data, class names, shapes);
- `history.csv`, `metrics.json` (final and best value of every metric), `curves.png`;
- `logs/`: TensorBoard; `checkpoint/`: the last completed epoch, for `--resume`;
- `manifest.json`: the spec's identity and every file above (what `--overwrite` deletes).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import keras
import tensorflow as tf

from blockspec.builder.compile import dtype_policy
from blockspec.builder.errors import Problem, SpecError
from blockspec.builder.resolve.outputs import watched_monitors
from blockspec.builder.spec import ResolvedSpec
from blockspec.errors import Terminated
from blockspec.training import callbacks as run_callbacks
from blockspec.training import data as data_lib
from blockspec.training import files, run_folder
from blockspec.training.augment import AugmentError, augment_layers
from blockspec.training.distributed import custom_fit, make_strategy
from blockspec.training.errors import DataError, RunFolderError, TrainingError
from blockspec.training.export import inference_model
from blockspec.training.geometry import check_contract, checked_train, image_geometry, train_path
from blockspec.training.optim import objectives, output_width, plateau_callback
from blockspec.training.run_folder import RunFolder
from blockspec.training.stages import Stager

RUN_FILE = "run.json"
ARTIFACTS = ("run", "trial")
TRIAL_CHECKPOINT_SECONDS = 60.0  # a tune trial checkpoints at most this often


@dataclass
class RunResult:
    """What a run did.

    Attributes:
        out_dir: the run folder.
        epochs: epochs completed (all runs of a resumed training together).
        history: per-epoch values of every metric.
        metrics: `metrics.json` (final and best values).
        stopped: None when all epochs ran, else `nan` or `early_stopping`.
        message: a sentence for the user when `stopped` is set.
        model_path: `model.keras`, or None when no epoch completed.
        replicas: replicas in sync (devices x workers).
        seconds: wall time of this call.
        model: the compiled training model (all outputs), weights as at the end.
    """

    out_dir: Path
    epochs: int
    history: dict[str, list[Any]]
    metrics: dict[str, Any]
    stopped: str | None = None
    message: str = ""
    model_path: Path | None = None
    replicas: int = 1
    seconds: float = 0.0
    model: Any = field(default=None, repr=False)


def default_build(resolved: ResolvedSpec) -> keras.Model:
    from blockspec.builder import build_model

    return build_model(resolved)


def train(
    resolved: ResolvedSpec,
    out_dir: str | Path,
    *,
    resume: bool = False,
    overwrite: bool = False,
    build: Callable[[ResolvedSpec], keras.Model] | None = None,
    callbacks: list[keras.callbacks.Callback] | tuple = (),
    verbose: int | str = 1,
    base_dir: str | Path | None = None,
    initial_epoch: int = 0,
    initial_weights: str | Path | None = None,
    artifacts: str = "run",
    records: dict[str, Any] | None = None,
) -> RunResult:
    """Fit `resolved` as its `train` section says; write the run folder.

    Args:
        resolved: the resolved spec.
        out_dir: the run folder: new, empty, or a run of blockspec (see `RunFolder.open`).
        resume: continue the folder's run from its last completed epoch (the same spec is
            required; a fresh run when it has no checkpoint).
        overwrite: replace the folder's run (deletes only the files its manifest lists). With
            `resume`: continue the run when it is this spec's, else replace it.
        build: makes the training model from the spec (default: `builder.build_model`).
        callbacks: extra Keras callbacks.
        verbose: Keras' verbosity (1: a progress bar per epoch).
        base_dir: relative data paths are read from here (default: the spec file's folder).
        initial_epoch: the model already holds the weights of this many epochs (Hyperband's
            continued trials): train epochs `initial_epoch + 1 .. train.epochs`, with the
            learning-rate schedule where those epochs find it. Ignored when resuming.
        initial_weights: a weights file of this model, optimizer state included (what
            `model.save_weights` writes after `compile`: keras-tuner's trial checkpoints), to
            start from instead of the built model's weights. Ignored when resuming.
        artifacts: `run` writes the whole run folder (a checkpoint and the history files every
            epoch, `curves.png`, `model.keras`); `trial` (a tune trial) checkpoints at most
            every `TRIAL_CHECKPOINT_SECONDS` and writes neither curves nor `model.keras`
            (keras-tuner keeps the trial's best weights), so that a short trial costs little
            more than its training.
        records: more JSON files to write into the folder first, by name.

    Returns:
        A `RunResult`; `stopped == "nan"` when the loss became NaN. `run.json` ends with the
        status `finished`, `failed` or `interrupted` and the reason, whatever happens.

    Raises:
        SpecError: the `train` section (or its fit to the model) is wrong.
        DataError: the data source could not be read, or its data cannot train the model.
        RunFolderError: the folder is in use, another run's, not a run, or damaged.
        WriteError: the disk filled (the files written before are intact).

    Example:
        >>> result = train(builder.resolve_spec("digits_cnn"), "runs/digits_cnn")  # doctest: +SKIP
    """
    started = time.time()
    if artifacts not in ARTIFACTS:
        raise ValueError(f"artifacts must be one of {ARTIFACTS}. Received: artifacts={artifacts!r}")
    cfg = checked_train(resolved)
    # MultiWorkerMirroredStrategy must exist before any other TensorFlow operation.
    strategy, worker = make_strategy(cfg["distribute"])
    out = Path(out_dir)
    if not worker.chief:
        out = out / f"worker-{worker.index}"
    record = run_folder.spec_record(resolved.document, cfg)
    info: dict[str, Any] = {"name": resolved.name, "spec_file": str(resolved.file)}
    with RunFolder.open(
        out, record, name=resolved.name, resume=resume, overwrite=overwrite
    ) as folder:
        if folder.replaced:
            print(f"{out}: {folder.replaced}.")
        if resume and not folder.resumable:
            print(f"Nothing to resume in {out}: starting a fresh run.")
        try:
            _end(folder, info, "running", "")
            for rel, value in (records or {}).items():
                folder.write_json(rel, value)
            setup = _prepare(resolved, cfg, strategy, build or default_build, base_dir)
            setup.chief = worker.chief
            result = _fit(
                setup, folder, info, callbacks, verbose, initial_epoch, initial_weights, artifacts
            )
        except KeyboardInterrupt as e:
            what = "terminated (SIGTERM)" if isinstance(e, Terminated) else "interrupted (Ctrl-C)"
            _end(folder, info, "interrupted", _kept_line(out, what))
            raise
        except BaseException as e:
            _end(folder, info, "failed", _kept_line(out, _reason(e)))
            raise
    result.seconds = time.time() - started
    return result


def _reason(error: BaseException, limit: int = 2000) -> str:
    text = str(error) if isinstance(error, (SpecError, TrainingError)) else ""
    text = text or f"{type(error).__name__}: {error}"
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _kept_line(out: Path, what: str) -> str:
    """`what`, and the epoch the checkpoint holds (what `--resume` continues from)."""
    try:
        state = run_callbacks.load_state(out)
    except TrainingError:
        state = None
    if state is None:
        return f"{what}; no epoch completed, nothing kept"
    return f"{what}; the checkpoint of epoch {state['epoch']} is kept"


def _end(folder: RunFolder, info: dict, status: str, reason: str) -> None:
    """`run.json` with this status; a write that fails (a full disk) is not a second error."""
    info.update(status=status, reason=reason)
    try:
        folder.write_json(RUN_FILE, info)
    except (TrainingError, OSError):
        if status == "running":
            raise


@dataclass
class _Setup:
    """What a run trains: the compiled model, its data, and how it was made."""

    resolved: ResolvedSpec
    cfg: dict[str, Any]
    strategy: Any
    model: keras.Model
    main: str
    classes: int
    source: Any
    geometry: dict[str, Any]
    preprocess: keras.Model
    fit_layer: Any
    pipes: Any
    base_dir: Path | None
    objectives: Any
    jit: Any
    chief: bool = True
    stager: Any = None  # `training.stages.Stager`: freezing and the optimizer, stage by stage


def _prepare(resolved, cfg, strategy, build, base_dir) -> _Setup:
    """Build and compile the model; read, check and describe the data; make the pipelines."""
    seed = int(cfg["seed"])
    keras.utils.set_random_seed(seed)
    geometry = image_geometry(resolved, cfg)
    if base_dir is None and resolved.file and Path(resolved.file).is_file():
        base_dir = Path(resolved.file).resolve().parent
    with dtype_policy(cfg["precision"]), strategy.scope():
        model = build(resolved)
    names = check_contract(model, resolved)
    main = next((o.name for o in resolved.outputs if not o.train_only), names[0])
    classes = output_width(model, main)
    obj = objectives(resolved.outputs, model, float(cfg["label_smoothing"]))
    source = data_lib.load_source(
        cfg["data"],
        image_size=geometry["image_size"],
        channels=geometry["channels"],
        classes=classes,
        seed=seed,
        base_dir=base_dir,
    )
    data_lib.check_source(source, classes=classes, input_shape=geometry["input_shape"])
    print(data_lib.describe(source, geometry), flush=True)
    preprocess = data_lib.preprocess_model(
        source.raw_shape, geometry["image_size"], geometry["channels"], source.scale
    )
    fit_layer = data_lib.fit_to_input(
        geometry["image_size"], geometry["input_hw"], geometry["crop_hw"]
    )
    if geometry["crop_hw"] is not None:
        train_fit = data_lib.resize_to_input(geometry["crop_hw"], geometry["input_hw"])
    else:
        train_fit = data_lib.fit_to_input(geometry["image_size"], geometry["input_hw"])
    try:
        augment = augment_layers(cfg["augment"], seed=seed)
    except AugmentError as e:
        raise SpecError(Problem(str(e), path=train_path(e.path))) from e

    def targets(y):
        return {n: tf.one_hot(y, obj.one_hot[n]) if n in obj.one_hot else y for n in names}

    input_name = next(iter(model.input)) if isinstance(model.input, dict) else None

    def features(x):
        return {input_name: x} if input_name is not None else x

    # Made for each run, even inside `shared_between_runs`: shuffling and augmentation draw
    # from their dataset's random state, so a run on a dataset another run has iterated would
    # see other batches than `blockspec train` of the same spec (the source and the
    # preprocessed cache below the shuffle are shared).
    pipes = data_lib.make_pipelines(
        source,
        preprocess,
        augment=augment,
        fit=fit_layer,
        train_fit=train_fit,
        labels=targets,
        features=features,
        batch_size=int(cfg["batch_size"]),
        seed=seed,
        cache=cfg["data"].get("cache", "auto"),
        drop_remainder=cfg["distribute"] == "multi_worker",
        deterministic=bool(cfg["deterministic"]),
    )
    jit = cfg["jit_compile"]
    if jit and strategy.num_replicas_in_sync > 1 and not tf.config.list_logical_devices("GPU"):
        # XLA cannot read a replica's variables across logical CPU devices (TF's known issue).
        print("jit_compile is off: XLA does not run replicas on several logical CPU devices.")
        jit = False

    def compile_model(optimizer):
        model.compile(
            optimizer=optimizer,
            loss=obj.loss,
            loss_weights=obj.loss_weights,
            metrics=obj.metrics,
            jit_compile=jit,
        )

    setup = _Setup(
        resolved=resolved,
        cfg=cfg,
        strategy=strategy,
        model=model,
        main=main,
        classes=classes,
        source=source,
        geometry=geometry,
        preprocess=preprocess,
        fit_layer=fit_layer,
        pipes=pipes,
        base_dir=base_dir,
        objectives=obj,
        jit=jit,
    )
    setup.stager = Stager(setup, compile_model)  # `train.freeze` or the first of `train.stages`
    setup.stager.enter(0, quiet=True)
    return setup


def _load_weights(model: keras.Model, path: str | Path) -> None:
    """`model.load_weights`, a damaged or foreign file told as a `RunFolderError` naming it."""
    try:
        model.load_weights(str(path))
    except (OSError, ValueError, KeyError, TypeError, RuntimeError) as e:
        raise RunFolderError(
            f"the checkpoint {path} cannot be loaded ({type(e).__name__}: "
            f"{str(e).splitlines()[0][:200] if str(e) else ''}); it is damaged or not this "
            "model's. Start afresh with --overwrite."
        ) from e


def _restore(setup: _Setup, folder: RunFolder, initial_epoch: int, initial_weights):
    """The epoch to start from and the history so far: the checkpoint's when resuming."""
    model, strategy, epochs = setup.model, setup.strategy, int(setup.cfg["epochs"])
    state = run_callbacks.load_state(folder.path) if folder.resumable else None
    if state is not None:
        if state["epoch"] > epochs:
            raise RunFolderError(
                f"{folder.path / 'checkpoint' / 'state.json'} says {state['epoch']} epochs are "
                f"done, but the run has {epochs}; it is damaged. Start afresh with --overwrite."
            )
        setup.stager.resume_at(int(state["epoch"]))  # compiled as the stage that wrote it
        with strategy.scope():
            if not model.optimizer.built:
                model.optimizer.build(model.trainable_variables)
            _load_weights(model, state["weights_path"])
        if state["epoch"] == epochs:
            print(f"{folder.path} has completed all {epochs} epochs: nothing left to train.")
        else:
            print(f"Resuming {folder.path} after epoch {state['epoch']} of {epochs}.")
        return int(state["epoch"]), state["history"]
    initial_epoch = min(max(0, int(initial_epoch)), epochs)
    if initial_weights is not None or initial_epoch:
        with strategy.scope():
            if not model.optimizer.built:
                model.optimizer.build(model.trainable_variables)
    if initial_weights is not None:  # the weights and the optimizer's moments
        _load_weights(model, initial_weights)
    if initial_epoch:  # schedules read the step count: start where those epochs left it
        model.optimizer.iterations.assign(initial_epoch * setup.pipes.steps_per_epoch)
    return initial_epoch, {}


def _run_info(setup: _Setup) -> dict[str, Any]:
    """What `evaluate` needs of a run (`run.json`)."""
    resolved, geometry, source, cfg = setup.resolved, setup.geometry, setup.source, setup.cfg
    return {
        "base_dir": str(setup.base_dir) if setup.base_dir else None,
        "source": source.name,
        "class_names": source.class_names,
        "raw_shape": list(source.raw_shape),
        "image_size": list(geometry["image_size"]) if geometry["image_size"] else None,
        "crop_size": list(geometry["crop_hw"]) if geometry["crop_hw"] else None,
        "input_shape": list(geometry["input_shape"]),
        "outputs": [
            {"name": o.name, "train_only": o.train_only, "loss_weight": o.loss_weight}
            for o in resolved.outputs
        ],
        "main_output": setup.main,
        "classes": setup.classes,
        "train": cfg,
        "replicas": int(setup.strategy.num_replicas_in_sync),
        "train_examples": source.train.size,
        "validation_examples": source.validation.size if source.validation else 0,
    }


def _fit(setup, folder, info, callbacks, verbose, initial_epoch, initial_weights, artifacts):
    """Train from where the folder's run stands; record every epoch; export; finish run.json."""
    cfg = setup.cfg
    _check_watched(setup)
    initial_epoch, history = _restore(setup, folder, initial_epoch, initial_weights)
    info.update(_run_info(setup))
    folder.write_text("spec.yaml", files.yaml_text(setup.resolved.document, sort_keys=False))
    _end(folder, info, "running", "")

    trial = artifacts == "trial"
    recorder = run_callbacks.RunFiles(
        folder,
        history,
        checkpoint_every=TRIAL_CHECKPOINT_SECONDS if trial else 0.0,
        curves=not trial,
    )
    folder.own("logs/*events.out.tfevents.*")  # TensorBoard writes them, not atomic_write
    callback_list: list[keras.callbacks.Callback] = [
        recorder,
        keras.callbacks.TensorBoard(
            log_dir=str(folder.path / "logs"), write_graph=False, profile_batch=0
        ),
    ]
    plateau = plateau_callback(cfg.get("schedule"))
    if plateau is not None:
        callback_list.append(plateau)
    stopper = None
    if cfg["early_stopping"]:
        stopper = keras.callbacks.EarlyStopping(**cfg["early_stopping"], verbose=1)
        callback_list.append(stopper)
    callback_list.extend(callbacks)

    if initial_epoch < cfg["epochs"]:
        _run_epochs(setup, callback_list, initial_epoch, verbose, trial)
    elif recorder.history:
        recorder.write_files()
    return _finish(setup, folder, info, recorder, stopper, trial)


def _check_watched(setup: _Setup) -> None:
    """A `val_` number that early stopping or a plateau schedule watches needs validation data;
    without it Keras warns every epoch and never acts. Refused before the first epoch (validate
    refuses it where the spec alone tells: digits and synthetic data with no split)."""
    config = setup.resolved.train_config
    if setup.pipes.validation is not None or config is None:
        return
    for key, _, name in watched_monitors(config):
        if str(name).startswith("val_"):
            raise DataError(
                f"train.{key} watches `{name}`, but this run has no validation data (the "
                f"source has no validation part and `validation_split` is 0): watch "
                f"`{str(name)[4:]}` (`monitor: {str(name)[4:]}`), or give the data a "
                "validation split"
            )


def _run_epochs(setup: _Setup, callback_list, initial_epoch, verbose, trial) -> None:
    cfg, model, pipes = setup.cfg, setup.model, setup.pipes
    if cfg["distribute"] == "multi_worker":
        custom_fit(
            model,
            setup.strategy,
            train=pipes.train,
            validation=pipes.validation,
            objectives=setup.objectives,
            global_batch_size=int(cfg["batch_size"]),
            steps_per_epoch=pipes.steps_per_epoch,
            epochs=int(cfg["epochs"]),
            initial_epoch=initial_epoch,
            callbacks=callback_list,
            verbose=1 if verbose and setup.chief else 0,
            jit_compile=setup.jit is True,
        )
    else:

        def fit_epochs(first: int, end: int) -> None:
            model.fit(
                **pipes.fit_arguments(end - first, autotune=not trial),
                epochs=end,
                initial_epoch=first,
                callbacks=callback_list,
                verbose=verbose,
                shuffle=False,  # the pipeline shuffles
            )

        setup.stager.fit(initial_epoch, fit_epochs)  # one fit per stage of `train.stages`


def _finish(setup, folder, info, recorder, stopper, trial) -> RunResult:
    """The NaN and early-stopping messages, `model.keras`, and `run.json` as finished/failed."""
    model, out = setup.model, folder.path
    stopped, message = None, ""
    done = recorder.last_good_epoch
    if recorder.nan is not None:
        stopped = "nan"
        epoch, batch = recorder.nan
        where = f"epoch {epoch + 1}" + (f", batch {batch + 1}" if batch >= 0 else "")
        kept = run_callbacks.load_state(out)
        if kept is not None:
            _load_weights(model, kept["weights_path"])
            keep = (
                f"The last good checkpoint (epoch {kept['epoch']}) is kept in {out / 'checkpoint'}, "
                f"and model.keras holds its weights."
            )
        else:
            keep = "No epoch completed, so there is no checkpoint and no model.keras."
        message = (
            f"The loss became NaN at {where}; training stopped. {keep} Lower "
            "`train.optimizer.<name>.learning_rate`, or add a schedule with warmup, then run "
            "again (`--resume` continues from the checkpoint)."
        )
    elif stopper is not None and stopper.stopped_epoch > 0:
        stopped = "early_stopping"
        message = f"Early stopping after epoch {stopper.stopped_epoch + 1}."

    model_path = None
    if done > 0 and not trial:
        export = inference_model(
            model,
            setup.resolved.outputs,
            setup.preprocess,
            setup.fit_layer,
            name=setup.resolved.name,
        )
        model_path = folder.write(
            "model.keras",
            export.save,
            suffix=".keras",
            size=files.weights_bytes(export),
        )
    info.update(stopped=stopped, epochs_done=done, message=message)
    _end(folder, info, "failed" if stopped == "nan" else "finished", message or "all epochs ran")
    return RunResult(
        out_dir=out,
        epochs=done,
        history=recorder.history,
        metrics=run_callbacks.summarize(recorder.history),
        stopped=stopped,
        message=message,
        model_path=model_path,
        replicas=int(setup.strategy.num_replicas_in_sync),
        model=model,
    )
