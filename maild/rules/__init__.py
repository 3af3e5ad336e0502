"""The rule language: the rules file's loader and validator, the pattern compiler, and text cleaning."""

from maild.rules.loader import Acts, Adoption, CueGroup, Negation, Rule, Rules, load_rules
from maild.rules.patterns import Template

__all__ = ["Acts", "Adoption", "CueGroup", "Negation", "Rule", "Rules", "Template", "load_rules"]
