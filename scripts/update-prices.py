#!/usr/bin/env python3
"""Converts Pydantic's genai-prices data into data/genai-prices.json (readable, for
review) and data/genai-prices.json.gz (compiled into openclaw-trace).

    python3 scripts/update-prices.py                # fetch the crate version below with cargo
    python3 scripts/update-prices.py --version 0.2.2
    python3 scripts/update-prices.py --input prices.json --source "genai-prices main"

The source is the `genai-prices` crate on crates.io (MIT, bundled data/prices.json),
fetched with cargo into a scratch project, so nothing but cargo and Python 3 is needed.
What is kept: per provider its id, the rules that match provider names and model ids, and
per model its match rule and text-token prices (input, output, cache read, cache write,
USD per million tokens), with the dates from which prices changed and time-of-day windows.
What is left out: descriptions, tiered surcharges above a prompt size (the base price is
kept), batch/service-tier variants, audio/image/search prices, and `regex` match rules
(but for the few in KNOWN_REGEX, which have a plain equivalent: a `regex` alternative
of an `or` is dropped, an `and` holding one is dropped whole: such a
model then stays unpriced rather than mispriced; its plain-name alternatives still match).
"""

import argparse
import datetime
import gzip
import json
import pathlib
import subprocess
import sys
import tempfile

DEFAULT_VERSION = "0.2.1"
ROOT = pathlib.Path(__file__).resolve().parent.parent
OUT = ROOT / "data" / "genai-prices.json"
KEYS = {
    "input_mtok": "input",
    "output_mtok": "output",
    "cache_read_mtok": "cache_read",
    "cache_write_mtok": "cache_write",
}

# Regexes with a plain equivalent (lookarounds the Rust side would need a regex engine for).
KNOWN_REGEX = {
    # "not a text-to-speech variant"
    "^(?!.*-[tT][tT][sS](?:$|-))": {"not": {"or": [{"ends_with": "-tts"}, {"contains": "-tts-"}]}},
}


def fetch(version):
    """The crate's data/prices.json, fetched by cargo into its registry cache."""
    with tempfile.TemporaryDirectory() as d:
        p = pathlib.Path(d)
        (p / "src").mkdir()
        (p / "src" / "lib.rs").write_text("")
        (p / "Cargo.toml").write_text(
            '[package]\nname = "fetch-prices"\nversion = "0.0.0"\nedition = "2021"\n'
            f'[dependencies]\ngenai-prices = "={version}"\n'
        )
        out = subprocess.run(
            ["cargo", "metadata", "--format-version", "1"],
            cwd=p, check=True, capture_output=True, text=True,
        ).stdout
    for pkg in json.loads(out)["packages"]:
        if pkg["name"] == "genai-prices":
            return pathlib.Path(pkg["manifest_path"]).parent / "data" / "prices.json"
    sys.exit("cargo metadata did not list genai-prices")


def rule(r, dropped):
    """A match rule without regexes; None when nothing of it is left."""
    if r is None:
        return None
    (k, v), = r.items()
    if k == "regex":
        if v in KNOWN_REGEX:
            return KNOWN_REGEX[v]
        dropped[0] += 1
        return None
    if k == "or":
        parts = [x for x in (rule(x, dropped) for x in v) if x is not None]
        if not parts:
            return None
        return parts[0] if len(parts) == 1 else {"or": parts}
    if k == "and":
        parts = [rule(x, dropped) for x in v]
        if any(x is None for x in parts):
            return None
        return {"and": parts}
    if k == "not":
        inner = rule(v, dropped)
        return None if inner is None else {"not": inner}
    if k in ("equals", "starts_with", "ends_with", "contains"):
        return {k: v.lower()}
    sys.exit(f"unknown match rule {k!r}")


def price(p):
    out = {}
    for k, ours in KEYS.items():
        v = p.get(k)
        if isinstance(v, dict):  # tiered by prompt size: keep the base price
            v = v["base"]
        if v is not None:
            out[ours] = v
    return out


def prices(raw):
    items = raw if isinstance(raw, list) else [{"prices": raw}]
    out = []
    for item in items:
        p = price(item["prices"])
        c = item.get("constraint") or {}
        if "start_date" in c:
            p["from"] = c["start_date"]
        elif "start_time" in c:
            p["hours"] = [c["start_time"], c["end_time"]]
        out.append(p)
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--version", default=DEFAULT_VERSION, help="genai-prices crate version")
    ap.add_argument("--input", help="a prices.json already at hand (skips cargo)")
    ap.add_argument("--source", help="how to name the source in the output")
    ap.add_argument("--as-of", help="the data's date (default: today, UTC)")
    ap.add_argument("--output", default=str(OUT))
    a = ap.parse_args()
    src = pathlib.Path(a.input) if a.input else fetch(a.version)
    data = json.loads(src.read_text())
    dropped = [0]
    providers, n_models, skipped = [], 0, 0
    for p in data:
        models = []
        for m in p["models"]:
            r = rule(m["match"], dropped)
            ps = prices(m["prices"])
            if r is None or not any("input" in x or "output" in x for x in ps):
                skipped += 1
                continue
            models.append({"id": m["id"], "match": r, "prices": ps})
        if not models:
            continue
        n_models += len(models)
        entry = {"id": p["id"]}
        for key in ("provider_match", "model_match"):
            r = rule(p.get(key), dropped)
            if r is not None:
                entry[key] = r
        if p.get("fallback_model_providers"):
            entry["fallbacks"] = p["fallback_model_providers"]
        entry["models"] = models
        providers.append(entry)
    as_of = a.as_of or datetime.datetime.now(datetime.timezone.utc).date().isoformat()
    out = {
        "source": a.source or f"genai-prices {a.version} (crates.io; MIT; github.com/pydantic/genai-prices)",
        "as_of": as_of,
        "providers": providers,
    }
    text = json.dumps(out, separators=(",", ":"), ensure_ascii=False)
    # One provider per line keeps diffs of updates readable.
    text = text.replace(',{"id":', ',\n{"id":')
    pathlib.Path(a.output).write_text(text + "\n")
    # The binary embeds the gzip copy (a tenth of the size); a unit test checks they agree.
    gz = gzip.compress((text + "\n").encode(), compresslevel=9, mtime=0)
    pathlib.Path(a.output + ".gz").write_bytes(gz)
    print(
        f"{a.output}: {len(providers)} providers, {n_models} models, {len(text)} bytes ({len(gz)} gzipped); "
        f"{skipped} models without text-token prices or matchable names left out, "
        f"{dropped[0]} regex rules dropped",
        file=sys.stderr,
    )


if __name__ == "__main__":
    main()
