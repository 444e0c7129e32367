"""Search spaces as the views show them (`plot`, `diff`): `tune int 8..32 step 8`.

A resolved spec holds each space's chosen value in its steps and the spaces themselves in
`ResolvedSpec.hyperparameters`, each with the spec path it was written at. `by_step` puts each
space on the step it was written in (its argument, its `repeat`, or the choice of the step itself);
the others (`vars`, `train`, ...) are `unplaced`.
"""

from __future__ import annotations

from dataclasses import dataclass

from blockspec.builder.spec import HyperParameter, ResolvedSpec, Step, walk


def space_text(hp: HyperParameter) -> str:
    """`tune int 8..32 step 8`, `tune float 0.0001..0.01 log`, `tune choice 3 | 5`."""
    options = hp.options
    if hp.kind == "choice":
        return "tune choice " + " | ".join(_short(v) for v in options.get("values", []))
    if hp.kind == "bool":
        return "tune bool"
    text = f"tune {hp.kind} {_short(options.get('min'))}..{_short(options.get('max'))}"
    if options.get("step"):
        text += f" step {_short(options['step'])}"
    if options.get("sampling") not in (None, "linear"):
        text += f" {options['sampling']}"
    return text


def _short(value) -> str:
    if isinstance(value, dict) and len(value) == 1:
        return str(next(iter(value)))  # a whole step as a choice: its type
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


@dataclass(frozen=True)
class Placed:
    """A search space on the step it was written in; `argument` is `repeat`, an argument's
    path inside the step (`rate`, `filters`), or `step` for a choice between whole steps."""

    step: str
    argument: str
    space: HyperParameter

    @property
    def text(self) -> str:
        return f"{self.argument}: {space_text(self.space)}"


def _site(step: Step) -> str:
    """`network[3].conv` -> `network[3]`: where the step's own keys (`repeat`, ...) live."""
    head, dot, last = step.path.rpartition(".")
    return head if dot and "[" not in last else step.path


def _place(hp: HyperParameter, steps: list[Step]) -> Placed | None:
    best: Placed | None = None
    best_path = ""
    for step in steps:
        path, site = step.path, _site(step)
        if not path:
            continue
        if hp.kind == "choice" and site.startswith(hp.path + ".values["):
            # The chosen step of a choice between steps: the outermost such step.
            if best is None or len(path) < len(best_path):
                best, best_path = Placed(step.name, "step", hp), path
        elif hp.path.startswith(path + "."):
            if best is None or len(path) > len(best_path):
                best, best_path = Placed(step.name, hp.path[len(path) + 1 :], hp), path
        elif hp.path.startswith(site + ".") and "." not in hp.path[len(site) + 1 :]:
            if best is None:  # a step key: `repeat`
                best, best_path = Placed(step.name, hp.path[len(site) + 1 :], hp), path
    return best


def by_step(spec: ResolvedSpec) -> tuple[dict[str, list[Placed]], list[HyperParameter]]:
    """Step name -> the search spaces written in it; and the spaces written elsewhere (`vars`,
    `train`, `tune`), which apply wherever they are used."""
    steps = list(walk(spec.network))
    placed: dict[str, list[Placed]] = {}
    unplaced: list[HyperParameter] = []
    for hp in spec.hyperparameters:
        where = _place(hp, steps) if hp.path.startswith("network") else None
        if where is None:
            unplaced.append(hp)
        else:
            placed.setdefault(where.step, []).append(where)
    return placed, unplaced


def all_texts(spec: ResolvedSpec) -> dict[str, str]:
    """A readable path (`dropout.rate`, `stage2.repeat`, `vars.width`) -> its space, for `diff`."""
    placed, unplaced = by_step(spec)
    out = {f"{p.step}.{p.argument}": space_text(p.space) for ps in placed.values() for p in ps}
    out.update({hp.path: space_text(hp) for hp in unplaced})
    return out
