"""User blocks (`blocks:`) and per-type `defaults`: collected once, expanded where used."""

from __future__ import annotations

from typing import Any

from blockspec.builder import registry
from blockspec.builder.errors import did_you_mean, shorten
from blockspec.builder.load import format_path
from blockspec.builder.resolve.common import BLOCK_KEYS, INVALID, RESERVED_NAMES, Scope, is_name
from blockspec.builder.resolve.step_keys import templated
from blockspec.builder.spec import Step


class BlocksPart:
    """The resolver's user-block and `defaults` rules (mixed into `Resolver`)."""

    def collect_blocks(self, raw: Any) -> None:
        if raw is None:
            return
        if not isinstance(raw, dict):
            self.error(
                ("blocks",),
                f"`blocks` must map block names to {{args, body}}. Received: {shorten(raw)}",
            )
            return
        for name, block in raw.items():
            path = ("blocks", name)
            if not is_name(name):
                self.error(path, f"invalid block name (letters, digits, _). Received: {name!r}")
                continue
            known = registry.get(name)
            if (
                known is not None and known.kind != "block"
            ):  # a spec's own block may replace a built-in block
                self.error(
                    path,
                    f"block `{name}` has the name of a built-in {known.kind}; choose another name",
                )
                continue
            if not isinstance(block, dict):
                self.error(
                    path, f"a block is {{args: {{...}}, body: [steps]}}. Received: {shorten(block)}"
                )
                continue
            ok = True
            for key in block:
                if key not in BLOCK_KEYS:
                    self.error(
                        (*path, key), f"unknown block key `{key}`.{did_you_mean(key, BLOCK_KEYS)}"
                    )
                    ok = False
            args = block.get("args") or {}
            if not isinstance(args, dict):
                self.error(
                    (*path, "args"),
                    f"`args` maps argument names to defaults (null = required). Received: {shorten(args)}",
                )
                ok = False
            else:
                for arg in args:
                    if not is_name(arg) or arg in RESERVED_NAMES or arg == "name":
                        self.error(
                            (*path, "args", arg),
                            f"invalid argument name (not `i` or `name`). Received: {arg!r}",
                        )
                        ok = False
            body = block.get("body")
            if not isinstance(body, list) or not body:
                self.error(
                    (*path, "body"),
                    f"a block needs `body`: a non-empty list of steps. Received: {shorten(body)}",
                )
                ok = False
            if ok:
                self.blocks[name] = block
            else:
                self.broken_blocks.add(name)

    def resolve_defaults(self, raw: Any) -> None:
        if raw is None:
            return
        if not isinstance(raw, dict):
            self.error(
                ("defaults",), f"`defaults` maps step types to arguments. Received: {shorten(raw)}"
            )
            return
        for type_name, args in raw.items():
            path = ("defaults", type_name)
            params = self.params_of(str(type_name))
            if params is None:
                self.error(
                    path,
                    f"unknown step type `{type_name}` in defaults.{registry.suggest(type_name, self.blocks)}",
                )
                continue
            if not isinstance(args, dict):
                self.error(
                    path,
                    f"defaults for `{type_name}` must be a mapping of arguments. Received: {shorten(args)}",
                )
                continue
            resolved = {}
            for key, value in args.items():
                if not params(key):
                    self.error((*path, key), self.unknown_arg(type_name, key))
                    continue
                resolved[key] = self.value(
                    value, (*path, key), self.vars, f"defaults/{type_name}/{key}"
                )
            self.defaults[type_name] = resolved

    def params_of(self, type_name: str):
        """A predicate `arg -> accepted` for a step type or user block; None if the type is unknown."""
        if type_name in self.blocks:
            args = self.blocks[type_name].get("args") or {}
            return lambda arg: arg in args
        entry = registry.get(type_name)
        return None if entry is None else entry.accepts

    def unknown_arg(self, type_name: str, arg: str) -> str:
        if type_name in self.blocks:
            names = list(self.blocks[type_name].get("args") or {})
        else:
            entry = registry.get(type_name)
            names = [*entry.params, *sorted(entry.passthrough)]
        return (
            f"unknown argument `{arg}` for `{type_name}`.{did_you_mean(arg, names)} Received: {arg}"
        )

    def user_block(
        self, type_name, given: dict, path: tuple, env: dict, name: str, hp: str, scope, origins
    ) -> Step | None:
        block = self.blocks[type_name]
        declared = block.get("args") or {}
        if type_name in self.block_stack:
            chain = " -> ".join([*self.block_stack, type_name])
            self.error(
                path, f"block `{type_name}` uses itself ({chain}); blocks cannot be recursive"
            )
            return None
        bound = {}
        for key in given:
            if key not in declared:
                self.error(origins.get(key, (*path, key)), self.unknown_arg(type_name, key))
        merged = {
            **{k: v for k, v in declared.items() if v is not None},
            **self.defaults.get(type_name, {}),
            **given,
        }
        for key in declared:
            if key not in merged:
                self.error(path, f"missing required argument `{key}` for block `{type_name}`")
                bound[key] = INVALID
                continue
            at = origins.get(key, (*path, key))
            bound[key] = self.value(merged[key], at, env, f"{hp}/{key}")
            if templated(bound[key]):  # (1.1) `skip: "enc${3 - i}"`: a name made at the use site
                bound[key] = self.interpolate(bound[key], at, env, f"{hp}/{key}")
        body_env = {**self.vars, **bound}
        in_shape = self.flow  # the block's input: its body's first step reads it
        self.block_stack.append(type_name)
        self.caller_scopes.append(scope)  # names passed in are looked up where the block is used
        self.context.append(f"block `{type_name}` used at {format_path(path[:-1])}")
        try:
            body = self.resolve_steps(
                block["body"],
                ("blocks", type_name, "body"),
                Scope(prefix=name, hp=hp),
                body_env,
                in_shape=in_shape,
            )
        finally:
            self.block_stack.pop()
            self.caller_scopes.pop()
            self.context.pop()
        return Step(type=type_name, name=name, args=bound, children=[body], block=type_name)
