"""The catalogue of project diagnostics: one stable code per rule.

Codes never change meaning once released. ``docs/errors.md`` is generated from this
table (``taiwa errors --markdown``), so the documentation and the checker cannot drift.

Ranges: ``E0xx`` reading files, ``E1xx`` schema, ``E2xx`` merging files, ``E3xx``
cross-references and compilation, ``E4xx`` golden sets (``taiwa eval``), ``W...`` warnings.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from engine.diagnostics import Diagnostic, Location, Severity, closest


@dataclass(frozen=True, slots=True)
class ErrorSpec:
    """One rule of the catalogue."""

    code: str
    title: str
    """One line saying what the rule catches (used in the docs)."""
    fix: str
    """The default fix; a diagnostic may give a more precise one."""

    @property
    def severity(self) -> Severity:
        return "warning" if self.code.startswith("W") else "error"

    def at(
        self,
        location: Location | None,
        message: str,
        *,
        expected: str | None = None,
        valid: Iterable[str] = (),
        name: str | None = None,
        fix: str | None = None,
        related: Iterable[Location] = (),
    ) -> Diagnostic:
        """A diagnostic of this rule; ``name`` + ``valid`` give a "did you mean"."""
        options = tuple(sorted(set(valid)))
        return Diagnostic(
            code=self.code,
            severity=self.severity,
            message=message,
            location=location,
            expected=expected,
            valid=options,
            suggestion=closest(name, options) if name is not None and options else None,
            fix=fix or self.fix,
            related=tuple(related),
        )


class Errors:
    """The catalogue (spaCy's ``Errors.E###`` idea, with a fix for each)."""

    # -- reading files ---------------------------------------------------------------
    E001 = ErrorSpec(
        "E001",
        "The file is not valid YAML.",
        "Correct the YAML syntax at the position shown (indentation, a missing ':' or a stray quote).",
    )
    E002 = ErrorSpec(
        "E002", "A key appears twice in the same YAML mapping.", "Remove one of the two keys or merge their contents."
    )
    E003 = ErrorSpec("E003", "The file cannot be read as UTF-8 text.", "Save the file as UTF-8 text.")
    E004 = ErrorSpec(
        "E004",
        "The top level of the file is not a mapping.",
        "Start the file with its top-level keys, e.g. `intents:` or `flows:`.",
    )
    E005 = ErrorSpec(
        "E005",
        "A required project folder is missing or empty.",
        "Create the folder with at least one .yml file, or run `taiwa init` to scaffold a project.",
    )
    E006 = ErrorSpec(
        "E006",
        "The file is too large or expands too many aliases.",
        "Split the file or remove the recursive/repeated YAML aliases.",
    )
    E007 = ErrorSpec(
        "E007",
        "The project's actions/ package fails to import.",
        "Fix the Python error shown; run `python -c 'import actions'` in the project folder to see the traceback.",
    )
    # -- schema ----------------------------------------------------------------------
    E101 = ErrorSpec("E101", "A key that this place does not accept.", "Remove the key or correct its spelling.")
    E102 = ErrorSpec("E102", "A required key is missing.", "Add the missing key.")
    E103 = ErrorSpec("E103", "A value has the wrong type.", "Change the value to the expected type.")
    E104 = ErrorSpec("E104", "A value is not one of the allowed choices.", "Use one of the valid values.")
    E105 = ErrorSpec(
        "E105",
        "A name has characters that are not allowed.",
        "Use letters, digits, '_' or '-', and do not start with a digit.",
    )
    E106 = ErrorSpec("E106", "A number is out of range.", "Use a number within the allowed range.")
    E107 = ErrorSpec(
        "E107",
        "A value is empty or has too few / too many items.",
        "Give the value the number of items or characters expected.",
    )
    E108 = ErrorSpec(
        "E108", "An item does not say what kind it is, or says several.", "Give the item exactly one of the kind keys."
    )
    E109 = ErrorSpec(
        "E109", "A key is not allowed in this combination.", "Remove the key, or change the `type` that forbids it."
    )
    E110 = ErrorSpec("E110", "A list has repeated items.", "Remove the repeated items.")
    # -- merging files ---------------------------------------------------------------
    E201 = ErrorSpec(
        "E201", "The same name or key is defined in two places.", "Keep one definition and remove or rename the other."
    )
    E202 = ErrorSpec(
        "E202", "NLU data files disagree on the language.", "Use the same `language:` in every file of nlu_data/."
    )
    # -- cross-references and compilation --------------------------------------------
    E301 = ErrorSpec(
        "E301", "An unknown slot is referenced.", "Declare the slot under `slots:` in domain/ or correct the name."
    )
    E302 = ErrorSpec(
        "E302",
        "An unknown response is referenced.",
        "Add the response under `responses:` in domain/ or correct the name.",
    )
    E303 = ErrorSpec(
        "E303",
        "An unknown action is referenced.",
        "List the action under `actions:` in domain/ (and implement it in actions/), or use a response name.",
    )
    E304 = ErrorSpec(
        "E304",
        "An unknown intent is referenced.",
        "Declare the intent under `intents:` in domain/ or correct the name.",
    )
    E305 = ErrorSpec(
        "E305",
        "An unknown entity is referenced.",
        "Declare the entity under `entities:` in domain/ or correct the name.",
    )
    E306 = ErrorSpec("E306", "An unknown flow is referenced.", "Define the flow in flows/ or correct the id.")
    E307 = ErrorSpec(
        "E307",
        "A `next` or `on_failure` points at a step that does not exist.",
        "Add a step with that `id`, or point at an existing step or END.",
    )
    E308 = ErrorSpec("E308", "A step can never be reached.", "Point a `next` at the step, or remove it.")
    E309 = ErrorSpec(
        "E309",
        "Flows `link`/`call` each other in a cycle with no way out.",
        "Make one flow in the cycle end without linking or calling back (e.g. add a branch to END).",
    )
    E310 = ErrorSpec(
        "E310",
        "A collect step has no response to ask for its slot.",
        "Add a response `utter_ask_<slot>` or give the step `utter: <response>`.",
    )
    E311 = ErrorSpec(
        "E311",
        "A response uses a {placeholder} that is not a slot.",
        "Declare the slot, correct the placeholder, or double the braces ({{ }}) for a literal brace.",
    )
    E312 = ErrorSpec(
        "E312",
        "An intent used by a trigger, rule or mapping has no training examples.",
        "Add examples for the intent in nlu_data/.",
    )
    E313 = ErrorSpec("E313", "The same example is given for two intents.", "Keep the example under one intent only.")
    E314 = ErrorSpec(
        "E314",
        "A value is not allowed for a categorical slot.",
        "Use one of the slot's `values`, or add the value to them.",
    )
    E315 = ErrorSpec(
        "E315",
        "A condition does not parse.",
        "Write the condition in the expression language, e.g. \"priority == 'high' and customer_id is set\".",
    )
    E316 = ErrorSpec("E316", "Two steps in one flow have the same id.", "Give each step a unique `id`.")
    E317 = ErrorSpec(
        "E317",
        "A value does not fit the slot's type or range.",
        "Use a value of the slot's type (and within min_value/max_value).",
    )
    E318 = ErrorSpec(
        "E318",
        "An entity annotation in a training example is malformed.",
        'Write annotations as [text](entity) or [text]{"entity": "name", "value": "canonical"}.',
    )
    E319 = ErrorSpec("E319", "A regular expression does not compile.", "Correct the pattern (Python `re` syntax).")
    E320 = ErrorSpec(
        "E320",
        "A role or group is not declared for its entity.",
        "Add the role/group to the entity in domain/ or correct the name.",
    )
    E321 = ErrorSpec(
        "E321",
        "A rule or step names something that is neither a response nor an action.",
        "Use a response name (utter_...) or an action listed under `actions:`.",
    )
    E322 = ErrorSpec(
        "E322",
        "The NLU pipeline names a component that is not registered.",
        "Use a registered component name (see `valid:`), with its version suffix, e.g. classifier.linear.v1.",
    )
    E323 = ErrorSpec(
        "E323",
        "`nlu_threshold: auto` is set, but the NLU data has no `oos` or `out_of_scope` intent to learn the threshold from.",
        "Add an `oos` (or `out_of_scope`) intent with out-of-scope examples to nlu_data/, or set nlu_threshold to a number (e.g. 0.4).",
    )
    # -- golden sets (taiwa eval) ----------------------------------------------------
    E401 = ErrorSpec(
        "E401",
        "Two golden cases have the same case_id.",
        "Give every case of the golden set (all files of tests/golden/) its own `case_id`.",
    )
    E402 = ErrorSpec(
        "E402",
        "The golden set has no cases.",
        "Add .yml files with a top-level `cases:` list to tests/golden/, or point `--golden` at them.",
    )
    E403 = ErrorSpec(
        "E403",
        "A golden turn's /intent{...} message cannot be read.",
        'Write a JSON object after the intent, e.g. /inform{"priority": "high"}, or use `intent:` with `entities:`.',
    )
    # -- warnings --------------------------------------------------------------------
    W001 = ErrorSpec("W001", "A YAML file is empty.", "Remove the file or give it content.")
    W002 = ErrorSpec("W002", "An intent has no training examples.", "Add examples in nlu_data/ or remove the intent.")
    W003 = ErrorSpec(
        "W003",
        "A declared action is not implemented in actions/.",
        'Implement it with @action("name") in actions/, or run it on an action server.',
    )
    W004 = ErrorSpec("W004", "An intent has few training examples.", "Give each intent at least 10 varied examples.")


def catalogue() -> list[ErrorSpec]:
    """Every rule, in code order."""
    specs = [v for k, v in vars(Errors).items() if isinstance(v, ErrorSpec) and k == v.code]
    return sorted(specs, key=lambda s: s.code)


def catalogue_markdown() -> str:
    """The catalogue as a Markdown document (``docs/errors.md``)."""
    lines = [
        "# taiwa diagnostics",
        "",
        "Generated by `taiwa errors --markdown` from `engine/errors.py`; do not edit by hand.",
        "",
        "Every problem `taiwa validate` reports is printed as",
        "`path:line:col: error[CODE] message`, followed by what was expected, the valid names",
        '(with a "did you mean" suggestion) and a `Fix:` line. Codes are stable.',
        "",
        "| code | severity | catches | fix |",
        "| --- | --- | --- | --- |",
    ]
    for spec in catalogue():
        fix = spec.fix.replace("|", "\\|")
        lines.append(f"| {spec.code} | {spec.severity} | {spec.title} | {fix} |")
    return "\n".join(lines) + "\n"
