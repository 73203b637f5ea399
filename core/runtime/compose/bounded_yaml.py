"""YAML text to a tree, bounded: at most `MAX_COMPOSE_BYTES` of text, and the tree with every
anchor and merge key expanded counted on the node graph before any Python object is built
("billion laughs" and merge keys of merge keys cost minutes of CPU otherwise).
"""

from __future__ import annotations

from typing import Any

import yaml

from core.runtime.compose.errors import ComposeRejected
from core.runtime.compose.limits import MAX_COMPOSE_BYTES, MAX_DEPTH, MAX_NODES


def load_yaml(text: str, what: str) -> dict[str, Any]:
    if len(text.encode(errors="replace")) > MAX_COMPOSE_BYTES:
        raise ComposeRejected(f"{what} is larger than 1 MiB; a compose file is much smaller.")
    try:
        data = _bounded_load(text, what)
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        raise ComposeRejected(f"{what} is not valid YAML{where}: {error.problem}.") from None
    except yaml.YAMLError as error:
        raise ComposeRejected(f"{what} is not valid YAML: {error}.") from None
    except RecursionError:
        raise ComposeRejected(f"{what} nests too deeply.") from None
    if data is None:
        raise ComposeRejected(f"{what} is empty.")
    if not isinstance(data, dict):
        raise ComposeRejected(
            f"{what} is not a compose file: its top level should be a mapping with a services: "
            "section."
        )
    return data


def _bounded_load(text: str, what: str) -> Any:
    """yaml.safe_load, refusing a document whose expanded tree is too large before building it.

    Composing the node graph costs time in proportion to the text (aliases are references to
    one node); building Python objects from it costs time in proportion to the tree with every
    alias and merge key expanded, which a few kilobytes can make astronomical (merge keys of
    merge keys took minutes of CPU). So that expanded size is counted on the graph first.
    """
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _ExpansionCounter(what).count(node)
        return loader.construct_document(node)
    finally:
        loader.dispose()


class _ExpansionCounter:
    """The size of a YAML node graph with every alias and merge expanded, bounded."""

    def __init__(self, what: str) -> None:
        self.what = what
        self.sizes: dict[int, int] = {}
        self.open: set[int] = set()

    def too_large(self) -> ComposeRejected:
        return ComposeRejected(
            f"{self.what} is too large once its anchors are expanded (merge keys included: more "
            f"than {MAX_NODES:,} values); write the repeated parts out, or share less."
        )

    def count(self, node: yaml.Node, depth: int = 0) -> int:
        key = id(node)
        known = self.sizes.get(key)
        if known is not None:
            return known
        if depth > MAX_DEPTH:
            raise ComposeRejected(f"{self.what} nests more than {MAX_DEPTH} levels deep.")
        if key in self.open:
            raise ComposeRejected(f"{self.what} refers to itself (an anchor inside its own alias).")
        self.open.add(key)
        total = 1
        if isinstance(node, yaml.MappingNode):
            for item_key, item_value in node.value:
                total += self.count(item_key, depth + 1) + self.count(item_value, depth + 1)
                if total > MAX_NODES:
                    raise self.too_large()
        elif isinstance(node, yaml.SequenceNode):
            for item in node.value:
                total += self.count(item, depth + 1)
                if total > MAX_NODES:
                    raise self.too_large()
        self.open.discard(key)
        self.sizes[key] = total
        return total
