#!/usr/bin/env python3
"""File checks of the deployment files, called by check_deploy.sh.

Usage: check_files.py CHECK ROOT [ARGS]. Prints what it found wrong and exits 1,
or exits 0; exits 77 when a Python module the check needs is missing.
"""
import json
import pathlib
import re
import sys

SKIP = 77


def need_yaml():
    try:
        import yaml  # noqa: F401
    except ImportError:
        print("python3 module yaml missing (Debian: python3-yaml)")
        sys.exit(SKIP)
    import yaml
    return yaml


def chart(root):
    return root / "helm" / "dgc"


def check_json(root, _):
    bad = 0
    files = sorted(list((root / "deploy").rglob("*.json")) + list((root / "helm").rglob("*.json")))
    for f in files:
        try:
            json.loads(f.read_text())
        except ValueError as e:
            print(f"{f.relative_to(root)}: {e}")
            bad += 1
    print(f"{len(files)} JSON files")
    return bad == 0


def pure_yaml_files(root):
    c = chart(root)
    return [c / "Chart.yaml", c / "values.yaml"] + sorted((c / "ci").glob("*.yaml")) + sorted(
        (root / "deploy" / "prometheus").glob("*.yml"))


def check_yaml(root, _):
    yaml = need_yaml()
    bad = 0
    files = pure_yaml_files(root)
    for f in files:
        try:
            yaml.safe_load(f.read_text())
        except yaml.YAMLError as e:
            print(f"{f.relative_to(root)}: {e}")
            bad += 1
    print(f"{len(files)} YAML files")
    return bad == 0


SEMVER = re.compile(r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(-[0-9A-Za-z.-]+)?(\+[0-9A-Za-z.-]+)?$")


def check_chart(root, _):
    yaml = need_yaml()
    c = yaml.safe_load((chart(root) / "Chart.yaml").read_text())
    errs = []
    if c.get("apiVersion") != "v2":
        errs.append("apiVersion must be v2")
    if c.get("name") != chart(root).name:
        errs.append(f"name {c.get('name')!r} must be the directory name {chart(root).name!r}")
    if not SEMVER.match(str(c.get("version", ""))):
        errs.append(f"version {c.get('version')!r} is not semver")
    if not isinstance(c.get("appVersion"), str):
        errs.append("appVersion must be a quoted string")
    for f in ["NOTES.txt", "_helpers.tpl", "tests/test-connection.yaml"]:
        if not (chart(root) / "templates" / f).is_file():
            errs.append(f"templates/{f} missing")
    for e in errs:
        print(f"Chart.yaml: {e}")
    return not errs


def merge(base, over):
    out = dict(base)
    for k, v in over.items():
        out[k] = merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def mini_validate(schema, value, path, root_schema, errs):
    """A subset of JSON Schema draft 7: enough for values.schema.json."""
    if "$ref" in schema:
        ref = schema["$ref"].split("/")[-1]
        schema = root_schema["definitions"][ref]
    t = schema.get("type")
    types = {"object": dict, "array": list, "string": str, "boolean": bool}
    if t == "integer":
        if isinstance(value, bool) or not (isinstance(value, int) or (isinstance(value, float) and value.is_integer())):
            errs.append(f"{path}: {value!r} is not an integer")
            return
    elif t == "number":
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            errs.append(f"{path}: {value!r} is not a number")
            return
    elif t in types and not isinstance(value, types[t]):
        errs.append(f"{path}: {value!r} is not of type {t}")
        return
    if "enum" in schema and value not in schema["enum"]:
        errs.append(f"{path}: {value!r} not one of {schema['enum']}")
    if "const" in schema and value != schema["const"]:
        errs.append(f"{path}: {value!r} is not {schema['const']!r}")
    if isinstance(value, str) and "pattern" in schema and not re.search(schema["pattern"], value):
        errs.append(f"{path}: {value!r} does not match {schema['pattern']}")
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if "minimum" in schema and value < schema["minimum"]:
            errs.append(f"{path}: {value} < {schema['minimum']}")
        if "maximum" in schema and value > schema["maximum"]:
            errs.append(f"{path}: {value} > {schema['maximum']}")
        if "exclusiveMinimum" in schema and value <= schema["exclusiveMinimum"]:
            errs.append(f"{path}: {value} <= {schema['exclusiveMinimum']}")
    if isinstance(value, dict):
        props = schema.get("properties", {})
        for r in schema.get("required", []):
            if r not in value:
                errs.append(f"{path}: {r} is required")
        for k, v in value.items():
            if k in props:
                mini_validate(props[k], v, f"{path}.{k}", root_schema, errs)
            elif schema.get("additionalProperties") is False:
                errs.append(f"{path}: unknown key {k}")
            elif isinstance(schema.get("additionalProperties"), dict):
                mini_validate(schema["additionalProperties"], v, f"{path}.{k}", root_schema, errs)
    if isinstance(value, list) and "items" in schema:
        for i, v in enumerate(value):
            mini_validate(schema["items"], v, f"{path}[{i}]", root_schema, errs)


def check_schema(root, _):
    yaml = need_yaml()
    c = chart(root)
    schema = json.loads((c / "values.schema.json").read_text())
    base = yaml.safe_load((c / "values.yaml").read_text())
    cases = [("values.yaml", base)] + [
        (f"ci/{f.name}", merge(base, yaml.safe_load(f.read_text()) or {})) for f in sorted((c / "ci").glob("*.yaml"))]
    try:
        import jsonschema
        jsonschema.Draft7Validator.check_schema(schema)
        validator = jsonschema.Draft7Validator(schema)
        how = "python3 jsonschema (draft 7)"
        def validate(v):
            return [f"{'.'.join(map(str, e.absolute_path)) or '(top)'}: {e.message}" for e in validator.iter_errors(v)]
    except ImportError:
        how = "the built-in subset validator (python3-jsonschema absent)"
        def validate(v):
            errs = []
            mini_validate(schema, v, "", schema, errs)
            return errs
    # A value the schema must refuse, so a schema that accepts anything fails here.
    bad = merge(base, {"worker": {"gpu": {"device": "gpu0"}}, "bogusKey": 1})
    errs = []
    for name, v in cases:
        errs += [f"{name}: {e}" for e in validate(v)]
    if len(validate(bad)) < 2:
        errs.append("schema accepts worker.gpu.device=gpu0 or an unknown top-level key")
    for e in errs:
        print(e)
    print(f"{len(cases)} value sets validated with {how}")
    return not errs


ACTION = re.compile(r"\{\{-?\s*(.*?)\s*-?\}\}", re.S)
OPENERS = {"if", "range", "with", "define", "block"}


def check_templates(root, _):
    errs = []
    files = sorted(p for p in (chart(root) / "templates").rglob("*") if p.is_file())
    for f in files:
        text = f.read_text()
        rel = f.relative_to(root)
        # every {{ closes before the next {{ opens
        depth, line = 0, 1
        for i, ch in enumerate(text):
            if ch == "\n":
                line += 1
            if text.startswith("{{", i):
                if depth:
                    errs.append(f"{rel}:{line}: '{{{{' inside an open action")
                depth += 1
            elif text.startswith("}}", i) and depth:
                depth -= 1
        if text.count("{{") != text.count("}}"):
            errs.append(f"{rel}: {text.count('{{')} '{{{{' but {text.count('}}')} '}}}}'")
        # control structures: if/range/with/define/block each closed by end
        stack = []
        for m in ACTION.finditer(text):
            body = m.group(1)
            if body.startswith("/*"):
                continue
            word = re.split(r"[\s(]", body, 1)[0]
            ln = text.count("\n", 0, m.start()) + 1
            if word in OPENERS:
                stack.append((word, ln))
            elif word == "end":
                if not stack:
                    errs.append(f"{rel}:{ln}: 'end' without an opening action")
                else:
                    stack.pop()
            elif word == "else" and not stack:
                errs.append(f"{rel}:{ln}: 'else' outside a block")
        for word, ln in stack:
            errs.append(f"{rel}:{ln}: '{word}' never closed by 'end'")
    for e in errs:
        print(e)
    print(f"{len(files)} template files")
    return not errs


def check_values_comments(root, _):
    """Every key of values.yaml has a comment above it. Keys inside a value documented
    with '# --' (a free-form map such as resources) are that value's data."""
    lines = (chart(root) / "values.yaml").read_text().splitlines()
    errs, stack = [], []  # stack of (indent, is_documented_value)
    key_re = re.compile(r"^(\s*)([A-Za-z][\w./-]*):(\s|$)")
    for i, l in enumerate(lines):
        m = key_re.match(l)
        if not m:
            continue
        indent = len(m.group(1))
        while stack and stack[-1][0] >= indent:
            stack.pop()
        j = i - 1
        while j >= 0 and not lines[j].strip():
            j -= 1
        comment = []  # the comment block right above the key
        while j >= 0 and lines[j].strip().startswith("#"):
            comment.append(lines[j].strip())
            j -= 1
        inside_value = any(doc for _, doc in stack)
        if not inside_value and not comment:
            errs.append(f"values.yaml:{i + 1}: key '{m.group(2)}' has no comment")
        stack.append((indent, inside_value or any(c.startswith("# --") for c in comment)))
    for e in errs:
        print(e)
    return not errs


def contract_names(root):
    text = (root / "deploy" / "PROCESSES.md").read_text()
    metrics = set(re.findall(r"`(dgc_[a-z0-9_]+)", text))
    flags = set(re.findall(r"`(--[a-z][a-z0-9-]*)", text))
    return metrics, flags


def check_contract(root, _):
    metrics, flags = contract_names(root)
    errs = []
    users = [root / "deploy/prometheus/alerts.yml", root / "deploy/prometheus/alerts_test.yml",
             root / "deploy/grafana/dgc-dashboard.json", root / "tests/deploy/prometheus_scrape_test.sh"]
    for f in users:
        if not f.exists():
            continue
        for name in sorted(set(re.findall(r"\bdgc_[a-z0-9_]+", f.read_text()))):
            base = re.sub(r"_(bucket|sum|count)$", "", name)
            if name not in metrics and base not in metrics:
                errs.append(f"{f.relative_to(root)}: metric {name} is not in deploy/PROCESSES.md")
    # Flags the chart sets: config-file keys and --flags in the templates.
    used = set()
    for f in (chart(root) / "templates").rglob("*"):
        if not f.is_file():
            continue
        t = f.read_text()
        used |= {"--" + k for k in re.findall(r"^\s*([a-z][a-z0-9-]*) = ", t, re.M)}
        used |= set(re.findall(r"(?<![\w-])(--[a-z][a-z0-9-]*)", t))
    used -= {"--retry", "--retry-delay", "--retry-all-errors"}  # curl's, in the test pod
    for flag in sorted(used - flags):
        errs.append(f"helm/dgc/templates: flag {flag} is not in deploy/PROCESSES.md")
    for e in errs:
        print(e)
    print(f"{len(metrics)} metrics and {len(flags)} flags in the contract; chart uses {len(used)} flags")
    return not errs


def dashboard_rules(root, out):
    """Writes the dashboard's queries as recording rules, for promtool check rules."""
    dash = json.loads((root / "deploy/grafana/dgc-dashboard.json").read_text())
    exprs = []
    def walk(o):
        if isinstance(o, dict):
            if isinstance(o.get("expr"), str):
                exprs.append(o["expr"])
            for v in o.values():
                walk(v)
        elif isinstance(o, list):
            for v in o:
                walk(v)
    walk(dash)
    subst = {"$__rate_interval": "5m", "$__interval": "1m", "$__range": "1h",
             "$namespace": ".*", "$node": ".*"}
    rules = []
    for i, e in enumerate(exprs):
        for k, v in subst.items():
            e = e.replace(k, v)
        if "$" in re.sub(r"\$\d", "", e):
            print(f"unknown Grafana variable in: {e}")
            return False
        rules.append({"record": f"dashboard:query{i}", "expr": e})
    pathlib.Path(out).write_text(json.dumps({"groups": [{"name": "dashboard", "rules": rules}]}, indent=1))
    print(f"{len(rules)} dashboard queries")
    return True


def k8s_sd_example(root, out):
    """prometheus.yml with its commented kubernetes_sd job uncommented."""
    lines = (root / "deploy/prometheus/prometheus.yml").read_text().splitlines()
    start = next(i for i, l in enumerate(lines) if l.startswith("  # - job_name:"))
    body = [l.replace("  # ", "  ", 1) if l.startswith("  # ") else l for l in lines[start:] if l != "  #"]
    pathlib.Path(out).write_text("\n".join(lines[:start] + body) + "\n")
    return True


CHECKS = {"json": check_json, "yaml": check_yaml, "chart": check_chart, "schema": check_schema,
          "templates": check_templates, "values-comments": check_values_comments,
          "contract": check_contract, "dashboard-rules": dashboard_rules,
          "k8s-sd-example": k8s_sd_example}

if __name__ == "__main__":
    if len(sys.argv) < 3 or sys.argv[1] not in CHECKS:
        print(__doc__ + "checks: " + ", ".join(CHECKS))
        sys.exit(2)
    ok = CHECKS[sys.argv[1]](pathlib.Path(sys.argv[2]).resolve(), sys.argv[3] if len(sys.argv) > 3 else None)
    sys.exit(0 if ok else 1)
