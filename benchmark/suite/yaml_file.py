"""Reading the YAML files of suites/ (training suites and profile grids) safely, and `--set` overrides.

A suite is a page of YAML written by hand: a repeated key, an alias bomb or a binary file is a
one-line `SuiteError` naming the file, never a hang or a silently kept value. No pydantic here:
`profile` reads its grid with this module on a GPU machine that has only torch.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from benchmark import SuiteError

MAX_SUITE_BYTES = 256 * 1024  # a suite is a page of YAML; a bigger file is a mistake, not a suite
MAX_YAML_NODES = 50_000       # YAML values after alias expansion (an "alias bomb" expands exponentially)
MAX_YAML_DEPTH = 64


class _SuiteLoader(yaml.SafeLoader):
    """PyYAML's safe loader, minus two traps: a repeated key (PyYAML keeps the last one silently)
    is an error, and so is a document whose aliases expand to more than MAX_YAML_NODES values (a
    "billion laughs" hangs whatever walks the result) or that refers to itself."""

    def get_single_node(self) -> yaml.Node | None:
        node = super().get_single_node()
        if node is not None:
            _check_expansion(node)
        return node

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            try:
                repeated = key in seen
                seen.add(key)
            except TypeError:
                continue  # an unhashable key: the base class reports it
            if repeated:
                raise yaml.constructor.ConstructorError(None, None, f"duplicate key {key!r}", key_node.start_mark)
        return super().construct_mapping(node, deep)


def _check_expansion(root: yaml.Node) -> None:
    """Count the values of `root` with every alias expanded, refusing too many, too deep, or a cycle."""
    sizes: dict[int, int] = {}
    def size(node: yaml.Node, depth: int, path: tuple[int, ...]) -> int:
        if id(node) in path:
            raise yaml.YAMLError("an alias refers to a value that contains it")
        if depth > MAX_YAML_DEPTH:
            raise yaml.YAMLError(f"values nested more than {MAX_YAML_DEPTH} deep")
        if id(node) not in sizes:
            children = [c for pair in node.value for c in pair] if isinstance(node, yaml.MappingNode) else (
                node.value if isinstance(node, yaml.SequenceNode) else [])
            total = 1
            for child in children:
                total += size(child, depth + 1, (*path, id(node)))
                if total > MAX_YAML_NODES:
                    break
            sizes[id(node)] = total
        if sizes[id(node)] > MAX_YAML_NODES:
            raise yaml.YAMLError(f"more than {MAX_YAML_NODES:,} values once aliases are expanded")
        return sizes[id(node)]
    size(root, 0, ())


def read_yaml(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise SuiteError(f"{path}: no such suite file")
    if path.stat().st_size > MAX_SUITE_BYTES:
        raise SuiteError(f"{path}: {path.stat().st_size:,} bytes; a suite file is at most {MAX_SUITE_BYTES // 1024} KiB")
    try:
        raw = yaml.load(path.read_text(), Loader=_SuiteLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        kind = "YAML syntax error" if isinstance(exc, yaml.MarkedYAMLError) and "duplicate key" not in problem else "YAML error"
        raise SuiteError(f"{path}: {kind}{where}: {problem}") from None
    except UnicodeDecodeError:
        raise SuiteError(f"{path}: not a text file (expected UTF-8 YAML)") from None
    if raw is None:
        raise SuiteError(f"{path}: the file is empty; expected a mapping with at least 'recipe' and 'grid'")
    if not isinstance(raw, dict):
        raise SuiteError(f"{path}: expected a mapping of keys at the top level, got {type(raw).__name__}")
    return raw


def apply_override(raw: dict[str, Any], override: str, path: Path | str = "") -> None:
    """Apply `key.sub=value` (value parsed as YAML) to the raw suite mapping, in place."""
    key, sep, text = override.partition("=")
    if not sep or not key.strip():
        raise SuiteError(f"--set {override}: expected key=value, e.g. --set recipe.max_steps=600")
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        raise SuiteError(f"--set {override}: the value '{text}' is not valid YAML") from None
    parts = key.strip().split(".")
    node: Any = raw
    for depth, part in enumerate(parts[:-1]):
        child = node.get(part)
        if part == "recipe" and depth == 0 and isinstance(child, str):
            child = {"name": child}  # `recipe: name` grows into a mapping of overrides
        if child is None:
            child = {}
        if not isinstance(child, dict):
            raise SuiteError(f"--set {override}: '{'.'.join(parts[: depth + 1])}' is not a mapping in {path}")
        node[part] = child
        node = child
    node[parts[-1]] = value
