"""A stylesheet whose parsed rules are shared by every app in the process.

Textual parses the whole stylesheet (its widgets' default CSS and ours) for each app, and again
from scratch each time a screen brings CSS of its own. With one app per SSH session that parse
is most of the time to a user's first frame, for the same text every time. Parsed rule sets are
not changed after parsing, so apps can share them: keyed by the CSS text, where it came from,
and the variables (theme colours) it was parsed with.
"""

from __future__ import annotations

from typing import ClassVar

from textual.cache import LRUCache
from textual.css.model import RuleSet
from textual.css.stylesheet import Stylesheet
from textual.css.tokenize import tokenize_values
from textual.css.tokenizer import Token
from textual.css.types import CSSLocation

VariablesKey = tuple[tuple[str, str], ...]
ParseKey = tuple[str, CSSLocation, bool, int, str, VariablesKey]


class SharedStylesheet(Stylesheet):
    _shared_rules: ClassVar[LRUCache[ParseKey, list[RuleSet]]] = LRUCache(1024)
    # The theme's variables, tokenized: read (never changed) by every parse that uses them.
    _shared_variable_tokens: ClassVar[LRUCache[VariablesKey, dict[str, list[Token]]]] = LRUCache(16)

    def __init__(self, *, variables: dict[str, str] | None = None) -> None:
        super().__init__(variables=variables)
        self._variables_key = tuple(sorted(self._variables.items()))

    @property
    def _variable_tokens(self) -> dict[str, list[Token]]:
        tokens = self._shared_variable_tokens.get(self._variables_key)
        if tokens is None:
            tokens = tokenize_values(self._variables)
            self._shared_variable_tokens[self._variables_key] = tokens
        return tokens

    def set_variables(self, variables: dict[str, str]) -> None:
        super().set_variables(variables)
        self._variables_key = tuple(sorted(self._variables.items()))

    def _parse_rules(
        self,
        css: str,
        read_from: CSSLocation,
        is_default_rules: bool = False,
        tie_breaker: int = 0,
        scope: str = "",
    ) -> list[RuleSet]:
        key = (css, read_from, is_default_rules, tie_breaker, scope, self._variables_key)
        rules = self._shared_rules.get(key)
        if rules is None:
            rules = super()._parse_rules(css, read_from, is_default_rules, tie_breaker, scope)
            self._shared_rules[key] = rules
        return rules

    def copy(self) -> Stylesheet:
        stylesheet = SharedStylesheet(variables=self._variables.copy())
        stylesheet.source = self.source.copy()
        return stylesheet

    def reparse(self) -> None:
        # Textual's reparse, but parsing in a SharedStylesheet so the shared rules are used.
        stylesheet = SharedStylesheet(variables=self._variables)
        for read_from, (css, is_defaults, tie_breaker, scope) in self.source.items():
            stylesheet.add_source(
                css,
                read_from=read_from,
                is_default_css=is_defaults,
                tie_breaker=tie_breaker,
                scope=scope,
            )
        try:
            stylesheet.parse()
        except Exception:
            self._invalid_css.update(stylesheet._invalid_css)
            raise
        self._rules = stylesheet.rules
        self._rules_map = None
        self.source = stylesheet.source
        self._require_parse = False
