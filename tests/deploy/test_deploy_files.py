"""deploy/: the Prometheus rules and scrape config and the Grafana dashboard operators load.

Every ``taiwa_*`` series these files name must be one the server really exposes: names, types
and labels come from the server's own :class:`engine.server.app.Metrics` (its registries,
collected), never from a list kept here. Settings, commands and emergency switches the runbooks
name must exist too. ``promtool check rules`` runs when promtool is installed.
"""

from __future__ import annotations

import dataclasses
import json
import re
import shlex
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.metrics import MetricWrapperBase
from ruamel.yaml import YAML

from cli.main import build_parser
from engine.policies.config import EmergencyConfig
from engine.server.app import MULTIPROC_ENV, Metrics

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
RULES = DEPLOY / "prometheus" / "taiwa-rules.yml"
SCRAPE = DEPLOY / "prometheus" / "prometheus.yml"
DASHBOARD = DEPLOY / "grafana" / "taiwa-dashboard.json"
DEPLOY_README = DEPLOY / "README.md"

TARGET_LABELS = frozenset({"job", "instance"})
"""Labels Prometheus adds to every series it scrapes."""
SEVERITIES = frozenset({"critical", "warning", "info"})
RULE_KEYS = frozenset({"record", "alert", "expr", "for", "keep_firing_for", "labels", "annotations"})
QUANTILES = (0.5, 0.95, 0.99)
"""The quantiles recorded for every histogram the server exposes."""

DURATION = re.compile(r"^(?:\d+(?:ms|[smhdwy]))+$")
METRIC_NAME = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")
IDENTIFIER = re.compile(r"[A-Za-z_:][A-Za-z0-9_:]*")
STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
SELECTOR = re.compile(r"([A-Za-z_:][A-Za-z0-9_:]*)\s*\{([^}]*)\}")
MATCHER = re.compile(r'([A-Za-z_][A-Za-z0-9_]*)\s*(?:=~|!~|!=|=)\s*"(?:[^"\\]|\\.)*"')
GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)")
QUANTILE = re.compile(r"histogram_quantile\(\s*([0-9.]+)\s*,\s*sum\s+by\s*\(([^)]*)\)")
ENV_NAME = re.compile(r"\b[A-Z][A-Z0-9]*(?:_[A-Z0-9]+)+\b")
COMMAND = re.compile(r"`(taiwa [^`]+)`")
EMERGENCY_KEY = re.compile(r"\bemergency\.([a-z_]+)")
VARIABLE = re.compile(r"\$(?:\{(\w+)(?::\w+)?\}|(\w+))")


# ------------------------------------------------------------------------------ what the server exposes


@dataclasses.dataclass(frozen=True)
class Exposed:
    series: dict[str, frozenset[str]]
    """Every sample name /metrics can show -> its label names."""
    families: dict[str, str]
    """Metric family name -> its type (counter, histogram, ...)."""

    def family_of(self, series: str) -> str:
        """The family a sample name belongs to ("" for none)."""
        return max((f for f in self.families if series.startswith(f)), key=len, default="")


@pytest.fixture(scope="module")
def exposed() -> Exposed:
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv(MULTIPROC_ENV, raising=False)
        metrics = Metrics()
    # A labelled metric shows no sample until it has a child: give each one, so that its sample
    # names (``_total``, ``_bucket``, ...) and label names are the real ones.
    for collector in vars(metrics).values():
        if isinstance(collector, MetricWrapperBase):
            labelnames: tuple[str, ...] = tuple(getattr(collector, "_labelnames", ()))
            if labelnames:
                collector.labels(*("x" for _ in labelnames))
    registries = {id(r): r for r in vars(metrics).values() if isinstance(r, CollectorRegistry)}
    assert registries, "Metrics has no CollectorRegistry"
    series: dict[str, frozenset[str]] = {}
    families: dict[str, str] = {}
    for registry in registries.values():
        for family in registry.collect():
            assert family.samples, f"{family.name} shows no sample: cannot tell its series names"
            families[family.name] = family.type
            for sample in family.samples:
                series[sample.name] = series.get(sample.name, frozenset()) | frozenset(sample.labels)
    assert any(name.startswith("taiwa_") for name in series), sorted(series)
    return Exposed(series, families)


# ------------------------------------------------------------------------------ reading the files


def load_yaml(path: Path) -> Any:
    return YAML(typ="safe", pure=True).load(path.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def rules_doc() -> Any:
    return load_yaml(RULES)


@pytest.fixture(scope="module")
def dashboard() -> Any:
    return json.loads(DASHBOARD.read_text(encoding="utf-8"))


def all_rules(doc: Any) -> list[dict[str, Any]]:
    return [rule for group in doc["groups"] for rule in group["rules"]]


def records(doc: Any) -> dict[str, str]:
    """Recording rule name -> its expression."""
    return {r["record"]: r["expr"] for r in all_rules(doc) if "record" in r}


def panels(dash: Any) -> Iterator[dict[str, Any]]:
    for panel in dash["panels"]:
        yield panel
        yield from panel.get("panels", [])  # collapsed rows hold their panels


def data_panels(dash: Any) -> list[dict[str, Any]]:
    return [p for p in panels(dash) if p["type"] != "row"]


def variable_queries(dash: Any) -> list[str]:
    queries: list[str] = []
    for var in dash["templating"]["list"]:
        if var["type"] == "query":
            query = var["query"]
            queries.append(query["query"] if isinstance(query, dict) else query)
    return queries


def rule_exprs(doc: Any) -> list[str]:
    return [str(r["expr"]) for r in all_rules(doc)]


def dashboard_exprs(dash: Any) -> list[str]:
    return [str(t["expr"]) for p in data_panels(dash) for t in p["targets"]] + variable_queries(dash)


def names_in(expr: str) -> tuple[set[str], set[str]]:
    """The raw ``taiwa_*`` series and the recording rules (``level:metric:ops``) an expression reads."""
    tokens = set(IDENTIFIER.findall(STRING.sub('""', expr)))
    return {t for t in tokens if t.startswith("taiwa_")}, {t for t in tokens if ":" in t}


def label_list(text: str) -> set[str]:
    return {label.strip() for label in text.split(",") if label.strip()}


# ------------------------------------------------------------------------------ the rules file


def test_rules_file_is_groups_of_rules(rules_doc: Any) -> None:
    assert isinstance(rules_doc, dict) and set(rules_doc) == {"groups"}
    groups = rules_doc["groups"]
    assert isinstance(groups, list) and groups
    names = [g["name"] for g in groups]
    assert len(names) == len(set(names)), f"group names repeat: {names}"
    for group in groups:
        assert set(group) <= {"name", "interval", "limit", "rules"}, group.keys()
        assert "interval" not in group or DURATION.match(str(group["interval"]))
        assert isinstance(group["rules"], list) and group["rules"], f"group {group['name']} has no rules"


def test_every_rule_is_a_record_or_a_complete_alert(rules_doc: Any) -> None:
    seen: set[str] = set()
    for rule in all_rules(rules_doc):
        assert set(rule) <= RULE_KEYS, f"unknown keys in {rule}"
        assert ("record" in rule) != ("alert" in rule), f"a rule is a record or an alert: {rule}"
        name = str(rule.get("record") or rule.get("alert"))
        assert name not in seen, f"{name} is defined twice"
        seen.add(name)
        assert isinstance(rule.get("expr"), str) and rule["expr"].strip(), f"{name} has no expr"
        if "record" in rule:
            assert METRIC_NAME.match(name) and name.count(":") == 2, f"{name}: not level:metric:operations"
            assert not {"for", "annotations"} & set(rule), f"{name}: a recording rule has no for/annotations"
            continue
        assert re.fullmatch(r"Taiwa[A-Z][A-Za-z0-9]*", name), f"alert {name}: CamelCase, prefixed Taiwa"
        assert DURATION.match(str(rule.get("for", ""))), f"{name}: `for:` missing or not a duration"
        assert rule.get("labels", {}).get("severity") in SEVERITIES, f"{name}: labels.severity"
        annotations = rule.get("annotations", {})
        for key in ("summary", "description", "runbook"):
            assert isinstance(annotations.get(key), str) and annotations[key].strip(), f"{name}: annotations.{key}"


def test_expressions_are_balanced(rules_doc: Any, dashboard: Any) -> None:
    exprs = rule_exprs(rules_doc) + dashboard_exprs(dashboard)
    pairs = {")": "(", "]": "[", "}": "{"}
    for expr in exprs:
        stack: list[str] = []
        for char in STRING.sub('""', expr):
            if char in "([{":
                stack.append(char)
            elif char in pairs:
                assert stack and stack.pop() == pairs[char], f"unbalanced {char!r} in {expr}"
        assert not stack, f"unclosed {stack} in {expr}"


def test_every_histogram_has_its_quantiles_recorded(rules_doc: Any, exposed: Exposed) -> None:
    histograms = [name for name, kind in exposed.families.items() if kind == "histogram"]
    assert histograms
    recorded = {(float(q), name) for expr in records(rules_doc).values() for q, name in _quantiles(expr)}
    for histogram in histograms:
        for q in QUANTILES:
            assert (q, f"{histogram}_bucket") in recorded, f"no recording rule for the p{q * 100:g} of {histogram}"


def _quantiles(expr: str) -> list[tuple[str, str]]:
    found: list[tuple[str, str]] = []
    for match in QUANTILE.finditer(expr):
        raw, _ = names_in(expr[match.end() :])
        found += [(match.group(1), name) for name in raw]
    return found


def test_histogram_quantiles_keep_le_and_read_buckets(rules_doc: Any, dashboard: Any) -> None:
    exprs = rule_exprs(rules_doc) + dashboard_exprs(dashboard)
    for expr in (e for e in exprs if "histogram_quantile" in e):
        quantiles = QUANTILE.findall(expr)
        assert quantiles, f"histogram_quantile without `sum by (...)`: {expr}"
        for q, by in quantiles:
            assert 0 < float(q) < 1, expr
            assert "le" in label_list(by), f"histogram_quantile must keep le: {expr}"
        raw, _ = names_in(expr)
        assert raw and all(name.endswith("_bucket") for name in raw), expr
        assert re.search(r"rate\([^)]*\[5m\]\)", expr), f"over rate(...[5m]): {expr}"


# ------------------------------------------------------------------------------ names and labels


def test_every_series_named_is_exposed_by_the_server(rules_doc: Any, dashboard: Any, exposed: Exposed) -> None:
    for where, exprs in (("rules", rule_exprs(rules_doc)), ("dashboard", dashboard_exprs(dashboard))):
        for expr in exprs:
            raw, _ = names_in(expr)
            unknown = raw - set(exposed.series)
            assert not unknown, f"{where}: {sorted(unknown)} not exposed (exposed: {sorted(exposed.series)}) in {expr}"


def test_every_recording_rule_used_is_defined(rules_doc: Any, dashboard: Any) -> None:
    defined = set(records(rules_doc))
    used_by_dashboard: set[str] = set()
    for where, exprs in (("rules", rule_exprs(rules_doc)), ("dashboard", dashboard_exprs(dashboard))):
        for expr in exprs:
            _, recorded = names_in(expr)
            assert recorded <= defined, f"{where}: undefined recording rules {sorted(recorded - defined)} in {expr}"
            if where == "dashboard":
                used_by_dashboard |= recorded
    assert used_by_dashboard, "the dashboard reads no recording rule"


def test_every_metric_family_is_on_the_dashboard_and_in_the_rules(
    rules_doc: Any, dashboard: Any, exposed: Exposed
) -> None:
    """A metric the server exposes and no one watches is a gap in the deployment files."""
    defined = records(rules_doc)
    taiwa = {f for f in exposed.families if f.startswith("taiwa_")}
    for where, exprs in (("rules", rule_exprs(rules_doc)), ("dashboard", dashboard_exprs(dashboard))):
        read = {exposed.family_of(name) for expr in exprs for name in series_read(expr, defined)}
        assert taiwa <= read, f"{where} never reads {sorted(taiwa - read)}"


def series_read(expr: str, defined: dict[str, str]) -> set[str]:
    """The raw series an expression reads, through the recording rules it reads too."""
    raw, recorded = names_in(expr)
    for name in recorded & set(defined):
        raw |= series_read(defined[name], defined)
    return raw


def _labels_of(rules_doc: Any, exposed: Exposed) -> dict[str, frozenset[str]]:
    """Series or recording rule -> the labels it carries."""
    labels = {name: found | TARGET_LABELS for name, found in exposed.series.items()}
    for name, expr in records(rules_doc).items():
        first = GROUPING.search(expr)
        if first and re.match(r"\s*by\b", expr[first.start() :]):
            labels[name] = frozenset(label_list(first.group(1)) - {"le"})
        else:
            carried: set[str] = set(TARGET_LABELS)
            for raw in names_in(expr)[0]:
                carried |= labels.get(raw, frozenset())
            labels[name] = frozenset(carried)
    return labels


def test_label_matchers_and_groupings_use_real_labels(rules_doc: Any, dashboard: Any, exposed: Exposed) -> None:
    labels = _labels_of(rules_doc, exposed)
    for expr in rule_exprs(rules_doc) + dashboard_exprs(dashboard):
        for name, matchers in SELECTOR.findall(expr):
            if name in labels:
                used = set(MATCHER.findall(matchers)) - {"__name__"}
                assert used <= labels[name], f"{name} has no label {sorted(used - labels[name])}: {expr}"
        raw, recorded = names_in(expr)
        if not raw | recorded:
            continue
        available: set[str] = {"le"}
        for name in raw | recorded:
            available |= labels.get(name, frozenset())
        for grouping in GROUPING.findall(expr):
            assert label_list(grouping) <= available, f"no such label {label_list(grouping) - available}: {expr}"


# ------------------------------------------------------------------------------ runbooks name real things


def deploy_texts() -> list[str]:
    """The rules (runbooks and comments), the scrape config and deploy/README.md."""
    return [path.read_text(encoding="utf-8") for path in (RULES, SCRAPE, DEPLOY_README)]


def test_settings_named_exist() -> None:
    known = "\n".join(
        p.read_text(encoding="utf-8") for folder in ("engine", "cli") for p in sorted((ROOT / folder).rglob("*.py"))
    )
    for text in deploy_texts():
        for name in set(ENV_NAME.findall(text)):
            assert name in known, f"{name} is named in deploy/ but appears nowhere in engine/ or cli/"


def test_emergency_switches_named_exist() -> None:
    fields = {f.name for f in dataclasses.fields(EmergencyConfig)}
    named = {key for text in deploy_texts() for key in EMERGENCY_KEY.findall(text)}
    assert named, "the runbooks name no emergency switch"
    assert named <= fields, f"unknown emergency switches: {sorted(named - fields)}"


def test_commands_named_parse(capsys: pytest.CaptureFixture[str]) -> None:
    commands = {cmd for text in deploy_texts() for cmd in COMMAND.findall(text)}
    assert commands
    for command in sorted(commands):
        # A metavar (`--workers N`) stands for a value: 1 suits both numbers and paths.
        argv = ["1" if re.fullmatch(r"[A-Z]+", arg) else arg for arg in shlex.split(command)[1:]]
        try:
            build_parser(argv).parse_args(argv)
        except SystemExit:
            pytest.fail(f"`{command}` does not parse: {capsys.readouterr().err}")


# ------------------------------------------------------------------------------ the dashboard


def test_dashboard_is_importable(dashboard: Any) -> None:
    assert dashboard["schemaVersion"] == 39
    assert dashboard["title"] == "taiwa" and dashboard["uid"]
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["channel"]["type"] == "query"
    templated = variables.get("datasource", {}).get("type") == "datasource"
    inputs = {i["name"] for i in dashboard.get("__inputs", [])}
    assert templated or "DS_PROMETHEUS" in inputs, "no datasource variable nor DS_PROMETHEUS input"


def test_panels_have_unique_ids_and_queries(dashboard: Any) -> None:
    ids = [p["id"] for p in panels(dashboard)]
    assert all(isinstance(i, int) for i in ids) and len(ids) == len(set(ids)), f"panel ids repeat: {ids}"
    assert data_panels(dashboard)
    for panel in data_panels(dashboard):
        assert panel["type"] in {"timeseries", "stat"}, panel["title"]
        assert set(panel["gridPos"]) >= {"x", "y", "w", "h"}, panel["title"]
        targets = panel.get("targets")
        assert targets, f"panel {panel['title']!r} has no targets"
        for target in targets:
            assert isinstance(target.get("expr"), str) and target["expr"].strip(), panel["title"]
        ref_ids = [t["refId"] for t in targets]
        assert len(ref_ids) == len(set(ref_ids)), panel["title"]


def test_dashboard_variables_used_are_defined(dashboard: Any) -> None:
    defined = {v["name"] for v in dashboard["templating"]["list"]}
    defined |= {i["name"] for i in dashboard.get("__inputs", [])}
    texts = [*dashboard_exprs(dashboard), json.dumps([p.get("datasource") for p in panels(dashboard)])]
    for text in texts:
        for braced, bare in VARIABLE.findall(text):
            name = braced or bare
            assert name.startswith("__") or name in defined, f"${name} is not a dashboard variable: {text}"


# ------------------------------------------------------------------------------ the scrape config


def test_scrape_config_scrapes_taiwa_with_a_token_and_loads_the_rules(rules_doc: Any) -> None:
    config = load_yaml(SCRAPE)
    rule_files = [(SCRAPE.parent / f).resolve() for f in config["rule_files"]]
    assert RULES.resolve() in rule_files
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    taiwa = [
        job
        for job in jobs.values()
        if any("127.0.0.1:5005" in sc.get("targets", []) for sc in job.get("static_configs", []))
    ]
    assert len(taiwa) == 1
    job = taiwa[0]
    assert job.get("metrics_path", "/metrics") == "/metrics"
    auth = job.get("authorization", {})
    assert auth.get("type", "Bearer") == "Bearer" and (auth.get("credentials") or auth.get("credentials_file"))
    for expr in rule_exprs(rules_doc):
        for name in re.findall(r'\bup\{[^}]*job="([^"]+)"', expr):
            assert name in jobs, f"rules watch job {name!r}, which prometheus.yml does not scrape"


# ------------------------------------------------------------------------------ promtool, when installed


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool is not installed")
def test_promtool_checks_the_rules() -> None:
    promtool = shutil.which("promtool")
    assert promtool is not None
    done = subprocess.run([promtool, "check", "rules", str(RULES)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
