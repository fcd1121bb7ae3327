#!/usr/bin/env python3
"""Small YAML/JSON helpers of tests/install/run (PyYAML only).

    tool.py configmap RENDERED NAME OUTDIR     write each data key of ConfigMap NAME into OUTDIR
    tool.py rules RENDERED OUT                 the PrometheusRule's spec as a Prometheus rule file
    tool.py dashboard-queries RENDERED OUT     every PromQL query of the dashboard ConfigMap,
                                               Grafana variables replaced, one JSON string a line
    tool.py recording-rules QUERIES OUT        those queries as recording rules (for promtool)
    tool.py canilist FILE                      `kubectl auth can-i --list` output as JSON
                                               {"resource.group": [verbs]} (resource rules only)
    tool.py values-keys VALUES                 every key path of a values file, one a line
    tool.py objects RENDERED                   "Kind/name" of every object, one a line
    tool.py oci-unpack ARCHIVE DIR             unpack an OCI archive: DIR/layout, DIR/rootfs;
                                               prints {"config", "files", "layers"} as JSON
"""

import json
import os
import re
import sys
import tarfile

import yaml


def docs(path):
    with open(path, encoding="utf-8") as f:
        return [d for d in yaml.safe_load_all(f) if d]


def find(path, kind, name=None):
    for d in docs(path):
        if d.get("kind") == kind and (name is None or d["metadata"]["name"] == name):
            return d
    sys.exit(f"tool.py: no {kind} {name or ''} in {path}")


def configmap(rendered, name, outdir):
    cm = find(rendered, "ConfigMap", name)
    os.makedirs(outdir, exist_ok=True)
    for key, value in (cm.get("data") or {}).items():
        with open(os.path.join(outdir, key), "w", encoding="utf-8") as f:
            f.write(value)


def rules(rendered, out):
    rule = find(rendered, "PrometheusRule")
    with open(out, "w", encoding="utf-8") as f:
        yaml.safe_dump(rule["spec"], f, sort_keys=False, width=10000)


# Grafana's variables, as a dashboard query would see them over a 1 h range.
GRAFANA_VARS = {"$__rate_interval": "1m", "$__interval": "15s", "$__range": "1h", "$job": ".+"}


def dashboard_queries(rendered, out):
    cms = [d for d in docs(rendered) if d.get("kind") == "ConfigMap" and "havoc.json" in (d.get("data") or {})]
    if len(cms) != 1:
        sys.exit(f"tool.py: want one dashboard ConfigMap in {rendered}, found {len(cms)}")
    dash = json.loads(cms[0]["data"]["havoc.json"])
    queries = []

    def walk(panels):
        for p in panels:
            for t in p.get("targets", []):
                q = t["expr"]
                for var, value in GRAFANA_VARS.items():
                    q = q.replace(var, value)
                if "$" in q:
                    sys.exit(f"tool.py: unknown Grafana variable in {t['expr']!r}")
                queries.append(q)
            walk(p.get("panels", []))

    walk(dash["panels"])
    for v in dash.get("templating", {}).get("list", []):
        query = v.get("query")
        m = isinstance(query, dict) and re.fullmatch(r"label_values\((.+),\s*\w+\)", query.get("query", ""))
        if m:
            queries.append(m.group(1))
    with open(out, "w", encoding="utf-8") as f:
        for q in queries:
            f.write(json.dumps(q) + "\n")


def recording_rules(queries, out):
    with open(queries, encoding="utf-8") as f:
        qs = [json.loads(line) for line in f if line.strip()]
    group = {"name": "dashboard", "rules": [{"record": f"dashboard:query{i}", "expr": q} for i, q in enumerate(qs)]}
    with open(out, "w", encoding="utf-8") as f:
        yaml.safe_dump({"groups": [group]}, f, sort_keys=False, width=10000)


def canilist(path):
    rules = {}
    with open(path, encoding="utf-8") as f:
        lines = f.read().splitlines()
    for line in lines[1:]:  # header: Resources Non-Resource URLs Resource Names Verbs
        m = re.match(r"^(\S*)\s*\[(.*?)\]\s+\[(.*?)\]\s+\[(.*?)\]\s*$", line)
        if not m:
            sys.exit(f"tool.py: cannot parse can-i line {line!r}")
        resource, nonres, names, verbs = m.groups()
        if not resource:
            resource = f"url:{nonres}"
        if names:
            resource += f"[{names}]"
        rules.setdefault(resource, set()).update(verbs.split())
    print(json.dumps({k: sorted(v) for k, v in sorted(rules.items())}, sort_keys=True))


def values_keys(path):
    with open(path, encoding="utf-8") as f:
        values = yaml.safe_load(f)

    def walk(prefix, node):
        if isinstance(node, dict) and node:
            for k, v in node.items():
                walk(f"{prefix}.{k}" if prefix else k, v)
        else:
            print(prefix)

    walk("", values)


def objects(rendered):
    for d in docs(rendered):
        print(f"{d['kind']}/{d['metadata']['name']}")


def extract(t, dest, filt, **kw):
    # tarfile's extraction filters exist from Python 3.11.4 (Debian 12 has 3.11.2).
    if hasattr(tarfile, "data_filter"):
        kw["filter"] = filt
    t.extractall(dest, **kw)


def oci_unpack(archive, outdir):
    layout, rootfs = os.path.join(outdir, "layout"), os.path.join(outdir, "rootfs")
    os.makedirs(layout)
    os.makedirs(rootfs)
    with tarfile.open(archive) as t:
        extract(t, layout, "data")

    def blob(digest):
        algo, hexd = digest.split(":")
        return os.path.join(layout, "blobs", algo, hexd)

    index = json.load(open(os.path.join(layout, "index.json")))
    if len(index["manifests"]) != 1:
        sys.exit(f"tool.py: want one image in {archive}, found {len(index['manifests'])}")
    manifest = json.load(open(blob(index["manifests"][0]["digest"])))
    config = json.load(open(blob(manifest["config"]["digest"])))
    files = []
    for layer in manifest["layers"]:
        with tarfile.open(blob(layer["digest"])) as t:  # gzip or plain, detected
            for m in t.getmembers():
                name = os.path.normpath(m.name)
                if os.path.basename(name).startswith(".wh."):
                    sys.exit(f"tool.py: whiteouts are not expected in this image: {name}")
                kind = "d" if m.isdir() else "f" if m.isfile() else "l" if m.issym() else "?"
                if name != ".":
                    files.append({"path": "/" + name, "kind": kind, "mode": oct(m.mode & 0o7777), "uid": m.uid, "gid": m.gid, "size": m.size})
            # numeric owners and modes as in the layer (we are root: as a runtime would)
            extract(t, rootfs, "fully_trusted", numeric_owner=True)
    print(json.dumps({"ref": index["manifests"][0].get("annotations", {}).get("org.opencontainers.image.ref.name"),
                      "config": config.get("config", {}), "os": config.get("os"), "architecture": config.get("architecture"),
                      "layers": len(manifest["layers"]), "files": files}))


def main():
    cmd, args = sys.argv[1], sys.argv[2:]
    {
        "configmap": configmap,
        "rules": rules,
        "dashboard-queries": dashboard_queries,
        "recording-rules": recording_rules,
        "canilist": canilist,
        "values-keys": values_keys,
        "objects": objects,
        "oci-unpack": oci_unpack,
    }[cmd](*args)


if __name__ == "__main__":
    main()
