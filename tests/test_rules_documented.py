"""README.md lists every rule a refusal can name, and no other: a frontend translates them."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from domain.account import _STAGE_FACTS

ROOT = Path(__file__).parent.parent


def rules_in_code() -> set[str]:
    """Each rule name the code gives a refusal: the first argument of `RuleViolation(...)` (or
    of `super().__init__(...)` in a class of its own, such as JobEnded), a `rule=` of a
    problem, and the rules of the stage facts (which one refusal names from a variable)."""
    found = {rule for rule, _ in _STAGE_FACTS.values()}
    for path in [*ROOT.joinpath("domain").rglob("*.py"), *ROOT.joinpath("services").rglob("*.py")]:
        tree = ast.parse(path.read_text(encoding="utf-8"))
        violations = {
            node.name
            for node in ast.walk(tree)
            if isinstance(node, ast.ClassDef)
            and any(getattr(b, "id", None) == "RuleViolation" for b in node.bases)
        }
        for node in ast.walk(tree):
            if isinstance(node, ast.ClassDef) and node.name in violations:
                for call in ast.walk(node):
                    if (
                        isinstance(call, ast.Call)
                        and getattr(call.func, "attr", None) == "__init__"
                        and call.args
                        and isinstance(call.args[0], ast.Constant)
                    ):
                        found.add(call.args[0].value)
            if not isinstance(node, ast.Call):
                continue
            called = getattr(node.func, "id", getattr(node.func, "attr", None))
            if called == "RuleViolation" and isinstance(node.args[0], ast.Constant):
                found.add(node.args[0].value)  # else a stage fact's
            found.update(
                k.value.value
                for k in node.keywords
                if k.arg == "rule" and isinstance(k.value, ast.Constant)
            )
    return found


def test_the_readme_lists_every_rule_a_refusal_names_and_no_other():
    readme = ROOT.joinpath("README.md").read_text(encoding="utf-8")
    section = readme.split("### Rule names", 1)[1].split("\n#", 1)[0]
    listed = re.findall(r"^\| `([a-z_]+)` \| (\d{3}) \|", section, flags=re.MULTILINE)

    assert len(listed) == len({rule for rule, _ in listed}), "a rule listed twice"
    assert {rule for rule, _ in listed} == rules_in_code()
