"""The quick validity check (schemas with their references inlined) must accept exactly what
the full check accepts: every valid file of the reference assistant and of the fixtures,
and none of the broken fixtures' files."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from ruamel.yaml import YAML

from engine.loading.schema_check import _fast_validator, _validator, inline_refs, load_schema

ROOT = Path(__file__).resolve().parents[2]
KINDS = ("domain", "flows", "policies", "nlu_data", "golden")
FOLDERS = {
    "domain": "domain",
    "flows": "flows",
    "policies": "policies",
    "nlu_data": "nlu_data",
    "golden": "tests/golden",
}


def _documents() -> list[tuple[str, str, Any]]:
    docs: list[tuple[str, str, Any]] = []
    yaml = YAML(typ="safe", pure=True)
    for kind, folder in FOLDERS.items():
        for path in sorted((ROOT / folder).rglob("*.yml")):
            if kind == "policies" and path.name == "gates.yml":
                continue  # gates.yml has its own checks
            docs.append((kind, str(path.relative_to(ROOT)), yaml.load(path.read_text("utf-8"))))
    for case in sorted((ROOT / "tests" / "fixtures" / "broken").glob("*.yml")):
        spec = yaml.load(case.read_text("utf-8"))
        for rel, text in (spec.get("files") or {}).items():
            kind = rel.split("/")[0]
            if kind in KINDS[:4] and rel.endswith((".yml", ".yaml")) and "gates" not in rel:
                try:
                    docs.append((kind, f"{case.name}:{rel}", yaml.load(text)))
                except Exception:  # noqa: BLE001 - a fixture whose YAML itself is broken
                    continue
    return docs


DOCUMENTS = _documents()


@pytest.mark.parametrize("kind", KINDS)
def test_no_local_reference_is_left(kind: str) -> None:
    inlined = inline_refs(load_schema(kind))
    body = {k: v for k, v in inlined.items() if k != "$defs"}
    assert '"$ref"' not in repr(body).replace("'", '"')


def test_the_quick_check_agrees_with_the_full_one_on_every_fixture() -> None:
    assert len(DOCUMENTS) > 60
    rejected = 0
    for kind, name, data in DOCUMENTS:
        full = _validator(kind).is_valid(data)
        rejected += not full
        assert _fast_validator(kind).is_valid(data) == full, name
    assert rejected >= 10  # the broken fixtures do exercise the rejecting side
